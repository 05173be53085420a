// Replicas that are one CA: every `meshid server` on a database records the CA it signs with in
// the store (store/ca_material_store.h) or, when another server recorded one first, checks that
// its own agrees, and refuses to start otherwise. Two things must agree:
//   - the trust anchors (the set of root certificates), so that a certificate from any replica
//     is trusted by the agents of every other. Sets that share a root agree: that is a rotation
//     in progress (old root, old + new, new), and the store's record follows the newest set.
//     Sets that share none do not: each replica made its own root, or was given other files.
//   - the key of the local token issuer (`meshid token create`), exactly, so that a token made
//     for one replica is accepted by all.
// Nothing here holds a lock or a thread; the store's record-or-get decides races.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "ca/authority.h"
#include "common/clock.h"
#include "common/logging.h"
#include "store/ca_material_store.h"

namespace meshid {

// "sha256:<hex>" of each root of `authority` (DER), sorted and comma-separated.
std::string TrustAnchorFingerprint(const SigningAuthority& authority);
// "sha256:<hex>" of the public key (DER SubjectPublicKeyInfo).
absl::StatusOr<std::string> PublicKeyFingerprint(EVP_PKEY* key);

struct SharedCaCheck {
  std::string kind;         // kCaMaterialSigningCa or kCaMaterialLocalTokenKey
  std::string fingerprint;  // this server's, as above
  std::string source;       // where this server's material comes from ("plug-in /etc/cacerts")
  // The operator changed the CA on purpose (--replace-store-ca): a differing record is replaced
  // (and logged) instead of refused.
  bool replace = false;
};

// Records `check` in the store unless a record of its kind exists; then compares (above). An
// agreeing set of trust anchors that differs replaces the record. Material that does not agree
// is FailedPrecondition with a message that names both fingerprints and sources and what to do,
// unless `check.replace`. Store errors come back prefixed with what was being done. Called at
// start and when a reload changes the roots (ca/reloader.h).
absl::Status AgreeWithStoredCa(CaMaterialStore& store, const SharedCaCheck& check, const Clock& clock,
                               const LoggerPtr& logger);

// Before a server creates material that does not exist yet (a self-signed root or a token key
// in an empty data directory): when the store already records material of `kind`, whatever
// would be created cannot agree with it, so this refuses first (FailedPrecondition naming
// `missing_file` and what to copy), leaving nothing behind. OK when nothing is recorded or
// `replace` is set.
absl::Status RefuseToCreateWhatTheStoreHas(CaMaterialStore& store, absl::string_view kind,
                                           const std::string& missing_file, bool replace);

}  // namespace meshid
