// How an xDS client (xds::SotwClient, client.h) reaches its server: a channel for every
// connection attempt and metadata read fresh for every call, because certificates and tokens
// rotate.
//
// Implementations: InsecureUpstream below (the proxy's policy stream to its agent's Unix
// socket), the SDS client's one channel to its agent (sds/sds_client.cc), and the node agent's
// authenticated connection to meshid server (nodeagent/server_upstream.h), shared by every
// stream the agent takes from the server.
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace meshid::xds {

using CallMetadata = std::vector<std::pair<std::string, std::string>>;  // e.g. {"authorization", "Bearer ..."}

class UpstreamSource {
 public:
  virtual ~UpstreamSource() = default;

  // A new channel for a connection attempt, with the credentials of now. An error (no
  // credentials yet, an unreadable trust bundle) is the attempt's failure: the client retries
  // after its backoff. Thread-safe.
  absl::StatusOr<std::shared_ptr<grpc::Channel>> NewChannel();
  // The channel NewChannel returned last (null before the first): whether a stream has
  // connected. Thread-safe.
  std::shared_ptr<grpc::Channel> CurrentChannel() const;
  // A channel for unary calls made beside the streams (status reports), with the credentials of
  // now: a connection keeps the client certificate it was opened with and the server checks that
  // on every call, so after CredentialsChanged() the next call gets a new channel. Thread-safe.
  absl::StatusOr<std::shared_ptr<grpc::Channel>> CallChannel();
  // The metadata for the next call on the current channel, read now (tokens rotate).
  // Thread-safe.
  virtual absl::StatusOr<CallMetadata> Metadata() = 0;
  // For logs: "meshid server at 127.0.0.1:15012".
  virtual std::string Describe() const = 0;

  // `listener` is called (on any thread, without locks held) when a new connection would use
  // better credentials than the current one, e.g. the agent's first certificate in place of its
  // token: clients reconnect then. A listener must not add or remove listeners. RemoveListener
  // returns once no call of that listener runs or will run.
  uint64_t AddListener(std::function<void()> listener);
  void RemoveListener(uint64_t id);

 protected:
  virtual absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel() = 0;
  // For implementations: tells every listener.
  void NotifyListeners();
  // For implementations: the credentials changed (a renewed client certificate); CallChannel
  // makes a new channel for the next call.
  void CredentialsChanged();

 private:
  mutable absl::Mutex mu_;
  std::shared_ptr<grpc::Channel> current_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<grpc::Channel> call_channel_ ABSL_GUARDED_BY(mu_);  // null: make one
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<uint64_t, std::shared_ptr<std::function<void()>>> listeners_ ABSL_GUARDED_BY(mu_);
  absl::Mutex notify_mu_;  // held while listeners run, so RemoveListener can wait them out
};

// Channel arguments for long-lived streams: messages up to `max_message_bytes`, keepalive, and a
// quick reconnect of the channel itself (the client's own backoff decides when to retry a stream).
grpc::ChannelArguments StreamChannelArguments(int max_message_bytes);

// A plaintext channel to `target` (e.g. "unix:/path/to/socket", where the socket's file mode
// decides who may connect) without metadata.
class InsecureUpstream final : public UpstreamSource {
 public:
  InsecureUpstream(std::string target, grpc::ChannelArguments args, std::string description);
  absl::StatusOr<CallMetadata> Metadata() override { return CallMetadata(); }
  std::string Describe() const override { return description_; }

 private:
  absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel() override;

  const std::string target_;
  const grpc::ChannelArguments args_;
  const std::string description_;
};

}  // namespace meshid::xds
