// The receiving side of a state-of-the-world stream, for every meshid xDS type: SdsClient (one
// per secret name, as Envoy subscribes), the agent's policy stream toward the server, the
// proxy's toward its agent, and the next ones.
//
//  - SotwClientState: the xDS rules of one client, without any transport (tests and fuzzers
//    drive it directly). Every request carries the node, the type URL, the resource names and
//    version_info = the version last applied. A response goes to the handler: OK → ACK
//    (version_info = the response's), an error → NACK (version_info = the last applied one,
//    error_detail = the error's code and message) and the last good version stays applied.
//    With the type's client_acks_unchanged_without_handler, a response identical to the one
//    applied (e.g. resent after a reconnect) is ACKed without calling the handler.
//  - SotwClient: one thread keeping one stream of the type's sotw_method open through an
//    UpstreamSource (a channel per connection attempt, metadata per call; it reconnects when the
//    source's listeners fire, and on Reconnect()), with common/backoff.h between attempts (reset
//    by the first response of a stream).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/backoff.h"
#include "common/logging.h"
#include "common/random.h"
#include "envoy/config/core/v3/base.pb.h"
#include "envoy/service/discovery/v3/discovery.pb.h"
#include "xds/resource_type.h"
#include "xds/upstream.h"

namespace meshid::xds {

// Applies a response: OK to ACK it, an error to NACK it with the error's code and message.
using ResponseHandler = std::function<absl::Status(const envoy::service::discovery::v3::DiscoveryResponse&)>;

// Not thread-safe; one stream's thread drives it.
class SotwClientState {
 public:
  // `type` must outlive the state. `resource_names` empty: a wildcard subscription.
  SotwClientState(const ResourceType& type, envoy::config::core::v3::Node node,
                  std::vector<std::string> resource_names);

  // The first request of a new stream.
  envoy::service::discovery::v3::DiscoveryRequest StartStream() const;

  // Hands `response` to `handler` (unless it is the unchanged applied one, see above) and
  // returns the ACK or NACK to send.
  envoy::service::discovery::v3::DiscoveryRequest OnResponse(
      const envoy::service::discovery::v3::DiscoveryResponse& response, const ResponseHandler& handler);

  const std::string& applied_version() const { return applied_version_; }    // "": none yet
  const std::string& rejected_version() const { return rejected_version_; }  // of the last NACK
  const std::string& last_error() const { return last_error_; }              // that NACK's message

 private:
  envoy::service::discovery::v3::DiscoveryRequest Request() const;
  std::string Fingerprint(const envoy::service::discovery::v3::DiscoveryResponse& response) const;

  const ResourceType& type_;
  const envoy::config::core::v3::Node node_;
  const std::vector<std::string> resource_names_;
  std::string applied_version_;
  std::string applied_fingerprint_;  // only with client_acks_unchanged_without_handler
  std::string rejected_version_;
  std::string last_error_;
};

struct SotwClientOptions {
  envoy::config::core::v3::Node node;
  std::vector<std::string> resource_names;  // empty: the type's wildcard subscription
  std::string description;                  // for logs: "sds default", "policy stream"
  absl::Duration initial_backoff = absl::Milliseconds(500);
  absl::Duration max_backoff = absl::Seconds(30);
  // Called on the client's thread whenever state() changed. Null: none.
  std::function<void()> on_change;
  // Called on the client's thread with the status of every stream that ended or could not be
  // opened (not when the client stops). Null: none.
  std::function<void(const absl::Status&)> on_stream_end;
};

class SotwClient {
 public:
  struct State {
    bool connected = false;  // a stream is open and has delivered a response
    std::string applied_version;
    std::string rejected_version;
    std::string last_error;
  };

  // Starts the client's thread. `type`, `upstream` and `random` must outlive the client.
  // `handler` runs on the client's thread, one response at a time. InvalidArgument for a
  // backoff that is not positive or a max_backoff below initial_backoff.
  static absl::StatusOr<std::unique_ptr<SotwClient>> Create(const ResourceType& type, SotwClientOptions options,
                                                            UpstreamSource& upstream, ResponseHandler handler,
                                                            RandomSource& random, LoggerPtr logger);
  ~SotwClient();  // cancels the stream and joins; no callback runs afterwards

  State state() const;  // thread-safe
  // Ends the current stream (if any) and connects again at once, e.g. with a renewed
  // certificate. Thread-safe.
  void Reconnect();

 private:
  SotwClient(const ResourceType& type, SotwClientOptions options, UpstreamSource& upstream, ResponseHandler handler,
             RandomSource& random, LoggerPtr logger);
  void Loop();
  // One stream, until it ends; returns its status and whether it delivered anything.
  std::pair<absl::Status, bool> RunStream(const std::shared_ptr<grpc::Channel>& channel);
  void SetConnected(bool connected);
  void PublishState();                     // copies the xDS state into state_ and calls on_change
  bool WaitBackoff(absl::Duration delay);  // false when stopping

  const ResourceType& type_;
  const SotwClientOptions options_;
  UpstreamSource& upstream_;
  uint64_t listener_ = 0;
  const ResponseHandler handler_;
  LoggerPtr logger_;
  SotwClientState xds_;  // only the client's thread
  Backoff backoff_;      // only the client's thread
  mutable absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool reconnect_ ABSL_GUARDED_BY(mu_) = false;
  std::shared_ptr<grpc::ClientContext> context_ ABSL_GUARDED_BY(mu_);
  State state_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace meshid::xds
