// ResourcePublisher: an in-memory ResourceProvider for the streams fed from the centre (the
// policy snapshot today; registration entries, trust bundles and revocations next). Its owner
// publishes the newest resource of each name (the policy server's store poller, the agent's
// relay of what the server sent); every subscription watching that name is told.
//
// Every subscriber sees every resource: a stream that needs authentication gets it from the
// server's Authenticator (server.h), and the caller handed to Subscribe is ignored.
//
// Threading: thread-safe. Publish() calls watchers on the publishing thread after releasing the
// publisher's lock, so never inside a Subscribe/SetNames/ReportApplied/destructor call. A
// subscription's destructor does not wait for a callback already running.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "xds/provider.h"
#include "xds/resource.h"

namespace meshid::xds {

class ResourcePublisher final : public ResourceProvider {
 public:
  // `names`: the names it serves; a stream may subscribe to one before it is first published and
  // receives it then. Empty: any name is served.
  explicit ResourcePublisher(std::set<std::string> names = {});
  ~ResourcePublisher() override;  // every subscription must be gone

  // Makes `resource` the current one of its name, with a generation newer than any before, and
  // tells every subscription watching that name; unless the current one has the same version
  // and body, which changes nothing. Returns the current resource. InvalidArgument for a name
  // this publisher does not serve.
  absl::StatusOr<ResourcePtr> Publish(Resource resource);
  // The current resource of `name`; null before the first Publish.
  ResourcePtr Current(absl::string_view name) const;

  absl::StatusOr<std::unique_ptr<Subscription>> Subscribe(const StreamCaller& caller,
                                                          std::shared_ptr<ResourceWatcher> watcher) override;
  bool IsKnownName(absl::string_view name) const override;

 private:
  class SubscriptionImpl;
  struct Watch;

  const std::set<std::string> names_;
  mutable absl::Mutex mu_;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, ResourcePtr, std::less<>> current_ ABSL_GUARDED_BY(mu_);
  std::set<std::shared_ptr<Watch>> watches_ ABSL_GUARDED_BY(mu_);
};

}  // namespace meshid::xds
