#include "tests/support/signing_authority.h"

#include <cstdio>
#include <cstdlib>

#include "ca/cert_issuer.h"
#include "common/x509.h"

namespace meshid::testing {
namespace {

template <typename T>
T ValueOrDie(absl::StatusOr<T> result, const char* what) {
  if (!result.ok()) {
    std::fprintf(stderr, "MakeAuthority: %s: %s\n", what, result.status().ToString().c_str());
    std::abort();
  }
  return *std::move(result);
}

}  // namespace

std::shared_ptr<const SigningAuthority> MakeAuthority(const Clock& clock, RandomSource& random, const std::string& td,
                                                      absl::Duration lifetime, KeyAlgorithm algorithm) {
  auto authority = std::make_shared<SigningAuthority>();
  authority->key = ValueOrDie(GenerateKey(algorithm), "key");
  authority->cert =
      ValueOrDie(CreateSelfSignedRoot(authority->key.get(), td, lifetime, clock, random), "self-signed root");
  authority->roots.push_back(CopyCert(authority->cert.get()));
  authority->chain_pems.push_back(CertToPem(authority->cert.get()));
  authority->root_bundle_pem = authority->chain_pems.back();
  return authority;
}

}  // namespace meshid::testing
