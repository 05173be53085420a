// The receiving end of a policy stream (PolicyDistributionService.StreamPolicies): the agent
// toward the server, the proxy toward its agent. One thread keeps a stream open, hands every
// valid snapshot to `apply`, ACKs what it applied and NACKs what it could not (with apply's
// message; the last good snapshot stays), and reconnects with jittered exponential backoff
// when the stream ends. A new stream starts with version_info = the version applied, so a
// resend of that version is ACKed without applying it again.
#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/logging.h"
#include "common/random.h"
#include "policy/wire.h"
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
  // outlive the client.
  static std::unique_ptr<PolicyStreamClient> Start(PolicyStreamClientOptions options, xds::UpstreamSource& upstream,
                                                   Apply apply, OnChange on_change, RandomSource& random,
                                                   LoggerPtr logger);
  ~PolicyStreamClient();  // cancels the stream and joins; no callback runs afterwards

  struct State {
    bool connected = false;  // a stream is open and has delivered a response
    int64_t applied_version = 0;
    int64_t rejected_version = 0;
    std::string last_error;
  };
  State state() const;

  // Ends the current stream (if any) and connects again at once, e.g. with a renewed certificate.
  void Reconnect();

 private:
  PolicyStreamClient(PolicyStreamClientOptions options, xds::UpstreamSource& upstream, Apply apply, OnChange on_change,
                     RandomSource& random, LoggerPtr logger);
  void Loop();
  // One stream, until it ends; returns its status and whether it delivered anything.
  std::pair<absl::Status, bool> RunStream(const std::shared_ptr<grpc::Channel>& channel);
  void SetConnected(bool connected);
  void Publish();                          // copies the xDS state into state_ and calls on_change
  bool WaitBackoff(absl::Duration delay);  // false when stopping

  const PolicyStreamClientOptions options_;
  xds::UpstreamSource& upstream_;
  uint64_t listener_ = 0;
  const Apply apply_;
  const OnChange on_change_;
  RandomSource& random_;
  LoggerPtr logger_;
  PolicyStreamClientState xds_;  // only the client's thread
  mutable absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool reconnect_ ABSL_GUARDED_BY(mu_) = false;
  std::shared_ptr<grpc::ClientContext> context_ ABSL_GUARDED_BY(mu_);
  State state_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace meshid::policy
