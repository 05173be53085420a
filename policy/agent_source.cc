#include "policy/agent_source.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "policy/apply.h"

namespace meshid::policy {

std::string DefaultProxyId(const std::string& service, const std::string& namespace_) {
  char host[256] = {};
  if (::gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') std::snprintf(host, sizeof(host), "localhost");
  return absl::StrCat(service, ".", namespace_, "~", host, "~", ::getpid());
}

namespace {
constexpr char kSnapshotsHelp[] = "Policy snapshots from the agent, by outcome (rejected ones were NACKed).";
}  // namespace

AgentPolicySource::AgentPolicySource(AgentPolicySourceOptions options, const Clock& clock, LoggerPtr logger,
                                     MetricsRegistry& metrics)
    : options_(std::move(options)),
      clock_(clock),
      logger_(std::move(logger)),
      applied_(metrics.AddCounter("meshid_proxy_policy_snapshots_total", kSnapshotsHelp, {{"result", "applied"}})),
      rejected_(metrics.AddCounter("meshid_proxy_policy_snapshots_total", kSnapshotsHelp, {{"result", "rejected"}})) {}

AgentPolicySource::~AgentPolicySource() { Stop(); }

std::string AgentPolicySource::Describe() const {
  return absl::StrCat("agent:unix:", options_.socket_path, " (as \"", options_.node.id, "\")");
}

absl::Status AgentPolicySource::Start(OnSnapshot on_snapshot) {
  if (client_ != nullptr) return absl::FailedPreconditionError("the policy source is already started");
  if (options_.socket_path.empty())
    return absl::InvalidArgumentError("--sds-socket: required for the agent's policy stream");
  if (options_.node.id.empty()) return absl::InvalidArgumentError("the proxy needs a node id for the policy stream");
  on_snapshot_ = std::move(on_snapshot);
  PolicyStreamClientOptions client_options;
  client_options.node = options_.node;
  upstream_ = std::make_unique<xds::InsecureUpstream>(absl::StrCat("unix:", options_.socket_path),
                                                      xds::StreamChannelArguments(kMaxPolicyMessageBytes),
                                                      absl::StrCat("the agent at unix:", options_.socket_path));
  // The agent is local: retry soon after it restarts.
  client_options.max_backoff = absl::Seconds(5);
  auto client = PolicyStreamClient::Create(
      std::move(client_options), *upstream_, [this](const PolicySnapshotPtr& s) { return Apply(s); }, nullptr, random_,
      logger_);
  if (!client.ok()) return client.status();
  client_ = std::move(*client);
  return absl::OkStatus();
}

void AgentPolicySource::Stop() {
  client_.reset();
  upstream_.reset();
}

absl::StatusOr<std::shared_ptr<const authz::PolicyEngine>> AgentPolicySource::Compile(
    const meshid::policy::v1::PolicySnapshot& snapshot) const {
  rbac::Diagnostics diag;
  auto set = ParseSnapshot(snapshot, options_.load, diag);
  if (!set.ok()) return set.status();
  auto engine = authz::PolicyEngine::Create(std::move(*set), clock_, options_.engine);
  if (!engine.ok()) return absl::InvalidArgumentError(absl::StrCat("does not compile: ", engine.status().message()));
  // A key set this proxy cannot load would make every token of that issuer fail: refuse the
  // version and keep the last good one, rather than start rejecting valid requests.
  if (!(*engine)->warnings().empty()) {
    return absl::FailedPreconditionError(absl::StrJoin((*engine)->warnings(), "; "));
  }
  return *engine;
}

absl::Status AgentPolicySource::Apply(const PolicySnapshotPtr& snapshot) {
  auto engine = Compile(*snapshot);
  absl::Status status =
      engine.ok() ? on_snapshot_(Snapshot{absl::StrCat(snapshot->version()), *engine}) : engine.status();
  (status.ok() ? applied_ : rejected_).Increment();
  if (!status.ok()) {
    logger_->error("policy version {} rejected (NACK), the last good policy stays: {}", snapshot->version(),
                   status.message());
  }
  return status;
}

}  // namespace meshid::policy
