#include "xds/server.h"

#include <grpcpp/impl/codegen/proto_utils.h>
#include <grpcpp/impl/codegen/server_callback_handlers.h>
#include <grpcpp/impl/rpc_service_method.h>

#include <atomic>
#include <optional>
#include <set>
#include <type_traits>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "common/grpc_peer.h"
#include "common/grpc_status.h"
#include "xds/delta_state.h"
#include "xds/sotw_state.h"
#include "xds/wipe.h"

namespace meshid::xds {

using envoy::service::discovery::v3::DeltaDiscoveryRequest;
using envoy::service::discovery::v3::DeltaDiscoveryResponse;
using envoy::service::discovery::v3::DiscoveryRequest;
using envoy::service::discovery::v3::DiscoveryResponse;

Caller CallerOf(const grpc::CallbackServerContext& context) {
  Caller caller;
  GrpcPeer peer = PeerOf(context.auth_context());
  caller.tls = peer.tls;
  caller.peer_cert_pem = std::move(peer.cert_pem);
  caller.peer_chain_pems = std::move(peer.chain_pems);
  auto range = context.client_metadata().equal_range("authorization");
  for (auto it = range.first; it != range.second; ++it) {
    caller.authorization.emplace_back(it->second.data(), it->second.size());
  }
  return caller;
}

absl::StatusOr<std::string> BearerToken(const grpc::CallbackServerContext& context) {
  auto range = context.client_metadata().equal_range("authorization");
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

namespace {

struct ServerMetrics {
  Gauge& sotw_streams;
  Gauge& delta_streams;
  Counter& pushes;
  Counter& acks;
  Counter& nacks;
  Counter& stream_errors;
};

ServerMetrics RegisterMetrics(MetricsRegistry& registry, const StreamServerOptions& o) {
  const std::string& prefix = o.metrics_prefix;
  const std::string streams_help = absl::StrCat("Open ", o.subject, " streams.");
  auto streams = [&](const std::string& rpc) -> Gauge& {
    if (!o.label_streams_by_rpc) return registry.AddGauge(prefix + "_streams", streams_help);
    return registry.AddGauge(prefix + "_streams", streams_help, {{"rpc", rpc}});
  };
  Gauge& sotw_streams = streams(o.sotw_rpc);
  return ServerMetrics{
      sotw_streams,
      o.delta_rpc.empty() ? sotw_streams : streams(o.delta_rpc),
      registry.AddCounter(prefix + "_pushes_total", absl::StrCat(o.subject, " responses sent.")),
      registry.AddCounter(prefix + "_acks_total", absl::StrCat(o.subject, " responses acknowledged (ACK).")),
      registry.AddCounter(prefix + "_nacks_total", absl::StrCat(o.subject, " responses rejected (NACK).")),
      registry.AddCounter(prefix + "_stream_errors_total", absl::StrCat(o.subject, " streams closed with an error.")),
  };
}

// What Shutdown reaches of every open stream.
class OpenStream {
 public:
  virtual ~OpenStream() = default;
  // Ends the stream with `status`, not counted or logged as an error.
  virtual void Close(const grpc::Status& status) = 0;
};

class ServerImpl;

// One stream: state of the world (kDelta = false) or delta (kDelta = true).
template <bool kDelta>
class Stream final
    : public grpc::ServerBidiReactor<std::conditional_t<kDelta, DeltaDiscoveryRequest, DiscoveryRequest>,
                                     std::conditional_t<kDelta, DeltaDiscoveryResponse, DiscoveryResponse>>,
      public OpenStream {
 public:
  using Request = std::conditional_t<kDelta, DeltaDiscoveryRequest, DiscoveryRequest>;
  using Response = std::conditional_t<kDelta, DeltaDiscoveryResponse, DiscoveryResponse>;
  using State = std::conditional_t<kDelta, DeltaStreamState, SotwStreamState>;

  Stream(ServerImpl& server, grpc::CallbackServerContext* context);

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnDone() override;
  void Close(const grpc::Status& status) override;

 private:
  // Kept only when the server has an observer.
  struct Observed {
    envoy::config::core::v3::Node node;
    ClientStatus client;
  };

  void HandleUpdate(const ResourceUpdate& update);
  void HandleRequestLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ApplyNamesLocked(const std::set<std::string>& names) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `quiet`: an end we chose (shutdown), not an error to count and log.
  void FinishLocked(const grpc::Status& status, bool quiet = false) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EmitLocked(StreamEvent::Kind kind) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string DescribeLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  ServerImpl& server_;
  const uint64_t id_;
  const std::shared_ptr<ForwardingWatcher> watcher_;
  absl::Mutex mu_;
  std::string identity_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<Subscription> subscription_ ABSL_GUARDED_BY(mu_);
  State state_ ABSL_GUARDED_BY(mu_);
  bool started_ ABSL_GUARDED_BY(mu_) = false;  // the first request was taken
  std::unique_ptr<Observed> observed_ ABSL_GUARDED_BY(mu_);
  Request request_;  // owned by the outstanding read
  Response response_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> deferred_finish_ ABSL_GUARDED_BY(mu_);
};

class ServerImpl final : public StreamServer {
 public:
  ServerImpl(const ResourceType& type, StreamServerOptions options, ResourceProvider& provider,
             MetricsRegistry& registry, RandomSource& random, LoggerPtr logger)
      : type_(type),
        options_(std::move(options)),
        provider_(provider),
        metrics_(RegisterMetrics(registry, options_)),
        random_(random),
        logger_(std::move(logger)) {}

  grpc::ServerBidiReactor<DiscoveryRequest, DiscoveryResponse>* OpenSotw(
      grpc::CallbackServerContext* context) override {
    return new Stream<false>(*this, context);
  }
  grpc::ServerBidiReactor<DeltaDiscoveryRequest, DeltaDiscoveryResponse>* OpenDelta(
      grpc::CallbackServerContext* context) override {
    return new Stream<true>(*this, context);
  }

  void Shutdown() override {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
    for (OpenStream* stream : streams_) {
      stream->Close(grpc::Status(grpc::StatusCode::UNAVAILABLE, ShuttingDownMessage()));
    }
  }

  int64_t open_streams() const override {
    absl::MutexLock lock(&mu_);
    return static_cast<int64_t>(streams_.size());
  }

  // Counts a new stream; false when shutting down (the stream must end at once).
  bool Register(OpenStream* stream, bool delta) {
    absl::MutexLock lock(&mu_);
    streams_.insert(stream);
    (delta ? metrics_.delta_streams : metrics_.sotw_streams).Add(1);
    return !shutting_down_;
  }
  void Unregister(OpenStream* stream, bool delta) {
    absl::MutexLock lock(&mu_);
    if (streams_.erase(stream) > 0) (delta ? metrics_.delta_streams : metrics_.sotw_streams).Add(-1);
  }

  std::string ShuttingDownMessage() const { return absl::StrCat("the ", options_.subject, " server is shutting down"); }
  const ResourceType& type() const { return type_; }
  const StreamServerOptions& options() const { return options_; }
  ResourceProvider& provider() { return provider_; }
  const ServerMetrics& metrics() const { return metrics_; }
  const LoggerPtr& logger() const { return logger_; }
  std::string NewNonce() { return random_.Hex(8); }
  uint64_t NewStreamId() { return next_stream_id_.fetch_add(1) + 1; }

 private:
  const ResourceType& type_;
  const StreamServerOptions options_;
  ResourceProvider& provider_;
  const ServerMetrics metrics_;
  RandomSource& random_;
  const LoggerPtr logger_;
  std::atomic<uint64_t> next_stream_id_{0};
  mutable absl::Mutex mu_;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  std::set<OpenStream*> streams_ ABSL_GUARDED_BY(mu_);
};

template <bool kDelta>
Stream<kDelta>::Stream(ServerImpl& server, grpc::CallbackServerContext* context)
    : server_(server),
      id_(server.NewStreamId()),
      watcher_(std::make_shared<ForwardingWatcher>([this](const ResourceUpdate& update) { HandleUpdate(update); })),
      state_(server.type()) {
  const bool open = server_.Register(this, kDelta);
  const StreamServerOptions& options = server_.options();
  absl::MutexLock lock(&mu_);
  if (finishing_) return;  // Shutdown closed it already
  if (!open) {
    FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, server_.ShuttingDownMessage()), /*quiet=*/true);
    return;
  }
  if (options.observer) observed_ = std::make_unique<Observed>();
  if (options.authenticate) {
    auto identity = options.authenticate(CallerOf(*context));
    if (!identity.ok()) {
      FinishLocked(ToGrpcStatus(identity.status()));
      return;
    }
    identity_ = std::move(*identity);
  }
  StreamCaller caller{.identity = identity_, .peer = context->peer()};
  if (options.bearer_token_to_provider) {
    auto bearer = BearerToken(*context);
    if (!bearer.ok()) {
      FinishLocked(ToGrpcStatus(bearer.status()));
      return;
    }
    caller.bearer_token = std::move(*bearer);
  }
  auto subscription = server_.provider().Subscribe(caller, watcher_);
  WipeString(&caller.bearer_token);
  if (!subscription.ok()) {
    FinishLocked(ToGrpcStatus(subscription.status()));
    return;
  }
  subscription_ = std::move(*subscription);
  this->StartRead(&request_);
}

template <bool kDelta>
std::string Stream<kDelta>::DescribeLocked() const {
  const StreamServerOptions& options = server_.options();
  std::string who = identity_;
  if (who.empty()) who = subscription_ != nullptr ? subscription_->Describe() : std::string("unauthenticated");
  return absl::StrCat(kDelta ? options.delta_rpc : options.sotw_rpc, " stream of node \"", state_.node_id(), "\" (",
                      who, ")");
}

template <bool kDelta>
void Stream<kDelta>::EmitLocked(StreamEvent::Kind kind) {
  if (observed_ == nullptr) return;
  StreamEvent event;
  event.kind = kind;
  event.stream_id = id_;
  event.identity = identity_;
  event.node = observed_->node;
  event.client = observed_->client;
  server_.options().observer(event);
}

template <bool kDelta>
void Stream<kDelta>::OnReadDone(bool ok) {
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
void Stream<kDelta>::HandleRequestLocked() {
  auto result = [&] {
    if constexpr (kDelta) {
      return state_.OnRequest(request_,
                              [this](const std::string& name) { return server_.provider().IsKnownName(name); });
    } else {
      return state_.OnRequest(request_);
    }
  }();
  if (!result.ok()) {
    FinishLocked(ToGrpcStatus(result.status()));
    return;
  }
  bool stale = false;
  if constexpr (kDelta) {
    stale = result->stale_nonce;
  } else {
    stale = result->stale;
  }
  if (result->first) {
    started_ = true;
    if (observed_ != nullptr) {
      observed_->node = request_.node();
      if constexpr (!kDelta) observed_->client.OnFirstRequest(request_.version_info());
    }
    EmitLocked(StreamEvent::Kind::kConnected);
  }
  if (observed_ != nullptr && !stale) observed_->client.OnVerdict(*result);
  if (result->ack) {
    server_.metrics().acks.Increment();
    for (const auto& [name, version] : result->applied) subscription_->ReportApplied(name, version, true);
    if (!stale) EmitLocked(StreamEvent::Kind::kAcked);
  }
  if (result->nack) {
    server_.metrics().nacks.Increment();
    server_.logger()->warn("{} rejected {} (code {}): {}", DescribeLocked(),
                           absl::StrJoin(result->applied, ", ", absl::PairFormatter("@")), result->nack_code,
                           result->nack_message);
    for (const auto& [name, version] : result->applied) subscription_->ReportApplied(name, version, false);
    if (!stale) EmitLocked(StreamEvent::Kind::kNacked);
  }
  if (result->names_changed) ApplyNamesLocked(result->names);
}

template <bool kDelta>
void Stream<kDelta>::ApplyNamesLocked(const std::set<std::string>& names) {
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
void Stream<kDelta>::HandleUpdate(const ResourceUpdate& update) {
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
void Stream<kDelta>::MaybeWriteLocked() {
  if (writing_ || finishing_) return;
  auto response = state_.TakeResponse(server_.NewNonce());
  if (!response.has_value()) return;
  response_ = std::move(*response);
  writing_ = true;
  server_.metrics().pushes.Increment();
  this->StartWrite(&response_);
}

template <bool kDelta>
void Stream<kDelta>::OnWriteDone(bool ok) {
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
void Stream<kDelta>::Close(const grpc::Status& status) {
  absl::MutexLock lock(&mu_);
  FinishLocked(status, /*quiet=*/true);
}

template <bool kDelta>
void Stream<kDelta>::FinishLocked(const grpc::Status& status, bool quiet) {
  if (finishing_) return;
  finishing_ = true;
  if (!status.ok() && !quiet) {
    server_.metrics().stream_errors.Increment();
    server_.logger()->warn("closing {}: {}", DescribeLocked(), status.error_message());
  }
  if (writing_) {
    deferred_finish_ = status;
  } else {
    this->Finish(status);
  }
}

template <bool kDelta>
void Stream<kDelta>::OnDone() {
  watcher_->Detach();
  {
    absl::MutexLock lock(&mu_);
    if (started_) EmitLocked(StreamEvent::Kind::kClosed);
    subscription_.reset();
    WipeResponse(response_);
  }
  server_.Unregister(this, kDelta);
  delete this;
}

// A service of one bidi method, as generated code builds one for each of its methods.
class SotwMethodService final : public grpc::Service {
 public:
  SotwMethodService(const ResourceType& type, StreamServer& server) {
    AddMethod(new grpc::internal::RpcServiceMethod(type.sotw_method.c_str(), grpc::internal::RpcMethod::BIDI_STREAMING,
                                                   nullptr));
    MarkMethodCallback(0, new grpc::internal::CallbackBidiHandler<DiscoveryRequest, DiscoveryResponse>(
                              [&server](grpc::CallbackServerContext* context) { return server.OpenSotw(context); }));
  }
};

}  // namespace

std::unique_ptr<StreamServer> StreamServer::Create(const ResourceType& type, StreamServerOptions options,
                                                   ResourceProvider& provider, MetricsRegistry& metrics,
                                                   RandomSource& random, LoggerPtr logger) {
  return std::make_unique<ServerImpl>(type, std::move(options), provider, metrics, random, std::move(logger));
}

std::unique_ptr<grpc::Service> MakeSotwService(const ResourceType& type, StreamServer& server) {
  return std::make_unique<SotwMethodService>(type, server);
}

}  // namespace meshid::xds
