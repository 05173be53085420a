#include "policy/client.h"

#include <tuple>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "meshid/policy/v1/policy.grpc.pb.h"

namespace meshid::policy {

using envoy::service::discovery::v3::DiscoveryRequest;
using envoy::service::discovery::v3::DiscoveryResponse;

PolicyStreamClient::PolicyStreamClient(PolicyStreamClientOptions options, xds::UpstreamSource& upstream, Apply apply,
                                       OnChange on_change, RandomSource& random, LoggerPtr logger)
    : options_(std::move(options)),
      upstream_(upstream),
      apply_(std::move(apply)),
      on_change_(std::move(on_change)),
      random_(random),
      logger_(std::move(logger)),
      xds_(options_.node) {}

std::unique_ptr<PolicyStreamClient> PolicyStreamClient::Start(PolicyStreamClientOptions options,
                                                              xds::UpstreamSource& upstream, Apply apply,
                                                              OnChange on_change, RandomSource& random,
                                                              LoggerPtr logger) {
  auto client = std::unique_ptr<PolicyStreamClient>(new PolicyStreamClient(
      std::move(options), upstream, std::move(apply), std::move(on_change), random, std::move(logger)));
  PolicyStreamClient* raw = client.get();
  client->listener_ = upstream.AddListener([raw] { raw->Reconnect(); });
  client->thread_ = std::thread([raw] { raw->Loop(); });
  return client;
}

PolicyStreamClient::~PolicyStreamClient() {
  upstream_.RemoveListener(listener_);
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    if (context_ != nullptr) context_->TryCancel();
  }
  if (thread_.joinable()) thread_.join();
}

PolicyStreamClient::State PolicyStreamClient::state() const {
  absl::MutexLock lock(&mu_);
  return state_;
}

void PolicyStreamClient::Reconnect() {
  absl::MutexLock lock(&mu_);
  reconnect_ = true;
  if (context_ != nullptr) context_->TryCancel();
}

void PolicyStreamClient::SetConnected(bool connected) {
  bool changed = false;
  {
    absl::MutexLock lock(&mu_);
    changed = state_.connected != connected;
    state_.connected = connected;
  }
  if (changed && on_change_) on_change_();
}

void PolicyStreamClient::Publish() {
  {
    absl::MutexLock lock(&mu_);
    state_.applied_version = xds_.applied_version();
    state_.rejected_version = xds_.rejected_version();
    state_.last_error = xds_.last_error();
  }
  if (on_change_) on_change_();
}

bool PolicyStreamClient::WaitBackoff(absl::Duration delay) {
  absl::MutexLock lock(&mu_);
  auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || reconnect_; };
  mu_.AwaitWithTimeout(absl::Condition(&wake), delay);
  reconnect_ = false;
  return !stop_;
}

void PolicyStreamClient::Loop() {
  absl::Duration backoff = options_.initial_backoff;
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
    if (delivered) backoff = options_.initial_backoff;
    std::string error = absl::StrCat(status.message());
    // CANCELLED: we ended the stream ourselves (Reconnect), nothing to report.
    if (!status.ok() && !absl::IsCancelled(status) && error != last_error && logger_) {
      logger_->warn("policy stream to {}: {} (retrying)", upstream_.Describe(), error);
    }
    last_error = std::move(error);
    // Jittered over [0.5, 1.5) of the backoff, which doubles up to max_backoff.
    if (!WaitBackoff(backoff * (0.5 + random_.Uniform()))) return;
    backoff = std::min(backoff * 2, options_.max_backoff);
  }
}

std::pair<absl::Status, bool> PolicyStreamClient::RunStream(const std::shared_ptr<grpc::Channel>& channel) {
  auto context = std::make_shared<grpc::ClientContext>();
  auto metadata = upstream_.Metadata();
  if (!metadata.ok()) return {metadata.status(), false};
  for (const auto& [key, value] : *metadata) context->AddMetadata(key, value);
  {
    absl::MutexLock lock(&mu_);
    if (stop_ || reconnect_) return {absl::CancelledError("stopping"), false};
    context_ = context;
  }
  auto clear_context = [&] {
    absl::MutexLock lock(&mu_);
    context_.reset();
  };
  auto stub = meshid::policy::v1::PolicyDistributionService::NewStub(channel);
  auto stream = stub->StreamPolicies(context.get());
  bool delivered = false;
  if (stream->Write(xds_.StartStream())) {
    DiscoveryResponse response;
    while (stream->Read(&response)) {
      if (!delivered) {
        delivered = true;
        SetConnected(true);
      }
      auto received = xds_.OnResponse(response);
      DiscoveryRequest reply;
      if (received.snapshot != nullptr) {
        absl::Status applied = apply_(received.snapshot);
        if (!applied.ok() && logger_) {
          logger_->warn("policy version {} from {} not applied: {}", received.snapshot->version(), upstream_.Describe(),
                        applied.message());
        }
        reply = xds_.OnApplied(applied);
      } else {
        if (received.reply->has_error_detail() && logger_) {
          logger_->warn("policy response from {} rejected: {}", upstream_.Describe(),
                        received.reply->error_detail().message());
        }
        reply = std::move(*received.reply);
      }
      Publish();
      if (!stream->Write(reply)) break;
    }
  }
  stream->WritesDone();
  grpc::Status finish = stream->Finish();
  clear_context();
  if (finish.ok()) return {absl::UnavailableError("the server ended the stream"), delivered};
  return {ToAbslStatus(finish), delivered};
}

}  // namespace meshid::policy
