#include "sds/sds_server.h"

#include <grpcpp/grpcpp.h>

#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "common/grpc_status.h"
#include "envoy/service/secret/v3/sds.grpc.pb.h"
#include "sds/resource.h"
#include "sds/unix_socket.h"
#include "xds/server.h"
#include "xds/wipe.h"

namespace meshid::sds {
namespace {

using envoy::service::discovery::v3::DeltaDiscoveryRequest;
using envoy::service::discovery::v3::DeltaDiscoveryResponse;
using envoy::service::discovery::v3::DiscoveryRequest;
using envoy::service::discovery::v3::DiscoveryResponse;

xds::StreamServerOptions StreamOptions(std::function<void(const xds::StreamEvent&)> observer) {
  xds::StreamServerOptions options;
  options.observer = std::move(observer);
  options.sotw_rpc = "StreamSecrets";
  options.delta_rpc = "DeltaSecrets";
  options.metrics_prefix = "meshid_agent_sds";
  options.label_streams_by_rpc = true;
  options.subject = "SDS";
  // The provider (the secret cache) decides what "default" means for the workload's token.
  options.bearer_token_to_provider = true;
  return options;
}

struct FetchMetrics {
  Counter& ok;
  Counter& error;
};

class SdsServerImpl;

// One FetchSecrets call: the current secrets once every requested one exists.
class FetchCall final : public grpc::ServerUnaryReactor {
 public:
  FetchCall(SdsServerImpl& server, grpc::CallbackServerContext* context, const DiscoveryRequest* request,
            DiscoveryResponse* response);
  void OnCancel() override;
  void OnDone() override;

 private:
  void HandleUpdate(const xds::ResourceUpdate& update);
  void TryCompleteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  SdsServerImpl& server_;
  DiscoveryResponse* const response_;
  const std::shared_ptr<xds::ForwardingWatcher> watcher_;
  absl::Mutex mu_;
  std::unique_ptr<xds::Subscription> subscription_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> names_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, xds::ResourcePtr> found_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

class SdsServiceImpl final : public envoy::service::secret::v3::SecretDiscoveryService::CallbackService {
 public:
  SdsServiceImpl(SdsServerImpl& server, xds::StreamServer& streams) : server_(server), streams_(streams) {}

  grpc::ServerBidiReactor<DiscoveryRequest, DiscoveryResponse>* StreamSecrets(
      grpc::CallbackServerContext* context) override {
    return streams_.OpenSotw(context);
  }
  grpc::ServerBidiReactor<DeltaDiscoveryRequest, DeltaDiscoveryResponse>* DeltaSecrets(
      grpc::CallbackServerContext* context) override {
    return streams_.OpenDelta(context);
  }
  grpc::ServerUnaryReactor* FetchSecrets(grpc::CallbackServerContext* context, const DiscoveryRequest* request,
                                         DiscoveryResponse* response) override {
    return new FetchCall(server_, context, request, response);
  }

 private:
  SdsServerImpl& server_;
  xds::StreamServer& streams_;
};

class SdsServerImpl final : public SdsServer {
 public:
  SdsServerImpl(xds::ResourceProvider& provider, MetricsRegistry& registry, RandomSource& random, LoggerPtr logger,
                std::function<void(const xds::StreamEvent&)> observer)
      : provider_(provider),
        fetch_metrics_{
            registry.AddCounter("meshid_agent_sds_fetches_total", "FetchSecrets calls by result.", {{"result", "ok"}}),
            registry.AddCounter("meshid_agent_sds_fetches_total", "FetchSecrets calls by result.",
                                {{"result", "error"}})},
        random_(random),
        logger_(std::move(logger)),
        streams_(xds::StreamServer::Create(SecretType(), StreamOptions(std::move(observer)), provider, registry, random,
                                           logger_)),
        service_(*this, *streams_) {}

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
    target_ = absl::StrCat("unix:", options.socket_path);
    if (options.listen) {
      auto path = UnixSocketPath::Acquire(options.socket_path);
      if (!path.ok()) return path.status();
      socket_.emplace(std::move(*path));
      const int mode = options.socket_group.has_value() && options.socket_mode == 0600 ? 0660 : options.socket_mode;
      auto bound = socket_->Bind(mode, options.socket_group, [&]() -> absl::Status {
        builder.AddListeningPort(target_, grpc::InsecureServerCredentials());
        server_ = builder.BuildAndStart();
        if (server_ == nullptr) return absl::UnavailableError(absl::StrCat("cannot listen on ", target_));
        return absl::OkStatus();
      });
      if (!bound.ok()) return bound;
    } else {
      server_ = builder.BuildAndStart();
      if (server_ == nullptr) return absl::UnavailableError("cannot start the SDS server");
    }
    if (options.adopt_connections) return options.adopt_connections(*server_);
    return absl::OkStatus();
  }

  std::string target() const override { return target_; }
  int64_t connected_streams() const override { return streams_->open_streams(); }

  xds::ResourceProvider& provider() { return provider_; }
  const FetchMetrics& fetch_metrics() const { return fetch_metrics_; }
  const LoggerPtr& logger() const { return logger_; }
  std::string NewNonce() { return random_.Hex(8); }

 private:
  xds::ResourceProvider& provider_;
  const FetchMetrics fetch_metrics_;
  RandomSource& random_;
  const LoggerPtr logger_;
  const std::unique_ptr<xds::StreamServer> streams_;  // declared before server_: destroyed after it
  SdsServiceImpl service_;
  std::optional<UnixSocketPath> socket_;  // declared before server_: destroyed after it
  std::unique_ptr<grpc::Server> server_;
  std::string target_;
};

FetchCall::FetchCall(SdsServerImpl& server, grpc::CallbackServerContext* context, const DiscoveryRequest* request,
                     DiscoveryResponse* response)
    : server_(server),
      response_(response),
      watcher_(std::make_shared<xds::ForwardingWatcher>(
          [this](const xds::ResourceUpdate& update) { HandleUpdate(update); })) {
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
  auto token = xds::BearerToken(*context);
  if (!token.ok()) {
    FinishLocked(ToGrpcStatus(token.status()));
    return;
  }
  xds::StreamCaller caller{.bearer_token = std::move(*token), .peer = context->peer()};
  auto subscription = server_.provider().Subscribe(caller, watcher_);
  xds::WipeString(&caller.bearer_token);
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
  response_->set_nonce(server_.NewNonce());
  FinishLocked(grpc::Status::OK);
}

void FetchCall::FinishLocked(const grpc::Status& status) {
  if (finished_) return;
  finished_ = true;
  (status.ok() ? server_.fetch_metrics().ok : server_.fetch_metrics().error).Increment();
  if (!status.ok()) server_.logger()->warn("FetchSecrets failed: {}", status.error_message());
  Finish(status);
}

void FetchCall::OnCancel() {
  absl::MutexLock lock(&mu_);
  FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "FetchSecrets cancelled before the secrets were ready"));
}

void FetchCall::OnDone() {
  watcher_->Detach();
  {
    absl::MutexLock lock(&mu_);
    subscription_.reset();
    xds::WipeResponse(*response_);
  }
  delete this;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SdsServer>> SdsServer::Create(const SdsServerOptions& options,
                                                             xds::ResourceProvider& provider, MetricsRegistry& metrics,
                                                             RandomSource& random, LoggerPtr logger) {
  auto server = std::make_unique<SdsServerImpl>(provider, metrics, random, std::move(logger), options.observer);
  if (auto status = server->Start(options); !status.ok()) return status;
  return std::unique_ptr<SdsServer>(std::move(server));
}

}  // namespace meshid::sds
