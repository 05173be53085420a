// The node's side of the revocation stream: what the agent does with the CRLs its server pushes.
//
// A RevocationList is applied only when it checks out: the issuer chain it carries leads to a
// root of the agent's trust bundle files (re-read for every list, as the agent's CA client does),
// the CRL is signed by the first certificate of that chain (or, without a chain, by a root of
// the bundle), a CA certificate whose keyUsage allows cRLSign, is current (thisUpdate not in the future, nextUpdate not
// passed), and its number is not below the one held from the same issuer. Anything else is refused with the reason (the
// stream NACKs it) and the last good CRL stays in force.
//
// The last good CRL is written to `state_file` (PEM: the CRL, then the issuer chain) before it is
// used, and read back at start, so an agent restarted while the server is unreachable keeps
// enforcing every revocation it had received. A kept CRL past its nextUpdate is still used (an
// old list of revocations is better than none) and logged; a fresh one replaces it as soon as a
// server answers.
//
// Listeners (the secret cache's ROOTCA, the agent's status report) are called on the applying
// thread, after the CRL is in force, outside the receiver's lock. Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/crl.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "envoy/service/discovery/v3/discovery.pb.h"
#include "meshid/revocation/v1/revocation.pb.h"

namespace meshid::revocation {

// A CRL the node checked, in the forms its users need. Immutable.
struct NodeCrl {
  std::string der;
  std::string pem;                            // the CRL alone (SDS ROOTCA's crl)
  std::vector<std::string> issuer_chain_der;  // as received
  std::shared_ptr<const RevocationIndex> index;
  int64_t number = 0;
  absl::Time this_update;
  absl::Time next_update;
  std::string issuer_serial_hex;  // the certificate it was verified against
};

struct CrlReceiverOptions {
  std::string trust_bundle_file;   // PEM roots the CRL's signer must chain to (required)
  std::string pushed_bundle_file;  // and these, when the file exists (the agent's pushed bundle)
  std::string state_file;          // where the last good CRL is kept; "" keeps nothing
};

class CrlReceiver {
 public:
  using Listener = std::function<void(const std::shared_ptr<const NodeCrl>&)>;

  // Loads `state_file` when it exists (a kept CRL that no longer verifies is logged and ignored)
  // and calls `listener` with it. Metrics: meshid_agent_crl_number, meshid_agent_crl_entries,
  // meshid_agent_crl_age_seconds (since thisUpdate; NaN without a CRL),
  // meshid_agent_crl_updates_total, meshid_agent_crl_rejected_total. `clock` and `metrics` must
  // outlive the receiver. InvalidArgument naming the option when trust_bundle_file is empty.
  static absl::StatusOr<std::unique_ptr<CrlReceiver>> Create(CrlReceiverOptions options, const Clock& clock,
                                                             MetricsRegistry& metrics, LoggerPtr logger,
                                                             Listener listener);

  // Checks `list` and puts it in force (see above). InvalidArgument saying what is wrong with it;
  // FailedPrecondition when the trust bundle file cannot be read or parsed; Internal when the
  // state file cannot be written (the CRL is then not used either, so a restart cannot fall
  // back to an older list than the one in force).
  absl::Status Apply(const meshid::revocation::v1::RevocationList& list);
  // The xds::SotwClient handler: decodes a response (wire.h) and applies it.
  absl::Status OnResponse(const envoy::service::discovery::v3::DiscoveryResponse& response);

  std::shared_ptr<const NodeCrl> current() const;  // null before the first CRL

 private:
  CrlReceiver(CrlReceiverOptions options, const Clock& clock, MetricsRegistry& metrics, LoggerPtr logger,
              Listener listener);
  absl::StatusOr<std::shared_ptr<const NodeCrl>> Check(const meshid::revocation::v1::RevocationList& list,
                                                       bool allow_stale) const;
  absl::Status Install(std::shared_ptr<const NodeCrl> crl, bool persist);

  const CrlReceiverOptions options_;
  const Clock& clock_;
  const LoggerPtr logger_;
  const Listener listener_;
  const std::shared_ptr<std::atomic<int64_t>> this_update_micros_;  // of the CRL in force (0: none)
  Gauge& number_gauge_;
  Gauge& entries_gauge_;
  Counter& updates_;
  Counter& rejected_;
  absl::Mutex apply_mu_;  // serializes Apply (check, write, swap, listeners)
  mutable absl::Mutex mu_;
  std::shared_ptr<const NodeCrl> current_ ABSL_GUARDED_BY(mu_);
};

}  // namespace meshid::revocation
