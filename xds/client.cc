#include "xds/client.h"

#include <grpcpp/impl/codegen/proto_utils.h>
#include <grpcpp/impl/rpc_method.h>
#include <grpcpp/support/sync_stream.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/sha256.h"
#include "xds/stream_bookkeeping.h"
#include "xds/wipe.h"

namespace meshid::xds {

using envoy::service::discovery::v3::DiscoveryRequest;
using envoy::service::discovery::v3::DiscoveryResponse;

// ---- SotwClientState ----

SotwClientState::SotwClientState(const ResourceType& type, envoy::config::core::v3::Node node,
                                 std::vector<std::string> resource_names)
    : type_(type), node_(std::move(node)), resource_names_(std::move(resource_names)) {}

DiscoveryRequest SotwClientState::Request() const {
  DiscoveryRequest request;
  *request.mutable_node() = node_;
  for (const auto& name : resource_names_) request.add_resource_names(name);
  request.set_type_url(type_.type_url);
  request.set_version_info(applied_version_);
  return request;
}

DiscoveryRequest SotwClientState::StartStream() const { return Request(); }

std::string SotwClientState::Fingerprint(const DiscoveryResponse& response) const {
  Sha256Hasher hasher;
  auto add = [&hasher](absl::string_view piece) {
    hasher.Update(absl::StrCat(piece.size(), ":"));
    hasher.Update(piece);
  };
  add(response.type_url());
  for (const auto& any : response.resources()) {
    add(any.type_url());
    add(any.value());
  }
  return hasher.HexDigest();
}

DiscoveryRequest SotwClientState::OnResponse(const DiscoveryResponse& response, const ResponseHandler& handler) {
  DiscoveryRequest reply = Request();
  reply.set_response_nonce(response.nonce());
  std::string fingerprint;
  if (type_.client_acks_unchanged_without_handler) {
    fingerprint = Fingerprint(response);
    // What runs already (a resend after reconnecting): ACK it without applying it again.
    if (!applied_fingerprint_.empty() && fingerprint == applied_fingerprint_ &&
        response.version_info() == applied_version_) {
      return reply;
    }
  }
  absl::Status status = handler(response);
  if (status.ok()) {
    applied_version_ = response.version_info();
    applied_fingerprint_ = std::move(fingerprint);
    reply.set_version_info(applied_version_);
    return reply;
  }
  rejected_version_ = response.version_info();
  last_error_ = ClippedError(status.message());
  reply.mutable_error_detail()->set_code(static_cast<int>(status.code()));
  reply.mutable_error_detail()->set_message(last_error_);
  return reply;
}

// ---- SotwClient ----

SotwClient::SotwClient(const ResourceType& type, SotwClientOptions options, UpstreamSource& upstream,
                       ResponseHandler handler, RandomSource& random, LoggerPtr logger)
    : type_(type),
      options_(std::move(options)),
      upstream_(upstream),
      handler_(std::move(handler)),
      logger_(std::move(logger)),
      xds_(type, options_.node, options_.resource_names),
      backoff_(options_.initial_backoff, options_.max_backoff, random) {}

absl::StatusOr<std::unique_ptr<SotwClient>> SotwClient::Create(const ResourceType& type, SotwClientOptions options,
                                                               UpstreamSource& upstream, ResponseHandler handler,
                                                               RandomSource& random, LoggerPtr logger) {
  if (options.initial_backoff <= absl::ZeroDuration() || options.max_backoff < options.initial_backoff) {
    return absl::InvalidArgumentError("backoff must be positive and max_backoff >= initial_backoff");
  }
  if (!handler) return absl::InvalidArgumentError("no response handler");
  auto client = std::unique_ptr<SotwClient>(
      new SotwClient(type, std::move(options), upstream, std::move(handler), random, std::move(logger)));
  SotwClient* raw = client.get();
  client->listener_ = upstream.AddListener([raw] { raw->Reconnect(); });
  client->thread_ = std::thread([raw] { raw->Loop(); });
  return client;
}

SotwClient::~SotwClient() {
  upstream_.RemoveListener(listener_);
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    if (context_ != nullptr) context_->TryCancel();
  }
  if (thread_.joinable()) thread_.join();
}

SotwClient::State SotwClient::state() const {
  absl::MutexLock lock(&mu_);
  return state_;
}

void SotwClient::Reconnect() {
  absl::MutexLock lock(&mu_);
  reconnect_ = true;
  if (context_ != nullptr) context_->TryCancel();
}

void SotwClient::SetConnected(bool connected) {
  bool changed = false;
  {
    absl::MutexLock lock(&mu_);
    changed = state_.connected != connected;
    state_.connected = connected;
  }
  if (changed && options_.on_change) options_.on_change();
}

void SotwClient::PublishState() {
  {
    absl::MutexLock lock(&mu_);
    state_.applied_version = xds_.applied_version();
    state_.rejected_version = xds_.rejected_version();
    state_.last_error = xds_.last_error();
  }
  if (options_.on_change) options_.on_change();
}

bool SotwClient::WaitBackoff(absl::Duration delay) {
  absl::MutexLock lock(&mu_);
  auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || reconnect_; };
  mu_.AwaitWithTimeout(absl::Condition(&wake), delay);
  reconnect_ = false;
  return !stop_;
}

void SotwClient::Loop() {
  std::string last_error;
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
      reconnect_ = false;
    }
    absl::Status status;
    bool delivered = false;
    auto channel = upstream_.NewChannel();
    if (channel.ok()) {
      std::tie(status, delivered) = RunStream(*channel);
    } else {
      status = channel.status();
    }
    SetConnected(false);
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
    }
    if (options_.on_stream_end) options_.on_stream_end(status);
    if (delivered) backoff_.Reset();
    std::string error = absl::StrCat(status.message());
    // CANCELLED: we ended the stream ourselves (Reconnect), nothing to report. Otherwise once
    // per distinct error, not once per attempt.
    if (!status.ok() && !absl::IsCancelled(status) && error != last_error) {
      logger_->warn("{} to {}: {} (retrying)", options_.description, upstream_.Describe(), error);
    }
    last_error = std::move(error);
    if (!WaitBackoff(backoff_.Next())) return;
  }
}

std::pair<absl::Status, bool> SotwClient::RunStream(const std::shared_ptr<grpc::Channel>& channel) {
  auto context = std::make_shared<grpc::ClientContext>();
  auto metadata = upstream_.Metadata();
  if (!metadata.ok()) return {metadata.status(), false};
  for (const auto& [key, value] : *metadata) context->AddMetadata(key, value);
  {
    absl::MutexLock lock(&mu_);
    if (stop_ || reconnect_) return {absl::CancelledError("stopping"), false};
    context_ = context;
  }
  // What generated stubs do for a bidi method, for the type's method by name.
  const grpc::internal::RpcMethod method(type_.sotw_method.c_str(), grpc::internal::RpcMethod::BIDI_STREAMING);
  std::unique_ptr<grpc::ClientReaderWriter<DiscoveryRequest, DiscoveryResponse>> stream(
      grpc::internal::ClientReaderWriterFactory<DiscoveryRequest, DiscoveryResponse>::Create(channel.get(), method,
                                                                                             context.get()));
  bool delivered = false;
  if (stream->Write(xds_.StartStream())) {
    DiscoveryResponse response;
    while (stream->Read(&response)) {
      if (!delivered) {
        delivered = true;
        SetConnected(true);
      }
      DiscoveryRequest reply = xds_.OnResponse(response, handler_);
      if (reply.has_error_detail()) {
        logger_->warn("{}: version {} from {} rejected (keeping {}): {}", options_.description, response.version_info(),
                      upstream_.Describe(), xds_.applied_version().empty() ? "none" : xds_.applied_version(),
                      reply.error_detail().message());
      } else {
        logger_->debug("{}: applied version {}", options_.description, xds_.applied_version());
      }
      WipeResponse(response);
      PublishState();
      if (!stream->Write(reply)) break;
    }
  }
  stream->WritesDone();
  grpc::Status finish = stream->Finish();
  {
    absl::MutexLock lock(&mu_);
    context_.reset();
  }
  if (finish.ok()) return {absl::UnavailableError("the server ended the stream"), delivered};
  return {ToAbslStatus(finish), delivered};
}

}  // namespace meshid::xds
