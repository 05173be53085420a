#include "policy/server.h"

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "policy/apply.h"

namespace meshid::policy {

using envoy::service::discovery::v3::DiscoveryRequest;
using envoy::service::discovery::v3::DiscoveryResponse;
using meshid::policy::v1::PolicyStatusReport;
using meshid::policy::v1::PolicyStatusReportResponse;

// ---- the snapshot ----

void PublishPolicySnapshot(xds::ResourcePublisher& publisher, const meshid::policy::v1::PolicySnapshot& snapshot) {
  // The publisher serves kPolicySnapshotName (the only name this resource has): no error.
  (void)publisher.Publish(PolicySnapshotResource(snapshot));
}

std::optional<int64_t> PublishedPolicyVersion(const xds::ResourcePublisher& publisher) {
  xds::ResourcePtr current = publisher.Current(kPolicySnapshotName);
  if (current == nullptr) return std::nullopt;
  return ParsePolicyVersion(current->version).value_or(0);
}

// ---- PolicyDistributionService ----

namespace {

PolicyStreamEvent ToPolicyEvent(const xds::StreamEvent& e) {
  PolicyStreamEvent event;
  event.kind = e.kind;
  event.stream_id = e.stream_id;
  event.identity = e.identity;
  event.node = PolicyNodeOf(e.node);
  // The stream checked every version_info it took: decimal.
  event.applied_version = ParsePolicyVersion(e.client.applied_version).value_or(0);
  event.rejected_version = ParsePolicyVersion(e.client.rejected_version).value_or(0);
  event.last_error = e.client.last_error;
  return event;
}

xds::StreamServerOptions StreamOptions(const PolicyDistributionOptions& options) {
  xds::StreamServerOptions out;
  out.sotw_rpc = "StreamPolicies";
  out.metrics_prefix = options.metrics_prefix;
  out.subject = "policy";
  out.authenticate = options.authenticate;
  if (options.observer) {
    out.observer = [observer = options.observer](const xds::StreamEvent& e) { observer(ToPolicyEvent(e)); };
  }
  return out;
}

class ServiceImpl final : public PolicyDistributionService,
                          public meshid::policy::v1::PolicyDistributionService::CallbackService {
 public:
  ServiceImpl(PolicyDistributionOptions options, xds::ResourceProvider& snapshots, MetricsRegistry& registry,
              RandomSource& random, LoggerPtr logger)
      : options_(std::move(options)),
        logger_(std::move(logger)),
        streams_(xds::StreamServer::Create(PolicySnapshotType(), StreamOptions(options_), snapshots, registry, random,
                                           logger_)) {}

  grpc::Service* service() override { return this; }
  void Shutdown() override { streams_->Shutdown(); }
  int64_t open_streams() const override { return streams_->open_streams(); }

  grpc::ServerBidiReactor<DiscoveryRequest, DiscoveryResponse>* StreamPolicies(
      grpc::CallbackServerContext* context) override {
    return streams_->OpenSotw(context);
  }

  grpc::ServerUnaryReactor* ReportStatus(grpc::CallbackServerContext* context, const PolicyStatusReport* request,
                                         PolicyStatusReportResponse*) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    if (!options_.report_status) {
      reactor->Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "status reports go to meshid server, not here"));
      return reactor;
    }
    absl::StatusOr<std::string> identity = std::string();
    if (options_.authenticate) identity = options_.authenticate(xds::CallerOf(*context));
    if (!identity.ok()) {
      reactor->Finish(ToGrpcStatus(identity.status()));
      return reactor;
    }
    absl::Status stored = options_.report_status(*identity, *request);
    if (!stored.ok()) {
      logger_->warn("status report of agent \"{}\" not stored: {}", request->agent_id(), stored.message());
    }
    reactor->Finish(ToGrpcStatus(stored));
    return reactor;
  }

 private:
  const PolicyDistributionOptions options_;
  const LoggerPtr logger_;
  const std::unique_ptr<xds::StreamServer> streams_;
};

}  // namespace

std::unique_ptr<PolicyDistributionService> PolicyDistributionService::Create(PolicyDistributionOptions options,
                                                                             xds::ResourceProvider& snapshots,
                                                                             MetricsRegistry& metrics,
                                                                             RandomSource& random, LoggerPtr logger) {
  return std::make_unique<ServiceImpl>(std::move(options), snapshots, metrics, random, std::move(logger));
}

// ---- PolicyDistributionServer ----

absl::StatusOr<std::vector<PolicyStatusRow>> StatusRowsFromReport(const std::string& identity,
                                                                  const PolicyStatusReport& report, absl::Time now) {
  if (report.agent_id().empty() || report.agent_id().size() > 256) {
    return absl::InvalidArgumentError("agent_id: must be 1 to 256 bytes");
  }
  if (report.proxies_size() > 10000) return absl::InvalidArgumentError("proxies: more than 10000");
  if (report.applied_version() < 0 || report.rejected_version() < 0) {
    return absl::InvalidArgumentError("applied_version, rejected_version: must not be negative");
  }
  if (report.crl_number() < 0) return absl::InvalidArgumentError("crl_number: must not be negative");
  std::vector<PolicyStatusRow> rows;
  rows.reserve(report.proxies_size() + 1);
  PolicyStatusRow agent;
  agent.agent_id = report.agent_id();
  agent.reporter = identity;
  agent.applied_version = report.applied_version();
  agent.rejected_version = report.rejected_version();
  agent.last_error = report.last_error();
  agent.crl_number = report.crl_number();
  agent.trust_bundle = report.trust_bundle();
  agent.connected = true;
  agent.changed_at = now;
  agent.reported_at = now;
  rows.push_back(std::move(agent));
  std::set<std::string> seen;
  for (int i = 0; i < report.proxies_size(); ++i) {
    const auto& p = report.proxies(i);
    if (p.proxy_id().empty())
      return absl::InvalidArgumentError(absl::StrCat("proxies[", i, "].proxy_id: must not be empty"));
    if (!seen.insert(p.proxy_id()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("proxies[", i, "].proxy_id: \"", p.proxy_id(), "\" is listed twice"));
    }
    PolicyStatusRow row;
    row.agent_id = report.agent_id();
    row.proxy_id = p.proxy_id();
    row.reporter = identity;
    row.service = p.service();
    row.namespace_ = p.namespace_();
    row.applied_version = p.applied_version();
    row.rejected_version = p.rejected_version();
    row.last_error = p.last_error();
    row.crl_number = p.crl_number();
    row.trust_bundle = p.trust_bundle();
    row.connected = p.connected();
    row.changed_at = p.changed_at_unix_micros() > 0 ? absl::FromUnixMicros(p.changed_at_unix_micros()) : now;
    row.reported_at = now;
    rows.push_back(std::move(row));
  }
  return rows;
}

PolicyDistributionServer::PolicyDistributionServer(const PolicyDistributionServerOptions& options,
                                                   PolicyRepository& repository, PolicyStatusSink& status_sink,
                                                   const Clock& clock, MetricsRegistry& metrics, LoggerPtr logger)
    : options_(options),
      repository_(repository),
      status_sink_(status_sink),
      clock_(clock),
      logger_(std::move(logger)),
      publisher_({std::string(kPolicySnapshotName)}),
      version_gauge_(metrics.AddGauge("meshid_policy_version", "The policy version this server serves (0: none).")),
      load_errors_(metrics.AddCounter("meshid_policy_load_errors_total",
                                      "Failures to read or compile the newest policy version.")) {}

absl::StatusOr<std::unique_ptr<PolicyDistributionServer>> PolicyDistributionServer::Create(
    const PolicyDistributionServerOptions& options, PolicyRepository& repository, PolicyStatusSink& status_sink,
    PolicyCallerAuthenticator authenticate, const Clock& clock, MetricsRegistry& metrics, LoggerPtr logger) {
  if (options.poll_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--policy-poll-interval: must be positive");
  }
  auto server = std::unique_ptr<PolicyDistributionServer>(
      new PolicyDistributionServer(options, repository, status_sink, clock, metrics, logger));
  PolicyDistributionServer* raw = server.get();
  PolicyDistributionOptions service_options;
  service_options.metrics_prefix = "meshid_policy";
  service_options.authenticate = std::move(authenticate);
  service_options.report_status = [raw](const std::string& identity, const PolicyStatusReport& report) {
    return raw->StoreReport(identity, report);
  };
  service_options.observer = [logger](const PolicyStreamEvent& e) {
    if (e.kind == PolicyStreamEvent::Kind::kConnected) {
      logger->info("policy stream opened by \"{}\" ({}), which has version {}", e.node.id, e.identity,
                   e.applied_version);
    } else if (e.kind == PolicyStreamEvent::Kind::kClosed) {
      logger->info("policy stream of \"{}\" closed (it had version {})", e.node.id, e.applied_version);
    }
  };
  server->service_ = PolicyDistributionService::Create(std::move(service_options), server->publisher_, metrics,
                                                       server->random_, logger);
  (void)server->PollOnce();  // logs its own errors; the loop retries
  server->thread_ = std::thread([raw] { raw->Loop(); });
  return server;
}

PolicyDistributionServer::~PolicyDistributionServer() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void PolicyDistributionServer::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  service_->Shutdown();
}

void PolicyDistributionServer::Loop() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stop_), options_.poll_interval)) return;
    }
    (void)PollOnce();
  }
}

absl::StatusOr<int64_t> PolicyDistributionServer::PollOnce() {
  absl::MutexLock lock(&poll_mu_);
  const std::optional<int64_t> published = PublishedPolicyVersion(publisher_);
  const int64_t serving = published.value_or(0);
  auto fail = [&](const absl::Status& status) -> absl::Status {
    load_errors_.Increment();
    std::string message(status.message());
    if (message != last_poll_error_) logger_->error("policy: {}", message);  // once per distinct error
    last_poll_error_ = std::move(message);
    return status;
  };
  auto head = repository_.PolicyHeadVersion();
  if (!head.ok())
    return fail(
        absl::Status(head.status().code(), absl::StrCat("reading the newest version: ", head.status().message())));
  if (*head == 0 && !published.has_value()) {
    // Nothing applied yet: the empty set, so proxies start with Istio's defaults.
    PublishPolicySnapshot(publisher_, *MakePolicySnapshot(PolicyVersion{}));
    version_gauge_.Set(0);
    last_poll_error_.clear();
    return 0;
  }
  if (*head == 0 || *head == serving || *head == failed_version_) {
    last_poll_error_.clear();
    return serving;
  }
  auto version = repository_.GetPolicyVersion(*head);
  if (!version.ok()) {
    return fail(absl::Status(version.status().code(),
                             absl::StrCat("reading version ", *head, ": ", version.status().message())));
  }
  PolicySnapshotPtr snapshot = MakePolicySnapshot(*version);
  if (!version->info.digest.empty() && snapshot->digest() != version->info.digest) {
    failed_version_ = *head;
    return fail(absl::DataLossError(absl::StrCat("version ", *head, ": the stored documents do not match the digest ",
                                                 "recorded when it was applied; not serving it")));
  }
  rbac::Diagnostics diag;
  authz::PolicyEngineOptions engine_options;
  engine_options.root_namespace = options_.root_namespace;
  auto set = ParseSnapshot(*snapshot, options_.load, diag);
  absl::Status compiled = set.ok() ? CompileCheck(std::move(*set), engine_options) : set.status();
  if (!compiled.ok()) {
    failed_version_ = *head;
    return fail(absl::InvalidArgumentError(absl::StrCat("version ", *head, " is not valid here, still serving version ",
                                                        serving, ":\n", compiled.message())));
  }
  PublishPolicySnapshot(publisher_, *snapshot);
  version_gauge_.Set(static_cast<double>(*head));
  last_poll_error_.clear();
  logger_->info("serving policy version {} ({} documents, digest {}): {}", *head, snapshot->documents_size(),
                snapshot->digest().substr(0, 12), version->info.description);
  return *head;
}

absl::Status PolicyDistributionServer::StoreReport(const std::string& identity, const PolicyStatusReport& report) {
  auto rows = StatusRowsFromReport(identity, report, clock_.Now());
  if (!rows.ok()) return rows.status();
  return status_sink_.ReplacePolicyStatus(report.agent_id(), *rows);
}

}  // namespace meshid::policy
