// The agent's policy relay: subscribes to `meshid server`'s policy stream and serves the same
// stream (meshid.policy.v1.PolicyDistributionService) to the proxies on the agent's SDS socket,
// following the same xDS rules both ways (authz/policy_distribution_xds.h). It reports every
// proxy's state (id, service, namespace, version applied, last NACK and its error) and its own
// to the server, which stores it for `meshid status`.
//
// Upstream authentication: mutual TLS with the agent's own SVID from the secret cache; until the
// cache has one, the agent's token as `authorization: Bearer` over TLS (the CSR API's two
// methods). The server's certificate is checked against --ca-root, re-read on every connect.
//
// What the agent checks: a snapshot must decode and validate (authz::DecodePolicyResponse:
// types, order, digest); otherwise it is NACKed upstream and not relayed. Compiling it is the
// proxy's business (a key set only a proxy can reach, for example), and each proxy ACKs or NACKs
// for itself. Status reports go out shortly after any change (coalesced) and every
// `report_interval` as a heartbeat; a failed report is retried on the next occasion.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "authz/policy_distribution.h"
#include "authz/policy_distribution_client.h"
#include "common/clock.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/random.h"
#include "nodeagent/token_source.h"
#include "sds/provider.h"

namespace meshid {

struct PolicyRelayOptions {
  bool enabled = false;
  std::string server_address;  // host:port of meshid server
  std::string agent_id;        // this agent's name in `meshid status` (default: the host name)
  absl::Duration report_interval = absl::Seconds(30);
  absl::Duration report_delay = absl::Milliseconds(200);  // changes within this are reported together
  absl::Duration forget_after = absl::Minutes(10);        // disconnected proxies stay in reports this long
};

class PolicyRelay {
 public:
  struct Dependencies {
    sds::SdsSecretProvider* secrets = nullptr;  // the agent's own SVID ("default" without a token)
    TokenSource* token = nullptr;                // the agent's token (fallback credential)
    std::string ca_root_file;                    // trust bundle for the server's certificate
    std::string server_name;                     // overrides the name checked, if set
    bool insecure_plaintext = false;             // only for a server started with --insecure-plaintext
    const Clock* clock = nullptr;
    RandomSource* random = nullptr;
    MetricsRegistry* metrics = nullptr;
    LoggerPtr logger;
  };

  // Builds the proxy-facing service (register it before the socket server starts), then Start().
  static absl::StatusOr<std::unique_ptr<PolicyRelay>> Create(const PolicyRelayOptions& options, Dependencies deps);
  ~PolicyRelay();  // stops the upstream stream and the reporter; the socket server must be gone

  grpc::Service* service() { return service_->service(); }
  // Connects upstream and starts reporting.
  absl::Status Start();

  // For tests and /readyz: what the relay runs and how many proxies it knows.
  int64_t relayed_version() const;
  size_t proxies() const;

  class Impl;

 private:
  explicit PolicyRelay(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  authz::PolicyDistributionService* service_ = nullptr;
};

// The default agent id: the host name.
std::string DefaultAgentId();

}  // namespace meshid
