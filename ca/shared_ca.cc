#include "ca/shared_ca.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/fingerprint.h"
#include "common/keys.h"
#include "common/status_macros.h"
#include "common/x509.h"

namespace meshid {
namespace {

absl::Status Prefixed(absl::string_view what, const absl::Status& status) {
  return absl::Status(status.code(), absl::StrCat(what, ": ", status.message()));
}

std::string Describe(const CaMaterialRecord& record) {
  return absl::StrCat(record.fingerprint, " (", record.source, ", recorded ",
                      absl::FormatTime(absl::RFC3339_sec, record.recorded_at, absl::UTCTimeZone()), ")");
}

// What differs and what to do about it, per kind.
absl::Status Mismatch(const SharedCaCheck& check, const CaMaterialRecord& in_force) {
  if (check.kind == kCaMaterialSigningCa) {
    return absl::FailedPreconditionError(absl::StrCat(
        "this server's CA shares no root with the one the store records for every server on it: its roots are ",
        check.fingerprint, " (", check.source, "), the store's are ", Describe(in_force),
        ". Certificates from this server would not be trusted by agents of the others. Give every replica the "
        "same --cacerts-dir files, or copy ca-cert.pem and ca-key.pem from the first server's data directory; "
        "if the CA was replaced on purpose, start once with --replace-store-ca"));
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "this server's local token key differs from the one the store records for every server on it: its key is ",
      check.fingerprint, " (", check.source, "), the store's is ", Describe(in_force),
      ". Tokens from `meshid token create` for one replica would be refused by another. Copy ",
      "token-signing-key.pem from the first server's data directory, or start with --no-local-token-issuer; "
      "if the key was replaced on purpose, start once with --replace-store-ca"));
}

// Two comma-separated fingerprint lists with an item in common.
bool ShareARoot(absl::string_view a, absl::string_view b) {
  const std::vector<absl::string_view> left = absl::StrSplit(a, ',');
  for (absl::string_view item : absl::StrSplit(b, ',')) {
    if (std::find(left.begin(), left.end(), item) != left.end()) return true;
  }
  return false;
}

CaMaterialRecord RecordOf(const SharedCaCheck& check, const Clock& clock) {
  CaMaterialRecord record;
  record.kind = check.kind;
  record.fingerprint = check.fingerprint;
  record.source = check.source;
  record.recorded_at = clock.Now();
  return record;
}

}  // namespace

std::string TrustAnchorFingerprint(const SigningAuthority& authority) {
  std::vector<std::string> ders;
  for (const X509Ptr& root : authority.roots) ders.push_back(CertToDer(root.get()));
  return RootSetFingerprint(ders);
}

absl::StatusOr<std::string> PublicKeyFingerprint(EVP_PKEY* key) {
  MESHID_ASSIGN_OR_RETURN(std::string hex, PublicKeySha256Hex(key));
  return "sha256:" + hex;
}

absl::Status AgreeWithStoredCa(CaMaterialStore& store, const SharedCaCheck& check, const Clock& clock,
                               const LoggerPtr& logger) {
  const std::string doing = absl::StrCat("recording the ", check.kind, " in the store");
  auto in_force = store.RecordOrGetCaMaterial(RecordOf(check, clock));
  if (!in_force.ok()) return Prefixed(doing, in_force.status());
  if (in_force->fingerprint == check.fingerprint) return absl::OkStatus();
  // Root sets agree when they share a root (a rotation in progress); a token key only when equal.
  auto agrees = [&check](const CaMaterialRecord& recorded) {
    return recorded.fingerprint == check.fingerprint ||
           (check.kind == kCaMaterialSigningCa && ShareARoot(recorded.fingerprint, check.fingerprint));
  };
  const bool rotation = agrees(*in_force);
  if (!rotation && !check.replace) return Mismatch(check, *in_force);
  // Compare-and-swap: a replica that recorded another set meanwhile is compared again.
  auto replaced = store.ReplaceCaMaterial(in_force->fingerprint, RecordOf(check, clock));
  if (!replaced.ok()) return Prefixed(doing, replaced.status());
  if (!agrees(*replaced)) return Mismatch(check, *replaced);
  if (rotation) {
    logger->info("the store's trust anchors follow this server's (a rotation): {} ({}), were {}", check.fingerprint,
                 check.source, Describe(*in_force));
  } else {
    logger->warn(
        "--replace-store-ca: the store's {} is now {} ({}), was {}; servers still using the old one must "
        "be given the new material",
        check.kind, check.fingerprint, check.source, Describe(*in_force));
  }
  return absl::OkStatus();
}

absl::Status RefuseToCreateWhatTheStoreHas(CaMaterialStore& store, absl::string_view kind,
                                           const std::string& missing_file, bool replace) {
  if (replace) return absl::OkStatus();
  auto recorded = store.GetCaMaterial(kind);
  if (!recorded.ok()) return Prefixed(absl::StrCat("reading the store's ", kind), recorded.status());
  if (!recorded->has_value()) return absl::OkStatus();
  const bool ca = kind == kCaMaterialSigningCa;
  return absl::FailedPreconditionError(absl::StrCat(
      missing_file, " does not exist, and the store already records ", ca ? "the CA" : "the local token key",
      " every server on it uses: ", Describe(**recorded), ". A new ", ca ? "root" : "key",
      " created here would differ. Copy ", ca ? "ca-cert.pem and ca-key.pem" : "token-signing-key.pem",
      " from the first server's data directory", ca ? " (or give every replica the same --cacerts-dir)" : "",
      "; to replace the store's on purpose, start once with --replace-store-ca"));
}

}  // namespace meshid
