#include "ca/authority_source.h"

#include <utility>

namespace meshid {
namespace {

std::shared_ptr<const AuthoritySnapshot> MakeSnapshot(std::shared_ptr<const CertIssuer> issuer,
                                                      std::vector<std::shared_ptr<const SigningAuthority>> retired,
                                                      uint64_t generation) {
  auto snapshot = std::make_shared<AuthoritySnapshot>();
  snapshot->issuer = std::move(issuer);
  snapshot->retired = std::move(retired);
  snapshot->generation = generation;
  auto add = [&](const SigningAuthority& a) {
    snapshot->path_certs.push_back(a.cert.get());
    for (const auto& c : a.intermediates) snapshot->path_certs.push_back(c.get());
  };
  add(snapshot->authority());
  for (const auto& a : snapshot->retired) add(*a);
  return snapshot;
}

}  // namespace

AuthoritySource::AuthoritySource(std::shared_ptr<const CertIssuer> issuer)
    : current_(MakeSnapshot(std::move(issuer), {}, 0)) {}

std::shared_ptr<const AuthoritySnapshot> AuthoritySource::Current() const {
  absl::ReaderMutexLock lock(&mu_);
  return current_;
}

void AuthoritySource::Replace(std::shared_ptr<const CertIssuer> issuer) {
  absl::MutexLock lock(&mu_);
  std::vector<std::shared_ptr<const SigningAuthority>> retired;
  retired.push_back(current_->issuer->shared_authority());
  for (const auto& a : current_->retired) {
    if (retired.size() >= kRetainedAuthorities) break;
    retired.push_back(a);
  }
  current_ = MakeSnapshot(std::move(issuer), std::move(retired), current_->generation + 1);
}

}  // namespace meshid
