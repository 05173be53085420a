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

// ---- PolicySnapshotPublisher ----

class PolicySnapshotPublisher::Slot {
 public:
  explicit Slot(Watcher watcher) : watcher_(std::move(watcher)) {}
  void Call(const PolicySnapshotPtr& snapshot) {
    absl::MutexLock lock(&mu_);
    if (active_) watcher_(snapshot);
  }
  // After this returns no call runs or will run.
  void Deactivate() {
    absl::MutexLock lock(&mu_);
    active_ = false;
  }

 private:
  absl::Mutex mu_;
  bool active_ ABSL_GUARDED_BY(mu_) = true;
  Watcher watcher_;
};

PolicySnapshotPublisher::PolicySnapshotPublisher() = default;
PolicySnapshotPublisher::~PolicySnapshotPublisher() = default;

PolicySnapshotPtr PolicySnapshotPublisher::Current() const {
  absl::MutexLock lock(&mu_);
  return current_;
}

void PolicySnapshotPublisher::Publish(PolicySnapshotPtr snapshot) {
  if (snapshot == nullptr) return;
  std::vector<std::shared_ptr<Slot>> slots;
  {
    absl::MutexLock lock(&mu_);
    if (current_ != nullptr && current_->version() == snapshot->version() && current_->digest() == snapshot->digest()) {
      return;
    }
    current_ = snapshot;
    for (const auto& [id, slot] : watchers_) slots.push_back(slot);
  }
  for (const auto& slot : slots) slot->Call(snapshot);
}

uint64_t PolicySnapshotPublisher::Watch(Watcher watcher) {
  absl::MutexLock lock(&mu_);
  uint64_t id = next_id_++;
  watchers_.emplace_back(id, std::make_shared<Slot>(std::move(watcher)));
  return id;
}

void PolicySnapshotPublisher::Unwatch(uint64_t id) {
  std::shared_ptr<Slot> slot;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = watchers_.begin(); it != watchers_.end(); ++it) {
      if (it->first == id) {
        slot = std::move(it->second);
        watchers_.erase(it);
        break;
      }
    }
  }
  if (slot != nullptr) slot->Deactivate();
}

// ---- PolicyDistributionService ----

namespace {

struct ServiceMetrics {
  Gauge& streams;
  Counter& pushes;
  Counter& acks;
  Counter& nacks;
};

PolicyCaller CallerOf(const grpc::CallbackServerContext* context) {
  PolicyCaller caller;
  std::shared_ptr<const grpc::AuthContext> auth = context->auth_context();
  if (auth != nullptr) {
    for (const auto& v : auth->FindPropertyValues("transport_security_type")) caller.tls = caller.tls || v == "ssl";
    for (const auto& v : auth->FindPropertyValues("x509_pem_cert")) caller.peer_cert_pem.assign(v.data(), v.size());
    for (const auto& v : auth->FindPropertyValues("x509_pem_cert_chain"))
      caller.peer_chain_pems.emplace_back(v.data(), v.size());
  }
  auto range = context->client_metadata().equal_range("authorization");
  for (auto it = range.first; it != range.second; ++it)
    caller.authorization.emplace_back(it->second.data(), it->second.size());
  return caller;
}

class ServiceImpl;

class Stream final : public grpc::ServerBidiReactor<DiscoveryRequest, DiscoveryResponse> {
 public:
  Stream(ServiceImpl* service, grpc::CallbackServerContext* context);
  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnDone() override;
  void HandleSnapshot(const PolicySnapshotPtr& snapshot);
  void Close(const grpc::Status& status);

 private:
  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EmitLocked(PolicyStreamEvent::Kind kind) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string DescribeLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  ServiceImpl* const service_;
  const uint64_t id_;
  uint64_t watch_id_ = 0;
  absl::Mutex mu_;
  std::string identity_ ABSL_GUARDED_BY(mu_);
  PolicyStreamServerState state_ ABSL_GUARDED_BY(mu_);
  DiscoveryRequest request_;  // owned by the outstanding read
  DiscoveryResponse response_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> deferred_finish_ ABSL_GUARDED_BY(mu_);
};

class ServiceImpl final : public PolicyDistributionService,
                          public meshid::policy::v1::PolicyDistributionService::CallbackService {
 public:
  ServiceImpl(PolicyDistributionOptions options, PolicySnapshotPublisher& publisher, MetricsRegistry& registry,
              RandomSource& random, LoggerPtr logger)
      : options_(std::move(options)),
        publisher_(publisher),
        metrics_{registry.AddGauge(options_.metrics_prefix + "_streams", "Open policy streams."),
                 registry.AddCounter(options_.metrics_prefix + "_pushes_total", "Policy snapshots sent."),
                 registry.AddCounter(options_.metrics_prefix + "_acks_total", "Policy snapshots acknowledged (ACK)."),
                 registry.AddCounter(options_.metrics_prefix + "_nacks_total", "Policy snapshots rejected (NACK).")},
        random_(random),
        logger_(std::move(logger)) {}

  grpc::Service* service() override { return this; }

  void Shutdown() override {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
    for (Stream* stream : streams_) {
      stream->Close(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the policy server is shutting down"));
    }
  }

  int64_t open_streams() const override {
    absl::MutexLock lock(&mu_);
    return static_cast<int64_t>(streams_.size());
  }

  grpc::ServerBidiReactor<DiscoveryRequest, DiscoveryResponse>* StreamPolicies(
      grpc::CallbackServerContext* context) override {
    return new Stream(this, context);
  }

  grpc::ServerUnaryReactor* ReportStatus(grpc::CallbackServerContext* context, const PolicyStatusReport* request,
                                         PolicyStatusReportResponse*) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    if (!options_.report_status) {
      reactor->Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "status reports go to meshid server, not here"));
      return reactor;
    }
    auto identity = Authenticate(context);
    if (!identity.ok()) {
      reactor->Finish(ToGrpcStatus(identity.status()));
      return reactor;
    }
    absl::Status stored = options_.report_status(*identity, *request);
    if (!stored.ok() && logger_)
      logger_->warn("status report of agent \"{}\" not stored: {}", request->agent_id(), stored.message());
    reactor->Finish(ToGrpcStatus(stored));
    return reactor;
  }

  absl::StatusOr<std::string> Authenticate(const grpc::CallbackServerContext* context) const {
    if (!options_.authenticate) return std::string();
    return options_.authenticate(CallerOf(context));
  }

  // Registers a new stream; false when shutting down.
  bool Register(Stream* stream) {
    absl::MutexLock lock(&mu_);
    if (shutting_down_) return false;
    streams_.insert(stream);
    metrics_.streams.Add(1);
    return true;
  }
  void Unregister(Stream* stream) {
    absl::MutexLock lock(&mu_);
    if (streams_.erase(stream) > 0) metrics_.streams.Add(-1);
  }

  PolicySnapshotPublisher& publisher() { return publisher_; }
  const ServiceMetrics& metrics() const { return metrics_; }
  const LoggerPtr& logger() const { return logger_; }
  const PolicyDistributionOptions& options() const { return options_; }
  std::string NewNonce() { return random_.Hex(8); }
  uint64_t NextStreamId() { return next_stream_id_.fetch_add(1) + 1; }

 private:
  const PolicyDistributionOptions options_;
  PolicySnapshotPublisher& publisher_;
  ServiceMetrics metrics_;
  RandomSource& random_;
  LoggerPtr logger_;
  std::atomic<uint64_t> next_stream_id_{0};
  mutable absl::Mutex mu_;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  std::set<Stream*> streams_ ABSL_GUARDED_BY(mu_);
};

Stream::Stream(ServiceImpl* service, grpc::CallbackServerContext* context)
    : service_(service), id_(service->NextStreamId()) {
  const bool registered = service_->Register(this);
  auto identity = service_->Authenticate(context);
  absl::MutexLock lock(&mu_);
  if (!registered) {
    FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the policy server is shutting down"));
    return;
  }
  if (!identity.ok()) {
    FinishLocked(ToGrpcStatus(identity.status()));
    return;
  }
  identity_ = std::move(*identity);
  state_.OnSnapshot(service_->publisher().Current());
  watch_id_ = service_->publisher().Watch([this](const PolicySnapshotPtr& s) { HandleSnapshot(s); });
  StartRead(&request_);
}

std::string Stream::DescribeLocked() const {
  std::string who = state_.node().id.empty() ? "(no node yet)" : absl::StrCat("\"", state_.node().id, "\"");
  return identity_.empty() ? absl::StrCat("policy stream of ", who)
                           : absl::StrCat("policy stream of ", who, " (", identity_, ")");
}

void Stream::EmitLocked(PolicyStreamEvent::Kind kind) {
  if (!service_->options().observer) return;
  PolicyStreamEvent event;
  event.kind = kind;
  event.stream_id = id_;
  event.identity = identity_;
  event.node = state_.node();
  event.applied_version = state_.applied_version();
  event.rejected_version = state_.rejected_version();
  event.last_error = state_.last_error();
  service_->options().observer(event);
}

void Stream::OnReadDone(bool ok) {
  absl::MutexLock lock(&mu_);
  if (finishing_) return;
  if (!ok) {
    FinishLocked(grpc::Status::OK);
    return;
  }
  auto result = state_.OnRequest(request_);
  if (!result.ok()) {
    FinishLocked(ToGrpcStatus(result.status()));
    return;
  }
  if (result->first) EmitLocked(PolicyStreamEvent::Kind::kConnected);
  if (result->ack) {
    service_->metrics().acks.Increment();
    EmitLocked(PolicyStreamEvent::Kind::kAcked);
  }
  if (result->nack) {
    service_->metrics().nacks.Increment();
    if (service_->logger()) {
      service_->logger()->warn("{} rejected policy version {}: {}", DescribeLocked(), result->version, result->error);
    }
    EmitLocked(PolicyStreamEvent::Kind::kNacked);
  }
  MaybeWriteLocked();
  StartRead(&request_);
}

void Stream::HandleSnapshot(const PolicySnapshotPtr& snapshot) {
  absl::MutexLock lock(&mu_);
  if (finishing_) return;
  state_.OnSnapshot(snapshot);
  MaybeWriteLocked();
}

void Stream::MaybeWriteLocked() {
  if (writing_ || finishing_) return;
  auto response = state_.TakeResponse(service_->NewNonce());
  if (!response.has_value()) return;
  response_ = std::move(*response);
  writing_ = true;
  service_->metrics().pushes.Increment();
  StartWrite(&response_);
}

void Stream::OnWriteDone(bool ok) {
  absl::MutexLock lock(&mu_);
  writing_ = false;
  response_.Clear();
  if (deferred_finish_.has_value()) {
    Finish(*deferred_finish_);
    deferred_finish_.reset();
    return;
  }
  if (finishing_) return;
  if (!ok) {
    FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, "write failed: the stream is broken"));
    return;
  }
  MaybeWriteLocked();
}

void Stream::Close(const grpc::Status& status) {
  absl::MutexLock lock(&mu_);
  FinishLocked(status);
}

void Stream::FinishLocked(const grpc::Status& status) {
  if (finishing_) return;
  finishing_ = true;
  if (!status.ok() && service_->logger() && status.error_code() != grpc::StatusCode::UNAVAILABLE) {
    service_->logger()->warn("closing {}: {}", DescribeLocked(), status.error_message());
  }
  if (writing_) {
    deferred_finish_ = status;
  } else {
    Finish(status);
  }
}

void Stream::OnDone() {
  if (watch_id_ != 0) service_->publisher().Unwatch(watch_id_);
  {
    absl::MutexLock lock(&mu_);
    if (state_.started()) EmitLocked(PolicyStreamEvent::Kind::kClosed);
  }
  service_->Unregister(this);
  delete this;
}

}  // namespace

std::unique_ptr<PolicyDistributionService> PolicyDistributionService::Create(PolicyDistributionOptions options,
                                                                             PolicySnapshotPublisher& publisher,
                                                                             MetricsRegistry& metrics,
                                                                             RandomSource& random, LoggerPtr logger) {
  return std::make_unique<ServiceImpl>(std::move(options), publisher, metrics, random, std::move(logger));
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
  std::vector<PolicyStatusRow> rows;
  rows.reserve(report.proxies_size() + 1);
  PolicyStatusRow agent;
  agent.agent_id = report.agent_id();
  agent.reporter = identity;
  agent.applied_version = report.applied_version();
  agent.rejected_version = report.rejected_version();
  agent.last_error = report.last_error();
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
  PolicySnapshotPtr current = publisher_.Current();
  const int64_t serving = current ? current->version() : 0;
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
  if (*head == 0 && current == nullptr) {
    // Nothing applied yet: the empty set, so proxies start with Istio's defaults.
    publisher_.Publish(MakePolicySnapshot(PolicyVersion{}));
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
  publisher_.Publish(snapshot);
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
