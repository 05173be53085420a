// Serving the policy stream (meshid.policy.v1.PolicyDistributionService, policy.proto):
//  - the newest snapshot lives in an xds::ResourcePublisher (PublishPolicySnapshot), whose
//    subscribers are the streams;
//  - PolicyDistributionService: the gRPC service, StreamPolicies being an xds::StreamServer
//    stream of PolicySnapshotType() (xds/server.h) and ReportStatus a unary call; used by
//    `meshid server` toward agents and by `meshid agent` toward its proxies;
//  - PolicyDistributionServer: the server's side of it, fed from the store: it polls the
//    store's newest version, validates and compiles that version before publishing it (a
//    version that does not compile here is logged and never sent; the last good one stays),
//    and writes the agents' status reports into the store, where `meshid status` reads them.
//
// Why polling: `meshid apply` writes the store directly, SQLite has no notifications, and on
// PostgreSQL a poll of one indexed max() every --policy-poll-interval (1 s) costs nothing while
// surviving reconnects and failovers that would lose a LISTEN. Every replica polls, so a version
// applied through any of them (or none) reaches every agent within about one interval.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "authz/policy_set.h"
#include "common/clock.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/random.h"
#include "meshid/policy/v1/policy.grpc.pb.h"
#include "policy/wire.h"
#include "store/policy_repository.h"
#include "store/policy_status.h"
#include "xds/publisher.h"
#include "xds/server.h"

namespace meshid::policy {

// Makes `snapshot` the current one of `publisher` (which serves kPolicySnapshotName); streams
// get it unless it is the version they have. Thread-safe.
void PublishPolicySnapshot(xds::ResourcePublisher& publisher, const meshid::policy::v1::PolicySnapshot& snapshot);
// The version `publisher` serves; nullopt before the first snapshot. Thread-safe.
std::optional<int64_t> PublishedPolicyVersion(const xds::ResourcePublisher& publisher);

// What the transport knows about a caller, and who it is.
using PolicyCaller = xds::Caller;
// Returns the caller's identity (a SPIFFE ID) or Unauthenticated/PermissionDenied.
using PolicyCallerAuthenticator = xds::Authenticator;

// One stream's state as observers see it.
struct PolicyStreamEvent {
  using Kind = xds::StreamEvent::Kind;
  Kind kind = Kind::kConnected;
  uint64_t stream_id = 0;
  std::string identity;  // from the authenticator ("" without one)
  PolicyNode node;
  int64_t applied_version = 0;
  int64_t rejected_version = 0;
  std::string last_error;
};

struct PolicyDistributionOptions {
  // Metric names start with this ("meshid_policy" on the server, "meshid_agent_policy" on the
  // agent): <prefix>_streams, <prefix>_pushes_total, <prefix>_acks_total, <prefix>_nacks_total,
  // <prefix>_stream_errors_total.
  std::string metrics_prefix = "meshid_policy";
  // Callers must authenticate (null: anyone who can connect, e.g. the agent's Unix socket,
  // whose file mode decides who can).
  PolicyCallerAuthenticator authenticate;
  // Called for every stream event, on gRPC's threads, with the stream's lock held: must be
  // quick and must not call back into the service.
  std::function<void(const PolicyStreamEvent&)> observer;
  // ReportStatus handler (identity, report); null: UNIMPLEMENTED.
  std::function<absl::Status(const std::string&, const meshid::policy::v1::PolicyStatusReport&)> report_status;
};

class PolicyDistributionService {
 public:
  // Serves the snapshot of `snapshots` (a ResourcePublisher fed with PublishPolicySnapshot).
  // `snapshots`, `metrics` and `random` must outlive the service.
  static std::unique_ptr<PolicyDistributionService> Create(PolicyDistributionOptions options,
                                                           xds::ResourceProvider& snapshots, MetricsRegistry& metrics,
                                                           RandomSource& random, LoggerPtr logger);
  virtual ~PolicyDistributionService() = default;
  // Register with a grpc::ServerBuilder; the server must be shut down before the service goes.
  virtual grpc::Service* service() = 0;
  // Ends every open stream with UNAVAILABLE (clients reconnect, e.g. to another replica) and
  // refuses new ones; call before shutting the grpc::Server down so it does not wait for them.
  virtual void Shutdown() = 0;
  virtual int64_t open_streams() const = 0;
};

struct PolicyDistributionServerOptions {
  absl::Duration poll_interval = absl::Seconds(1);
  authz::LoadOptions load;
  std::string root_namespace = "istio-system";
};

// The server's policy distribution: store → validated snapshots → streams; reports → store.
// Metrics: meshid_policy_version (the version served), meshid_policy_load_errors_total, and
// the service's meshid_policy_* counters.
class PolicyDistributionServer {
 public:
  // Loads the newest version (a store error or a version that does not compile is logged; the
  // server then serves nothing until a good version appears; with nothing applied yet it serves
  // version 0, the empty set) and starts polling. `store`,
  // `clock` and `metrics` must outlive the server.
  static absl::StatusOr<std::unique_ptr<PolicyDistributionServer>> Create(
      const PolicyDistributionServerOptions& options, PolicyRepository& repository, PolicyStatusSink& status_sink,
      PolicyCallerAuthenticator authenticate, const Clock& clock, MetricsRegistry& metrics, LoggerPtr logger);
  ~PolicyDistributionServer();

  grpc::Service* service() { return service_->service(); }
  void Shutdown();
  // One poll: publishes the store's newest version if it is new and compiles (version 0, the
  // empty set, while nothing was ever applied). Returns the version served afterwards.
  // Thread-safe.
  absl::StatusOr<int64_t> PollOnce();

 private:
  PolicyDistributionServer(const PolicyDistributionServerOptions& options, PolicyRepository& repository,
                           PolicyStatusSink& status_sink, const Clock& clock, MetricsRegistry& metrics,
                           LoggerPtr logger);
  absl::Status StoreReport(const std::string& identity, const meshid::policy::v1::PolicyStatusReport& report);
  void Loop();

  const PolicyDistributionServerOptions options_;
  PolicyRepository& repository_;
  PolicyStatusSink& status_sink_;
  const Clock& clock_;
  LoggerPtr logger_;
  OpenSslRandom random_;
  xds::ResourcePublisher publisher_;
  std::unique_ptr<PolicyDistributionService> service_;
  Gauge& version_gauge_;
  Counter& load_errors_;
  absl::Mutex poll_mu_;  // serializes PollOnce
  int64_t failed_version_ ABSL_GUARDED_BY(poll_mu_) = 0;
  std::string last_poll_error_ ABSL_GUARDED_BY(poll_mu_);
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// Converts an agent's report into store rows (agent row first, proxy_id ""), checking it:
// agent_id 1-256 bytes, at most 10,000 proxies, proxy ids unique and non-empty.
absl::StatusOr<std::vector<PolicyStatusRow>> StatusRowsFromReport(const std::string& identity,
                                                                  const meshid::policy::v1::PolicyStatusReport& report,
                                                                  absl::Time now);

}  // namespace meshid::policy
