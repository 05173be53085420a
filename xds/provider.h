// The narrow interface between an xDS server (transport, xDS rules) and whatever owns the
// resources it serves (the node agent's secret cache for SDS, a ResourcePublisher for the
// streams fed from the centre). Either the server authenticates the caller itself (an
// Authenticator, server.h) or it passes the stream's bearer token to the provider, which then
// decides what the stream may see.
//
// Threading: every method may be called from any thread. Watchers are called only from the
// provider's own threads, never from inside a Subscribe/SetNames/ReportApplied/destructor call
// and never while the provider holds a lock that those calls take. So a stream may call into
// its subscription while holding the stream's lock, and a watcher callback may take it.
#pragma once

#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "xds/resource.h"

namespace meshid::xds {

// The state of one resource name: a snapshot, or an error saying why it cannot be served
// (e.g. the certificate expired while the CA is unreachable, or the workload token was
// rejected). Exactly one of `resource` and `error` is set.
struct ResourceUpdate {
  std::string name;
  ResourcePtr resource;
  absl::Status error;
};

// Receives changes for the names a subscription watches. Updates of one name may arrive out
// of order across threads; compare Resource::generation and keep the newest.
class ResourceWatcher {
 public:
  virtual ~ResourceWatcher() = default;
  virtual void OnUpdate(const ResourceUpdate& update) = 0;
};

// A watcher that forwards updates to `forward` until detached: what an object that may go away
// before the provider lets go of its watcher (a stream, a connection) hands to Subscribe.
class ForwardingWatcher final : public ResourceWatcher {
 public:
  explicit ForwardingWatcher(std::function<void(const ResourceUpdate&)> forward) : forward_(std::move(forward)) {}
  void OnUpdate(const ResourceUpdate& update) override {
    absl::MutexLock lock(&mu_);
    if (forward_) forward_(update);
  }
  // After this returns no call of `forward` is running or will run.
  void Detach() {
    absl::MutexLock lock(&mu_);
    forward_ = nullptr;
  }

 private:
  absl::Mutex mu_;
  std::function<void(const ResourceUpdate&)> forward_ ABSL_GUARDED_BY(mu_);
};

// One stream's interest. Destroying it unsubscribes; after the destructor returns no further
// callbacks start (one already running may still finish, so the watcher must outlive it:
// the provider holds the watcher's shared_ptr).
class Subscription {
 public:
  virtual ~Subscription() = default;

  // Replaces the watched names. Unknown names fail the whole call with NotFound naming them
  // (the previous names stay watched). On success returns the current state of every name
  // that has one; names still being prepared arrive later through the watcher.
  virtual absl::StatusOr<std::vector<ResourceUpdate>> SetNames(const std::set<std::string>& names) = 0;

  // The client applied (`accepted`) or rejected a version of `name`.
  virtual void ReportApplied(absl::string_view name, absl::string_view version, bool accepted) = 0;

  // A description of the identity behind the stream for logs ("spiffe://..." once known).
  virtual std::string Describe() const = 0;
};

// Who opened a stream, as far as the server knows: what the provider may base its answer on.
struct StreamCaller {
  // The `authorization: Bearer <token>` the stream presented, when the server passes it on
  // (StreamServerOptions::bearer_token_to_provider); "" for none.
  std::string bearer_token;
  // What the server's Authenticator said ("" without one).
  std::string identity;
  // The transport's peer, grpc::ServerContext::peer(): "ipv4:...", "unix:...", or "fd:<n>" for
  // a connection accepted by the process itself (workload/peer_listener.h).
  std::string peer;
};

class ResourceProvider {
 public:
  virtual ~ResourceProvider() = default;
  // Starts a subscription for a stream opened by `caller` (for the secret cache an empty
  // bearer token means the agent's own identity). Fails for a caller the provider serves
  // nothing (a malformed token, an unknown caller).
  virtual absl::StatusOr<std::unique_ptr<Subscription>> Subscribe(const StreamCaller& caller,
                                                                  std::shared_ptr<ResourceWatcher> watcher) = 0;
  // Whether `name` is a resource this provider can serve at all.
  virtual bool IsKnownName(absl::string_view name) const = 0;
};

}  // namespace meshid::xds
