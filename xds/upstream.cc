#include "xds/upstream.h"

namespace meshid::xds {

absl::StatusOr<std::shared_ptr<grpc::Channel>> UpstreamSource::NewChannel() {
  auto channel = MakeChannel();
  if (!channel.ok()) return channel.status();
  absl::MutexLock lock(&mu_);
  current_ = *channel;
  return channel;
}

std::shared_ptr<grpc::Channel> UpstreamSource::CurrentChannel() const {
  absl::MutexLock lock(&mu_);
  return current_;
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> UpstreamSource::CallChannel() {
  {
    absl::MutexLock lock(&mu_);
    if (call_channel_ != nullptr) return call_channel_;
  }
  auto channel = MakeChannel();
  if (!channel.ok()) return channel.status();
  absl::MutexLock lock(&mu_);
  if (call_channel_ == nullptr) call_channel_ = *channel;
  return call_channel_;
}

void UpstreamSource::CredentialsChanged() {
  absl::MutexLock lock(&mu_);
  call_channel_.reset();
}

uint64_t UpstreamSource::AddListener(std::function<void()> listener) {
  absl::MutexLock lock(&mu_);
  const uint64_t id = next_id_++;
  listeners_.emplace(id, std::make_shared<std::function<void()>>(std::move(listener)));
  return id;
}

void UpstreamSource::RemoveListener(uint64_t id) {
  {
    absl::MutexLock lock(&mu_);
    listeners_.erase(id);
  }
  absl::MutexLock wait(&notify_mu_);  // a running NotifyListeners has finished
}

void UpstreamSource::NotifyListeners() {
  absl::MutexLock serial(&notify_mu_);
  std::vector<std::shared_ptr<std::function<void()>>> listeners;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, listener] : listeners_) listeners.push_back(listener);
  }
  for (const auto& listener : listeners) (*listener)();
}

grpc::ChannelArguments StreamChannelArguments(int max_message_bytes) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(max_message_bytes);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  return args;
}

InsecureUpstream::InsecureUpstream(std::string target, grpc::ChannelArguments args, std::string description)
    : target_(std::move(target)), args_(std::move(args)), description_(std::move(description)) {}

absl::StatusOr<std::shared_ptr<grpc::Channel>> InsecureUpstream::MakeChannel() {
  return grpc::CreateCustomChannel(target_, grpc::InsecureChannelCredentials(), args_);
}

}  // namespace meshid::xds
