// Where the sidecar's policy comes from. The data path never reads files or streams itself: it
// takes compiled engines only through this interface, so sources are interchangeable: the
// watched `--config` files (FilePolicySource, policy/file_source.h) or the agent's policy stream
// relayed from `meshid apply` via the server (AgentPolicySource, policy/agent_source.h).
//
// Contract:
//  * Start() delivers the first snapshot (synchronously or later) and every change after it
//    to `on_snapshot`, one call at a time, never from a proxy worker thread.
//  * `on_snapshot` returns OK when the proxy applied the snapshot (the source ACKs it) or an
//    error when it cannot be used (the source NACKs it with that message); after an error the
//    proxy keeps enforcing the last good snapshot, and the source must not resend the same
//    version.
//  * A source that cannot produce a valid snapshot (a broken file, a bad push) reports that
//    itself and simply delivers nothing: the last good snapshot stays in force.
//  * Stop() returns once no `on_snapshot` call is running or will start; the destructor stops.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "authz/policy_engine.h"

namespace meshid::policy {

class PolicySource {
 public:
  struct Snapshot {
    std::string version;  // opaque; shown on the admin endpoint and, for the agent stream, reported upstream
    std::shared_ptr<const authz::PolicyEngine> engine;
  };
  using OnSnapshot = std::function<absl::Status(const Snapshot&)>;

  virtual ~PolicySource() = default;
  // Fails when the source cannot start (for files: the initial configuration is broken).
  virtual absl::Status Start(OnSnapshot on_snapshot) = 0;
  virtual void Stop() = 0;
  // A short description for logs and the admin endpoint ("file:a.yaml,b/").
  virtual std::string Describe() const = 0;
};

}  // namespace meshid::policy
