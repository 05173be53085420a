// The node's side of the trust bundle stream: what the agent does with the bundles of CA roots its
// server pushes.
//
// The rotation rule: a TrustBundle is put in force only when it shares at least one root with the
// roots the agent trusts now, the roots of `bootstrap_file` (the agent's --ca-root, re-read for
// every bundle) and those of the bundle in force. A new root is thus accepted only next to one
// already trusted (old → old + new), and an old one leaves only once the new one is held (old +
// new → new). A bundle that shares none is refused with the reason (the stream NACKs it) and the
// last good bundle stays in force. The bundle in force again is a no-op.
//
// The bundle in force is written to `state_file` (PEM: its roots, sorted by fingerprint) before it
// is used, and read back at start, so an agent restarted while the server is unreachable keeps
// the roots it had received. A kept bundle was checked when it arrived and is trusted as it is,
// also when it shares no root with `bootstrap_file` (after a completed rotation whose new root
// the operator has not put in --ca-root yet: as a SPIRE agent's kept bundle, it is what lets
// the agent reach its server again; deleting it starts over from --ca-root). One that does not
// parse is logged and ignored.
//
// Listeners (the secret cache's ROOTCA, the agent's status) are called on the applying thread,
// one bundle at a time, after the bundle is in force, outside the lock `current()` takes.
// Thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "envoy/service/discovery/v3/discovery.pb.h"
#include "meshid/trustbundle/v1/trustbundle.pb.h"

namespace meshid::trustbundle {

// A trust bundle the node checked and put in force. Immutable.
struct NodeTrustBundle {
  std::vector<std::string> root_der;  // sorted by fingerprint, distinct
  std::string roots_pem;              // the same roots, CERTIFICATE blocks in that order (SDS ROOTCA)
  std::string fingerprint;            // RootSetFingerprint of the roots (common/fingerprint.h)
  absl::Time received_at;             // when it was put in force (a kept one: when read back at start)
};

struct TrustBundleReceiverOptions {
  // The agent's --ca-root PEM: the roots it trusts without any bundle; re-read on every Apply
  // (required).
  std::string bootstrap_file;
  // Where the bundle in force is kept (PEM, written atomically before it is used, read back at
  // Create); "" keeps nothing.
  std::string state_file;
};

class TrustBundleReceiver {
 public:
  using Listener = std::function<void(const std::shared_ptr<const NodeTrustBundle>&)>;

  // Loads `state_file` when it exists (a kept bundle that does not parse is logged and ignored) and calls `listener`
  // (null: none) with it. Metrics: meshid_agent_trust_bundle_roots (roots of the bundle in force, 0 without one),
  // meshid_agent_trust_bundle_updates_total, meshid_agent_trust_bundle_rejected_total. `clock`
  // and `metrics` must outlive the receiver. InvalidArgument naming the option when
  // bootstrap_file is empty.
  static absl::StatusOr<std::unique_ptr<TrustBundleReceiver>> Create(TrustBundleReceiverOptions options,
                                                                     const Clock& clock, MetricsRegistry& metrics,
                                                                     LoggerPtr logger, Listener listener);

  // Checks `bundle` and puts it in force (see above); OK without any change when it is the bundle
  // in force. InvalidArgument when it is not canonical (wire.h ValidateTrustBundle, naming the
  // field) or "shares no root with the trust bundle in force: ..."; FailedPrecondition when
  // bootstrap_file cannot be read or parsed; Internal when the state file cannot be written (the
  // bundle is then not used either, so a restart cannot fall back to other roots than the ones
  // in force). On any error the last good bundle stays in force.
  absl::Status Apply(const meshid::trustbundle::v1::TrustBundle& bundle);
  // The xds::SotwClient handler: decodes a response (wire.h) and applies it.
  absl::Status OnResponse(const envoy::service::discovery::v3::DiscoveryResponse& response);

  std::shared_ptr<const NodeTrustBundle> current() const;  // null before the first bundle

 private:
  TrustBundleReceiver(TrustBundleReceiverOptions options, const Clock& clock, MetricsRegistry& metrics,
                      LoggerPtr logger, Listener listener);
  // The fingerprints of the roots in bootstrap_file; FailedPrecondition naming it.
  absl::StatusOr<std::vector<std::string>> BootstrapFingerprints() const;
  absl::Status Install(std::shared_ptr<const NodeTrustBundle> bundle, bool persist);

  const TrustBundleReceiverOptions options_;
  const Clock& clock_;
  const LoggerPtr logger_;
  const Listener listener_;
  Gauge& roots_gauge_;
  Counter& updates_;
  Counter& rejected_;
  absl::Mutex apply_mu_;  // serializes Apply (check, write, swap, listeners)
  mutable absl::Mutex mu_;
  std::shared_ptr<const NodeTrustBundle> current_ ABSL_GUARDED_BY(mu_);
};

}  // namespace meshid::trustbundle
