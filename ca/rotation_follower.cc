#include "ca/rotation_follower.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/status_macros.h"
#include "common/x509.h"

namespace meshid {
namespace {

X509Ptr Share(X509* cert) {
  X509_up_ref(cert);
  return X509Ptr(cert);
}

std::string Describe(const CaRotationRecord& r) {
  return absl::StrCat("CA rotation ", r.rotation, " (", r.kind, ", ", CaRotationPhaseName(r.phase), ")");
}

double PhaseNumber(CaRotationPhase phase) { return static_cast<double>(static_cast<int>(phase) + 1); }

}  // namespace

absl::StatusOr<std::shared_ptr<const SigningAuthority>> AuthorityForPhase(CaRotationPhase phase,
                                                                          const SigningAuthority& from,
                                                                          const SigningAuthority* to,
                                                                          absl::string_view to_roots_pem) {
  const bool signs_with_to = phase == CaRotationPhase::kActive || phase == CaRotationPhase::kRetired;
  if (signs_with_to && to == nullptr) return absl::InternalError("the new material is not loaded");
  const SigningAuthority& signer = signs_with_to ? *to : from;

  // The roots: the signer's own, then (published, active) the other side's.
  std::vector<X509Ptr> roots;
  auto add_root = [&roots](X509* root) {
    const bool present =
        std::any_of(roots.begin(), roots.end(), [root](const X509Ptr& r) { return X509_cmp(r.get(), root) == 0; });
    if (!present) roots.push_back(Share(root));
  };
  for (const X509Ptr& r : signer.roots) add_root(r.get());
  if (phase == CaRotationPhase::kPublished) {
    MESHID_ASSIGN_OR_RETURN(std::vector<X509Ptr> new_roots, CertsFromPem(to_roots_pem, "to.root_cert_pem"));
    for (const X509Ptr& r : new_roots) add_root(r.get());
  } else if (phase == CaRotationPhase::kActive) {
    for (const X509Ptr& r : from.roots) add_root(r.get());
  }

  auto next = std::make_shared<SigningAuthority>();
  next->cert = Share(signer.cert.get());
  EVP_PKEY_up_ref(signer.key.get());
  next->key = EvpPkeyPtr(signer.key.get());
  for (const X509Ptr& c : signer.intermediates) next->intermediates.push_back(Share(c.get()));
  if (!IsSelfSigned(next->cert.get())) next->chain_pems.push_back(CertToPem(next->cert.get()));
  for (const X509Ptr& c : next->intermediates) next->chain_pems.push_back(CertToPem(c.get()));
  for (const X509Ptr& r : roots) {
    next->chain_pems.push_back(CertToPem(r.get()));
    next->root_bundle_pem += CertToPem(r.get());
  }
  next->roots = std::move(roots);
  next->source = signer.source;
  return std::shared_ptr<const SigningAuthority>(std::move(next));
}

CaRotationFollower::CaRotationFollower(CaRotationFollowerOptions options, CaRotationStore& store,
                                       std::shared_ptr<const SigningAuthority> own, const Clock& clock,
                                       RandomSource& random, MetricsRegistry& metrics, LoggerPtr logger)
    : options_(std::move(options)),
      store_(store),
      own_(std::move(own)),
      clock_(clock),
      random_(random),
      logger_(std::move(logger)),
      phase_(metrics.AddGauge("meshid_ca_rotation_phase",
                              "Phase of the CA rotation this server follows: 0 none, 1 prepared, 2 published, 3 "
                              "active, 4 retired")),
      number_(metrics.AddGauge("meshid_ca_rotation_number", "The number of the CA rotation this server follows")),
      ready_(metrics.AddGauge("meshid_ca_rotation_ready",
                              "1 when this server holds the new CA key of the rotation in progress (or none is "
                              "needed), 0 when it cannot load it")),
      reloaded_(metrics.AddCounter("meshid_ca_reload_total", "Reloads of rotated material, by what and outcome.",
                                   {{"what", "rotation"}, {"result", "ok"}})),
      refused_(metrics.AddCounter("meshid_ca_reload_total", "Reloads of rotated material, by what and outcome.",
                                  {{"what", "rotation"}, {"result", "refused"}})) {
  ready_.Set(1);
}

absl::StatusOr<std::unique_ptr<CaRotationFollower>> CaRotationFollower::Create(
    CaRotationFollowerOptions options, CaRotationStore& store, std::shared_ptr<const SigningAuthority> own,
    const Clock& clock, RandomSource& random, MetricsRegistry& metrics, LoggerPtr logger) {
  std::unique_ptr<CaRotationFollower> follower(
      new CaRotationFollower(std::move(options), store, std::move(own), clock, random, metrics, std::move(logger)));
  follower->initial_ = follower->own_;
  auto record = store.GetCaRotation();
  if (!record.ok()) {
    return absl::Status(record.status().code(),
                        absl::StrCat("reading the CA rotation record: ", record.status().message()));
  }
  if (!record->has_value()) return follower;
  const CaRotationRecord& r = **record;
  auto built = follower->Build(r);
  if (!built.ok()) {
    return absl::Status(built.status().code(), absl::StrCat(Describe(r), ": ", built.status().message()));
  }
  follower->initial_ = *std::move(built);
  follower->applied_ = CaRotationKey{r.rotation, r.phase};
  follower->phase_.Set(PhaseNumber(r.phase));
  follower->number_.Set(static_cast<double>(r.rotation));
  follower->logger_->info("following {}: {}", Describe(r), follower->initial_->source);
  return follower;
}

absl::StatusOr<std::shared_ptr<const SigningAuthority>> CaRotationFollower::Load(const StoredCaMaterial& material) {
  for (const auto& [stored, authority] : loaded_) {
    if (stored == material) return authority;
  }
  MESHID_ASSIGN_OR_RETURN(std::shared_ptr<const SigningAuthority> authority,
                          LoadStoredCaMaterial(material, options_.open_token_key, clock_));
  // Two materials at most matter at once (from and to); keep a few for a rotation that moves on.
  if (loaded_.size() >= 4) loaded_.erase(loaded_.begin());
  loaded_.emplace_back(material, authority);
  return authority;
}

absl::StatusOr<std::shared_ptr<const SigningAuthority>> CaRotationFollower::Build(const CaRotationRecord& record) {
  std::shared_ptr<const SigningAuthority> from = own_;
  if (!record.from.empty()) {
    auto loaded = Load(record.from);
    if (!loaded.ok()) return absl::Status(loaded.status().code(), absl::StrCat("from: ", loaded.status().message()));
    from = *std::move(loaded);
  }
  // The new key is loaded from `published` on, though only used from `active`: a replica that
  // cannot read it says so before anyone activates.
  std::shared_ptr<const SigningAuthority> to;
  if (record.phase != CaRotationPhase::kPrepared) {
    auto loaded = Load(record.to);
    ready_.Set(loaded.ok() ? 1 : 0);
    if (!loaded.ok()) {
      if (record.phase != CaRotationPhase::kPublished) {
        return absl::Status(loaded.status().code(), absl::StrCat("to: ", loaded.status().message()));
      }
      logger_->error("{}: this server cannot load the new CA material ({}); activating the rotation will fail here",
                     Describe(record), loaded.status().message());
    } else {
      to = *std::move(loaded);
    }
  } else {
    ready_.Set(1);
  }
  return AuthorityForPhase(record.phase, *from, to.get(), record.to.root_cert_pem);
}

absl::StatusOr<bool> CaRotationFollower::RunOne(AuthoritySource& authorities) {
  auto record = store_.GetCaRotation();
  if (!record.ok()) return record.status();  // the store's error; the next poll tries again
  if (!record->has_value()) return false;
  const CaRotationRecord& r = **record;
  if (applied_ == CaRotationKey{r.rotation, r.phase}) return false;

  const std::shared_ptr<const AuthoritySnapshot> before = authorities.Current();
  auto refuse = [&](const absl::Status& why) -> absl::Status {
    const std::string message = absl::StrCat(Describe(r), ": ", why.message());
    if (message != last_refusal_) {
      logger_->error("{}; still signing with serial {}", message, before->issuer->signing_serial_hex());
      refused_.Increment();
      last_refusal_ = message;
    }
    return absl::Status(why.code(), message);
  };
  auto next = Build(r);
  if (!next.ok()) return refuse(next.status());
  auto issuer = CertIssuer::Create(*next, clock_, random_);
  if (!issuer.ok()) return refuse(issuer.status());
  if (options_.approve_new_roots && before->authority().root_bundle_pem != (*next)->root_bundle_pem) {
    if (absl::Status approved = options_.approve_new_roots(**next); !approved.ok()) return refuse(approved);
  }
  if (!options_.trust_bundle_file.empty()) {
    if (absl::Status written = WriteFileAtomic(options_.trust_bundle_file, (*next)->root_bundle_pem, 0644);
        !written.ok()) {
      return refuse(absl::Status(written.code(), absl::StrCat("writing the trust bundle: ", written.message())));
    }
  }
  logger_->info("{}: signing cert serial {} (was {}), {} root(s) in the trust bundle", Describe(r),
                (*issuer)->signing_serial_hex(), before->issuer->signing_serial_hex(), (*next)->roots.size());
  authorities.Replace(std::shared_ptr<const CertIssuer>(*std::move(issuer)));
  applied_ = CaRotationKey{r.rotation, r.phase};
  last_refusal_.clear();
  phase_.Set(PhaseNumber(r.phase));
  number_.Set(static_cast<double>(r.rotation));
  reloaded_.Increment();
  return true;
}

}  // namespace meshid
