// The receiving end of a policy stream (PolicyDistributionService.StreamPolicies): the agent
// toward the server, the proxy toward its agent. An xds::SotwClient of PolicySnapshotType()
// (xds/client.h: one thread, reconnects with backoff, ACK/NACK) whose handler decodes and
// validates each response (DecodePolicyResponse) and hands the snapshot to `apply`: applied →
// ACK, refused → NACK with apply's message, and the last good snapshot stays. A new stream
// starts with version_info = the version applied, so a resend of that version is ACKed without
// applying it again.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/logging.h"
#include "common/random.h"
#include "policy/wire.h"
#include "xds/client.h"
#include "xds/upstream.h"

namespace meshid::policy {

// The largest message a policy stream carries: a snapshot of kMaxPolicySnapshotBytes and room.
inline constexpr int kMaxPolicyMessageBytes = static_cast<int>(kMaxPolicySnapshotBytes) + (1 << 20);

struct PolicyStreamClientOptions {
  PolicyNode node;
  absl::Duration initial_backoff = absl::Milliseconds(500);
  absl::Duration max_backoff = absl::Seconds(30);
};

class PolicyStreamClient {
 public:
  // Applies a snapshot: OK to ACK it, an error to NACK it with the error's message. Runs on the
  // client's thread, one call at a time.
  using Apply = std::function<absl::Status(const PolicySnapshotPtr&)>;
  // Called (on the client's thread) whenever connected(), applied or rejected versions change.
  using OnChange = std::function<void()>;

  // Starts the client's thread, connecting through `upstream` (a channel per attempt; an error,
  // e.g. no certificate yet, is logged and retried with backoff). `upstream` and `random` must
  // outlive the client. InvalidArgument for a backoff that is not positive or whose maximum is
  // below its start.
  static absl::StatusOr<std::unique_ptr<PolicyStreamClient>> Create(PolicyStreamClientOptions options,
                                                                    xds::UpstreamSource& upstream, Apply apply,
                                                                    OnChange on_change, RandomSource& random,
                                                                    LoggerPtr logger);
  ~PolicyStreamClient() = default;  // cancels the stream and joins; no callback runs afterwards

  struct State {
    bool connected = false;  // a stream is open and has delivered a response
    int64_t applied_version = 0;
    int64_t rejected_version = 0;
    std::string last_error;
  };
  State state() const;  // thread-safe

  // Ends the current stream (if any) and connects again at once, e.g. with a renewed
  // certificate. Thread-safe.
  void Reconnect() { client_->Reconnect(); }

 private:
  explicit PolicyStreamClient(std::unique_ptr<xds::SotwClient> client) : client_(std::move(client)) {}
  std::unique_ptr<xds::SotwClient> client_;
};

// The handler of a policy stream's responses (what PolicyStreamClient runs): decodes and
// validates the response, then `apply`s the snapshot. For tests and fuzzers driving an
// xds::SotwClientState directly.
xds::ResponseHandler PolicyResponseHandler(PolicyStreamClient::Apply apply);

}  // namespace meshid::policy
