// The agent's policy relay: subscribes to `meshid server`'s policy stream (a PolicyStreamClient)
// and serves the same stream (a PolicyDistributionService fed by an xds::ResourcePublisher) to
// the proxies on the agent's SDS socket, following the same xDS rules both ways (policy/wire.h,
// xds/). It reports every proxy's state (id, service, namespace, version applied, last NACK and
// its error) and its own to the server, which stores it for `meshid status`.
//
// Upstream: the agent's connection to the server (xds::UpstreamSource; the agent's is mutual
// TLS with its own SVID, see nodeagent/server_upstream.h), for the stream and the reports.
//
// What the agent checks: a snapshot must decode and validate (policy::DecodePolicyResponse:
// types, order, digest); otherwise it is NACKed upstream and not relayed. Compiling it is the
// proxy's business (a key set only a proxy can reach, for example), and each proxy ACKs or NACKs
// for itself. Status reports go out shortly after any change (coalesced) and every
// `report_interval` as a heartbeat; a failed report is retried on the next occasion.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/random.h"
#include "xds/upstream.h"

namespace meshid::policy {

struct PolicyRelayOptions {
  bool enabled = false;
  std::string server_address;  // host:port of meshid server (the agent's default: its CA address)
  std::string agent_id;        // this agent's name in `meshid status` (default: the host name)
  absl::Duration report_interval = absl::Seconds(30);
  absl::Duration report_delay = absl::Milliseconds(200);  // changes within this are reported together
  absl::Duration forget_after = absl::Minutes(10);        // disconnected proxies stay in reports this long
};

// What the node trusts, reported beside the policy state: the agent's own CRL number (its
// revocation receiver) and roots (its ROOTCA), and each proxy's (from the ROOTCA it last
// acknowledged). Roots as "sha256:<hex>,..." (common/fingerprint.h). Called on the reporter's
// thread.
class TrustStatusSource {
 public:
  virtual ~TrustStatusSource() = default;
  virtual int64_t AgentCrlNumber() const = 0;                                   // 0: none
  virtual int64_t ProxyCrlNumber(const std::string& proxy_id) const = 0;        // 0: none or not known
  virtual std::string AgentTrustBundle() const = 0;                             // "": none yet
  virtual std::string ProxyTrustBundle(const std::string& proxy_id) const = 0;  // "": not known
};

class PolicyRelay {
 public:
  // Builds the proxy-facing service (register it before the socket server starts), then Start().
  // `upstream`, `trust`, `clock`, `random` and `metrics` must outlive the relay.
  // InvalidArgument naming the flag for a bad agent id.
  static absl::StatusOr<std::unique_ptr<PolicyRelay>> Create(const PolicyRelayOptions& options,
                                                             xds::UpstreamSource& upstream,
                                                             const TrustStatusSource& trust, const Clock& clock,
                                                             RandomSource& random, MetricsRegistry& metrics,
                                                             LoggerPtr logger);
  ~PolicyRelay();  // stops the upstream stream and the reporter; the socket server must be gone

  grpc::Service* service();
  // Connects upstream and starts reporting. Call once.
  absl::Status Start();
  // Something reported changed outside the policy streams (a CRL, a trust bundle): report soon. Thread-safe.
  void ReportSoon();

  // For tests and /readyz: what the relay runs and how many proxies it knows. Thread-safe.
  int64_t relayed_version() const;
  size_t proxies() const;

  class Impl;

 private:
  explicit PolicyRelay(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The default agent id: the host name.
std::string DefaultAgentId();

}  // namespace meshid::policy
