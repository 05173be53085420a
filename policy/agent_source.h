// The agent-stream policy source (`meshid proxy --policy-from-agent`): policy snapshots that
// `meshid apply` stored, streamed by `meshid server` and relayed by the node agent over its SDS
// socket (meshid.policy.v1.PolicyDistributionService; a PolicyStreamClient, policy/client.h).
//
// Each snapshot is parsed, validated and compiled here, with the proxy's own JWKS fetcher, and
// handed to the proxy. It is ACKed when the proxy applied it and NACKed, with the reason, when
// it cannot be used: a document that does not parse or validate, an engine that does not
// compile, a key set (JWKS) that cannot be loaded from here, or the proxy's refusal. After a NACK
// the last good policy stays in force; the agent reports the NACK to the server, where `meshid
// status` shows it. Until the first snapshot arrives the proxy has no policy (and is not ready).
//
// Versions are the store's version numbers in decimal ("7").
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "authz/policy_engine.h"
#include "authz/policy_set.h"
#include "common/clock.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/random.h"
#include "policy/client.h"
#include "policy/source.h"

namespace meshid::policy {

struct AgentPolicySourceOptions {
  std::string socket_path;  // the agent's SDS socket
  PolicyNode node;          // this proxy: id, service, namespace (shown by `meshid status`)
  authz::LoadOptions load;
  authz::PolicyEngineOptions engine;  // jwks_fetcher null: the default (file, http, https)
};

// The proxy's node id unless one is given: "<service>.<namespace>~<host name>~<pid>".
std::string DefaultProxyId(const std::string& service, const std::string& namespace_);

class AgentPolicySource final : public PolicySource {
 public:
  // Counts meshid_proxy_policy_snapshots_total{result="applied"|"rejected"} in `metrics`, which
  // must outlive the source. Engines check JWTs against `clock`, which must outlive them.
  AgentPolicySource(AgentPolicySourceOptions options, const Clock& clock, LoggerPtr logger, MetricsRegistry& metrics);
  ~AgentPolicySource() override;

  absl::Status Start(OnSnapshot on_snapshot) override;
  void Stop() override;
  std::string Describe() const override;

  // Compiles a snapshot as Start's stream does (exposed for tests): the engine, or why not.
  absl::StatusOr<std::shared_ptr<const authz::PolicyEngine>> Compile(
      const meshid::policy::v1::PolicySnapshot& snapshot) const;

 private:
  absl::Status Apply(const PolicySnapshotPtr& snapshot);

  const AgentPolicySourceOptions options_;
  const Clock& clock_;
  LoggerPtr logger_;
  Counter& applied_;
  Counter& rejected_;
  OpenSslRandom random_;
  OnSnapshot on_snapshot_;
  std::unique_ptr<xds::UpstreamSource> upstream_;
  std::unique_ptr<PolicyStreamClient> client_;  // destroyed before the upstream it uses
};

}  // namespace meshid::policy
