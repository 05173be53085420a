// How a server follows the store's CA rotation record (`meshid ca rotate`, store/
// ca_rotation_store.h), so that every replica on one database moves through a rotation together:
//
//   phase       signs with                 trust bundle (root-cert.pem, responses, agents)
//   (none)      its own files              its own files' roots
//   prepared    `from`                     `from`'s roots
//   published   `from`                     `from`'s roots + `to`'s roots
//   active      `to`                       `from`'s roots + `to`'s roots
//   retired     `to`                       `to`'s roots
//
// `from` empty means the server's own files (the first rotation on a database). Once a record
// exists the server follows it and no longer its plug-in files: the daemon stops reloading them
// (following() says so). `to`'s key is loaded as soon as the rotation is published, so that a
// replica that cannot read it says so (log, meshid_ca_rotation_ready 0) before anyone activates.
//
// Material that cannot be built (a key that cannot be read, a root set the replicas' record
// refuses) is refused with a log line naming the rotation and what is wrong; the material in
// force stays and the record is tried again on every RunOne, logged again only when the reason
// changes. Not thread-safe: one thread (the server's reload thread) calls RunOne.
//
// Metrics: meshid_ca_rotation_phase (0 none, 1 prepared, 2 published, 3 active, 4 retired, of the
// record in force here), meshid_ca_rotation_number, meshid_ca_rotation_ready (1 when this server
// holds `to`'s key or no rotation needs it), meshid_ca_reload_total{what="rotation"}.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "ca/authority.h"
#include "ca/authority_source.h"
#include "ca/cert_issuer.h"
#include "ca/rotation_material.h"
#include "common/clock.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/random.h"
#include "store/ca_rotation_store.h"

namespace meshid {

struct CaRotationFollowerOptions {
  // Rewritten (atomically) with the trust bundle before new roots are used: <data-dir>/root-cert.pem.
  std::string trust_bundle_file;
  // Asked before material whose roots differ from those in force is used (the replicas' record:
  // ca/shared_ca.h AgreeWithStoredCa); an error refuses it. Empty: nothing to ask.
  std::function<absl::Status(const SigningAuthority& next)> approve_new_roots;
  // Opens a pkcs11: key reference with the server's --pkcs11-module and PIN. Empty: such
  // references are refused.
  OpenTokenKey open_token_key;
};

// The material of a phase: `from` and `to` as loaded (`to` may be null before activation, since
// only its roots are needed then). Pure; exposed for tests.
absl::StatusOr<std::shared_ptr<const SigningAuthority>> AuthorityForPhase(CaRotationPhase phase,
                                                                          const SigningAuthority& from,
                                                                          const SigningAuthority* to,
                                                                          absl::string_view to_roots_pem);

class CaRotationFollower {
 public:
  // Reads the record and builds the material it asks for from `own` (the server's own files'
  // material), so that a server started in the middle of (or after) a rotation signs as its
  // peers do from its first certificate. Store errors and material that cannot be built fail:
  // a server does not start signing with what its peers have moved away from.
  static absl::StatusOr<std::unique_ptr<CaRotationFollower>> Create(CaRotationFollowerOptions options,
                                                                    CaRotationStore& store,
                                                                    std::shared_ptr<const SigningAuthority> own,
                                                                    const Clock& clock, RandomSource& random,
                                                                    MetricsRegistry& metrics, LoggerPtr logger);

  // The material to start with: `own`, or what the record asks for.
  const std::shared_ptr<const SigningAuthority>& initial() const { return initial_; }
  // A rotation record exists: the server's material comes from here, not its plug-in files.
  bool following() const { return applied_.has_value(); }

  // Reads the record; when it moved since the last one applied, builds its material, asks
  // approve_new_roots when the roots change, writes the trust bundle file and replaces the
  // material in `authorities`. true: replaced; false: nothing changed. On a refusal the status
  // says why and the material in force stays.
  absl::StatusOr<bool> RunOne(AuthoritySource& authorities);

 private:
  CaRotationFollower(CaRotationFollowerOptions options, CaRotationStore& store,
                     std::shared_ptr<const SigningAuthority> own, const Clock& clock, RandomSource& random,
                     MetricsRegistry& metrics, LoggerPtr logger);
  // The material `record` asks for (loading `from` and `to` as needed, cached by content).
  absl::StatusOr<std::shared_ptr<const SigningAuthority>> Build(const CaRotationRecord& record);
  absl::StatusOr<std::shared_ptr<const SigningAuthority>> Load(const StoredCaMaterial& material);

  const CaRotationFollowerOptions options_;
  CaRotationStore& store_;
  const std::shared_ptr<const SigningAuthority> own_;
  const Clock& clock_;
  RandomSource& random_;
  const LoggerPtr logger_;
  std::shared_ptr<const SigningAuthority> initial_;
  std::optional<CaRotationKey> applied_;  // the record whose material is in force
  // Loaded material by its stored form, so a phase change does not re-read keys.
  std::vector<std::pair<StoredCaMaterial, std::shared_ptr<const SigningAuthority>>> loaded_;
  std::string last_refusal_;
  Gauge& phase_;
  Gauge& number_;
  Gauge& ready_;
  Counter& reloaded_;
  Counter& refused_;
};

}  // namespace meshid
