#include "sds/sds_server.h"

#include <grpcpp/grpcpp.h>
#include <openssl/crypto.h>

#include <atomic>
#include <map>
#include <type_traits>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "common/grpc_status.h"
#include "envoy/service/secret/v3/sds.grpc.pb.h"
#include "sds/resource.h"
#include "sds/unix_socket.h"
#include "xds/delta_state.h"
#include "xds/sotw_state.h"

namespace meshid::sds {
namespace {

using envoy::service::discovery::v3::DeltaDiscoveryRequest;
using envoy::service::discovery::v3::DeltaDiscoveryResponse;
using envoy::service::discovery::v3::DiscoveryRequest;
using envoy::service::discovery::v3::DiscoveryResponse;

void Wipe(std::string* s) {
  if (!s->empty()) OPENSSL_cleanse(s->data(), s->size());
}

// Responses carry private keys: wipe our copy once gRPC has serialized it.
void WipeResponse(DiscoveryResponse& response) {
  for (auto& any : *response.mutable_resources()) Wipe(any.mutable_value());
  response.Clear();
}
void WipeResponse(DeltaDiscoveryResponse& response) {
  for (auto& resource : *response.mutable_resources()) Wipe(resource.mutable_resource()->mutable_value());
  response.Clear();
}

// The stream's bearer token: "" when the caller sent no authorization metadata.
absl::StatusOr<std::string> BearerToken(const grpc::CallbackServerContext* context) {
  auto range = context->client_metadata().equal_range("authorization");
  if (range.first == range.second) return std::string();
  for (auto it = range.first; it != range.second; ++it) {
    absl::string_view value(it->second.data(), it->second.size());
    if (absl::StartsWith(value, "Bearer ")) {
      value.remove_prefix(7);
      if (value.empty()) break;
      return std::string(value);
    }
  }
  return absl::UnauthenticatedError("the authorization metadata must be \"Bearer <workload token>\"");
}

// What a provider callback reaches: a stream that may already be gone.
class UpdateSink {
 public:
  virtual ~UpdateSink() = default;
  virtual void HandleUpdate(const xds::ResourceUpdate& update) = 0;
};

class WatcherAdapter final : public xds::ResourceWatcher {
 public:
  explicit WatcherAdapter(UpdateSink* sink) : sink_(sink) {}
  void OnUpdate(const xds::ResourceUpdate& update) override {
    absl::MutexLock lock(&mu_);
    if (sink_ != nullptr) sink_->HandleUpdate(update);
  }
  // After this returns no callback is running or will run.
  void Detach() {
    absl::MutexLock lock(&mu_);
    sink_ = nullptr;
  }

 private:
  absl::Mutex mu_;
  UpdateSink* sink_ ABSL_GUARDED_BY(mu_);
};

struct ServerMetrics {
  Gauge& sotw_streams;
  Gauge& delta_streams;
  Counter& pushes;
  Counter& acks;
  Counter& nacks;
  Counter& fetch_ok;
  Counter& fetch_error;
  Counter& stream_errors;
};

ServerMetrics RegisterMetrics(MetricsRegistry& registry) {
  const std::string streams_help = "Connected SDS streams.";
  const std::string fetch_help = "FetchSecrets calls by result.";
  return ServerMetrics{
      registry.AddGauge("meshid_agent_sds_streams", streams_help, {{"rpc", "StreamSecrets"}}),
      registry.AddGauge("meshid_agent_sds_streams", streams_help, {{"rpc", "DeltaSecrets"}}),
      registry.AddCounter("meshid_agent_sds_pushes_total", "SDS responses sent to proxies."),
      registry.AddCounter("meshid_agent_sds_acks_total", "SDS responses acknowledged (ACK) by proxies."),
      registry.AddCounter("meshid_agent_sds_nacks_total", "SDS responses rejected (NACK) by proxies."),
      registry.AddCounter("meshid_agent_sds_fetches_total", fetch_help, {{"result", "ok"}}),
      registry.AddCounter("meshid_agent_sds_fetches_total", fetch_help, {{"result", "error"}}),
      registry.AddCounter("meshid_agent_sds_stream_errors_total", "SDS streams closed with an error status."),
  };
}

class SdsServerImpl;

// One StreamSecrets (kDelta = false) or DeltaSecrets (kDelta = true) stream.
template <bool kDelta>
class XdsStream final
    : public grpc::ServerBidiReactor<std::conditional_t<kDelta, DeltaDiscoveryRequest, DiscoveryRequest>,
                                     std::conditional_t<kDelta, DeltaDiscoveryResponse, DiscoveryResponse>>,
      public UpdateSink {
 public:
  using Request = std::conditional_t<kDelta, DeltaDiscoveryRequest, DiscoveryRequest>;
  using Response = std::conditional_t<kDelta, DeltaDiscoveryResponse, DiscoveryResponse>;
  using State = std::conditional_t<kDelta, xds::DeltaStreamState, xds::SotwStreamState>;

  XdsStream(SdsServerImpl* server, grpc::CallbackServerContext* context);

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnDone() override;
  void HandleUpdate(const xds::ResourceUpdate& update) override;

 private:
  void HandleRequestLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ApplyNamesLocked(const std::set<std::string>& names) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string DescribeLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  SdsServerImpl* const server_;
  std::shared_ptr<WatcherAdapter> adapter_;
  absl::Mutex mu_;
  std::unique_ptr<xds::Subscription> subscription_ ABSL_GUARDED_BY(mu_);
  State state_ ABSL_GUARDED_BY(mu_){std::string(kSecretTypeUrl)};
  Request request_;  // owned by the outstanding read
  Response response_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> deferred_finish_ ABSL_GUARDED_BY(mu_);
};

class FetchCall final : public grpc::ServerUnaryReactor, public UpdateSink {
 public:
  FetchCall(SdsServerImpl* server, grpc::CallbackServerContext* context, const DiscoveryRequest* request,
            DiscoveryResponse* response);
  void HandleUpdate(const xds::ResourceUpdate& update) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  void TryCompleteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  SdsServerImpl* const server_;
  DiscoveryResponse* const response_;
  std::shared_ptr<WatcherAdapter> adapter_;
  absl::Mutex mu_;
  std::unique_ptr<xds::Subscription> subscription_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> names_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, xds::ResourcePtr> found_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

class SdsServiceImpl final : public envoy::service::secret::v3::SecretDiscoveryService::CallbackService {
 public:
  explicit SdsServiceImpl(SdsServerImpl* server) : server_(server) {}

  grpc::ServerBidiReactor<DiscoveryRequest, DiscoveryResponse>* StreamSecrets(
      grpc::CallbackServerContext* context) override {
    return new XdsStream<false>(server_, context);
  }
  grpc::ServerBidiReactor<DeltaDiscoveryRequest, DeltaDiscoveryResponse>* DeltaSecrets(
      grpc::CallbackServerContext* context) override {
    return new XdsStream<true>(server_, context);
  }
  grpc::ServerUnaryReactor* FetchSecrets(grpc::CallbackServerContext* context, const DiscoveryRequest* request,
                                         DiscoveryResponse* response) override {
    return new FetchCall(server_, context, request, response);
  }

 private:
  SdsServerImpl* server_;
};

class SdsServerImpl final : public SdsServer {
 public:
  SdsServerImpl(xds::ResourceProvider& provider, MetricsRegistry& registry, RandomSource& random, LoggerPtr logger)
      : provider_(provider),
        metrics_(RegisterMetrics(registry)),
        random_(random),
        logger_(std::move(logger)),
        service_(this) {}

  ~SdsServerImpl() override {
    if (server_ != nullptr) {
      // Cancels every open stream; every reactor's OnDone has run once Wait returns.
      server_->Shutdown(std::chrono::system_clock::now());
      server_->Wait();
    }
  }

  absl::Status Start(const SdsServerOptions& options) {
    grpc::ServerBuilder builder;
    builder.RegisterService(&service_);
    for (grpc::Service* extra : options.extra_services) builder.RegisterService(extra);
    builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, options.max_concurrent_streams);
    // Proxies keep these streams open for days; keepalive pings are fine, idle is normal.
    builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    auto path = UnixSocketPath::Acquire(options.socket_path);
    if (!path.ok()) return path.status();
    socket_.emplace(std::move(*path));
    const int mode = options.socket_group.has_value() && options.socket_mode == 0600 ? 0660 : options.socket_mode;
    target_ = absl::StrCat("unix:", options.socket_path);
    return socket_->Bind(mode, options.socket_group, [&]() -> absl::Status {
      builder.AddListeningPort(target_, grpc::InsecureServerCredentials());
      server_ = builder.BuildAndStart();
      if (server_ == nullptr) return absl::UnavailableError(absl::StrCat("cannot listen on ", target_));
      return absl::OkStatus();
    });
  }

  std::string target() const override { return target_; }
  int64_t connected_streams() const override { return streams_.load(); }

  xds::ResourceProvider& provider() { return provider_; }
  const ServerMetrics& metrics() { return metrics_; }
  const LoggerPtr& logger() { return logger_; }
  std::string NewNonce() { return random_.Hex(8); }
  void StreamOpened(bool delta) {
    streams_.fetch_add(1);
    (delta ? metrics_.delta_streams : metrics_.sotw_streams).Add(1);
  }
  void StreamClosed(bool delta) {
    streams_.fetch_sub(1);
    (delta ? metrics_.delta_streams : metrics_.sotw_streams).Add(-1);
  }

 private:
  xds::ResourceProvider& provider_;
  ServerMetrics metrics_;
  RandomSource& random_;
  LoggerPtr logger_;
  SdsServiceImpl service_;
  std::optional<UnixSocketPath> socket_;  // declared before server_: destroyed after it
  std::unique_ptr<grpc::Server> server_;
  std::string target_;
  std::atomic<int64_t> streams_{0};
};

template <bool kDelta>
XdsStream<kDelta>::XdsStream(SdsServerImpl* server, grpc::CallbackServerContext* context)
    : server_(server), adapter_(std::make_shared<WatcherAdapter>(this)) {
  server_->StreamOpened(kDelta);
  absl::MutexLock lock(&mu_);
  auto token = BearerToken(context);
  if (!token.ok()) {
    FinishLocked(ToGrpcStatus(token.status()));
    return;
  }
  auto subscription = server_->provider().Subscribe(*token, adapter_);
  std::string wipe_token = std::move(*token);
  Wipe(&wipe_token);
  if (!subscription.ok()) {
    FinishLocked(ToGrpcStatus(subscription.status()));
    return;
  }
  subscription_ = std::move(*subscription);
  this->StartRead(&request_);
}

template <bool kDelta>
std::string XdsStream<kDelta>::DescribeLocked() const {
  return absl::StrCat(kDelta ? "DeltaSecrets" : "StreamSecrets", " stream of node \"", state_.node_id(), "\" (",
                      subscription_ ? subscription_->Describe() : std::string("unauthenticated"), ")");
}

template <bool kDelta>
void XdsStream<kDelta>::OnReadDone(bool ok) {
  absl::MutexLock lock(&mu_);
  if (finishing_) return;
  if (!ok) {  // the client half-closed or went away
    FinishLocked(grpc::Status::OK);
    return;
  }
  HandleRequestLocked();
  if (finishing_) return;
  MaybeWriteLocked();
  this->StartRead(&request_);
}

template <bool kDelta>
void XdsStream<kDelta>::HandleRequestLocked() {
  auto result = [&] {
    if constexpr (kDelta) {
      return state_.OnRequest(request_,
                              [this](const std::string& name) { return server_->provider().IsKnownName(name); });
    } else {
      return state_.OnRequest(request_);
    }
  }();
  if (!result.ok()) {
    FinishLocked(ToGrpcStatus(result.status()));
    return;
  }
  if (result->ack) {
    server_->metrics().acks.Increment();
    for (const auto& [name, version] : result->applied) subscription_->ReportApplied(name, version, true);
  }
  if (result->nack) {
    server_->metrics().nacks.Increment();
    server_->logger()->warn("{} rejected {} (code {}): {}", DescribeLocked(),
                            absl::StrJoin(result->applied, ", ", absl::PairFormatter("@")), result->nack_code,
                            result->nack_message);
    for (const auto& [name, version] : result->applied) subscription_->ReportApplied(name, version, false);
  }
  if (result->names_changed) ApplyNamesLocked(result->names);
}

template <bool kDelta>
void XdsStream<kDelta>::ApplyNamesLocked(const std::set<std::string>& names) {
  auto updates = subscription_->SetNames(names);
  if (!updates.ok()) {
    FinishLocked(ToGrpcStatus(updates.status()));
    return;
  }
  for (const auto& update : *updates) {
    absl::Status status = state_.OnUpdate(update);
    if (!status.ok()) {
      FinishLocked(ToGrpcStatus(status));
      return;
    }
  }
}

template <bool kDelta>
void XdsStream<kDelta>::HandleUpdate(const xds::ResourceUpdate& update) {
  absl::MutexLock lock(&mu_);
  if (finishing_) return;
  absl::Status status = state_.OnUpdate(update);
  if (!status.ok()) {
    FinishLocked(ToGrpcStatus(status));
    return;
  }
  MaybeWriteLocked();
}

template <bool kDelta>
void XdsStream<kDelta>::MaybeWriteLocked() {
  if (writing_ || finishing_) return;
  auto response = state_.TakeResponse(server_->NewNonce());
  if (!response.has_value()) return;
  response_ = std::move(*response);
  writing_ = true;
  server_->metrics().pushes.Increment();
  this->StartWrite(&response_);
}

template <bool kDelta>
void XdsStream<kDelta>::OnWriteDone(bool ok) {
  absl::MutexLock lock(&mu_);
  writing_ = false;
  WipeResponse(response_);
  if (deferred_finish_.has_value()) {
    this->Finish(*deferred_finish_);
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

template <bool kDelta>
void XdsStream<kDelta>::FinishLocked(const grpc::Status& status) {
  if (finishing_) return;
  finishing_ = true;
  if (!status.ok()) {
    server_->metrics().stream_errors.Increment();
    server_->logger()->warn("closing {}: {}", DescribeLocked(), status.error_message());
  }
  if (writing_) {
    deferred_finish_ = status;
  } else {
    this->Finish(status);
  }
}

template <bool kDelta>
void XdsStream<kDelta>::OnDone() {
  adapter_->Detach();
  {
    absl::MutexLock lock(&mu_);
    subscription_.reset();
    WipeResponse(response_);
  }
  server_->StreamClosed(kDelta);
  delete this;
}

FetchCall::FetchCall(SdsServerImpl* server, grpc::CallbackServerContext* context, const DiscoveryRequest* request,
                     DiscoveryResponse* response)
    : server_(server), response_(response), adapter_(std::make_shared<WatcherAdapter>(this)) {
  absl::MutexLock lock(&mu_);
  if (!request->type_url().empty() && request->type_url() != kSecretTypeUrl) {
    FinishLocked(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                              absl::StrCat("type_url \"", request->type_url(), "\" is not served here")));
    return;
  }
  names_.insert(request->resource_names().begin(), request->resource_names().end());
  if (names_.empty()) {
    FinishLocked(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "FetchSecrets needs at least one resource name"));
    return;
  }
  auto token = BearerToken(context);
  if (!token.ok()) {
    FinishLocked(ToGrpcStatus(token.status()));
    return;
  }
  auto subscription = server_->provider().Subscribe(*token, adapter_);
  Wipe(&*token);
  if (!subscription.ok()) {
    FinishLocked(ToGrpcStatus(subscription.status()));
    return;
  }
  subscription_ = std::move(*subscription);
  auto updates = subscription_->SetNames(names_);
  if (!updates.ok()) {
    FinishLocked(ToGrpcStatus(updates.status()));
    return;
  }
  for (const auto& update : *updates) {
    if (!update.error.ok()) {
      FinishLocked(ToGrpcStatus(update.error));
      return;
    }
    if (update.resource != nullptr) found_[update.name] = update.resource;
  }
  TryCompleteLocked();
}

void FetchCall::HandleUpdate(const xds::ResourceUpdate& update) {
  absl::MutexLock lock(&mu_);
  if (finished_ || !names_.contains(update.name)) return;
  if (!update.error.ok()) {
    FinishLocked(ToGrpcStatus(update.error));
    return;
  }
  if (update.resource != nullptr) found_[update.name] = update.resource;
  TryCompleteLocked();
}

void FetchCall::TryCompleteLocked() {
  if (finished_ || found_.size() < names_.size()) return;
  std::vector<std::string> versions;
  for (const auto& [name, resource] : found_) {
    auto* any = response_->add_resources();
    any->set_type_url(std::string(kSecretTypeUrl));
    any->set_value(std::string(resource->body.view()));
    versions.push_back(resource->version);
  }
  response_->set_version_info(absl::StrJoin(versions, "+"));
  response_->set_type_url(std::string(kSecretTypeUrl));
  response_->set_nonce(server_->NewNonce());
  FinishLocked(grpc::Status::OK);
}

void FetchCall::FinishLocked(const grpc::Status& status) {
  if (finished_) return;
  finished_ = true;
  (status.ok() ? server_->metrics().fetch_ok : server_->metrics().fetch_error).Increment();
  if (!status.ok()) server_->logger()->warn("FetchSecrets failed: {}", status.error_message());
  Finish(status);
}

void FetchCall::OnCancel() {
  absl::MutexLock lock(&mu_);
  FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "FetchSecrets cancelled before the secrets were ready"));
}

void FetchCall::OnDone() {
  adapter_->Detach();
  {
    absl::MutexLock lock(&mu_);
    subscription_.reset();
    WipeResponse(*response_);
  }
  delete this;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SdsServer>> SdsServer::Create(const SdsServerOptions& options,
                                                             xds::ResourceProvider& provider, MetricsRegistry& metrics,
                                                             RandomSource& random, LoggerPtr logger) {
  auto server = std::make_unique<SdsServerImpl>(provider, metrics, random, std::move(logger));
  if (auto status = server->Start(options); !status.ok()) return status;
  return std::unique_ptr<SdsServer>(std::move(server));
}

}  // namespace meshid::sds
