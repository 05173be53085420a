#include "xds/publisher.h"

#include <atomic>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace meshid::xds {

// One subscription's interest, shared with Publish calls that may outlive the subscription.
struct ResourcePublisher::Watch {
  explicit Watch(std::shared_ptr<ResourceWatcher> w) : watcher(std::move(w)) {}
  const std::shared_ptr<ResourceWatcher> watcher;
  std::atomic<bool> active{true};
  std::set<std::string> names;  // guarded by the publisher's mu_
};

class ResourcePublisher::SubscriptionImpl final : public Subscription {
 public:
  SubscriptionImpl(ResourcePublisher& publisher, std::shared_ptr<Watch> watch)
      : publisher_(publisher), watch_(std::move(watch)) {}

  ~SubscriptionImpl() override {
    watch_->active = false;
    absl::MutexLock lock(&publisher_.mu_);
    publisher_.watches_.erase(watch_);
  }

  absl::StatusOr<std::vector<ResourceUpdate>> SetNames(const std::set<std::string>& names) override {
    std::vector<std::string> unknown;
    for (const auto& name : names) {
      if (!publisher_.IsKnownName(name)) unknown.push_back(name);
    }
    if (!unknown.empty()) {
      return absl::NotFoundError(absl::StrCat("no resource named \"", absl::StrJoin(unknown, "\", \""), "\""));
    }
    std::vector<ResourceUpdate> updates;
    absl::MutexLock lock(&publisher_.mu_);
    watch_->names = names;
    for (const auto& name : names) {
      auto it = publisher_.current_.find(name);
      if (it != publisher_.current_.end()) updates.push_back(ResourceUpdate{name, it->second, absl::OkStatus()});
    }
    return updates;
  }

  void ReportApplied(absl::string_view, absl::string_view, bool) override {}
  std::string Describe() const override { return "subscriber"; }

 private:
  ResourcePublisher& publisher_;
  const std::shared_ptr<Watch> watch_;
};

ResourcePublisher::ResourcePublisher(std::set<std::string> names) : names_(std::move(names)) {}

ResourcePublisher::~ResourcePublisher() = default;

bool ResourcePublisher::IsKnownName(absl::string_view name) const {
  return names_.empty() || names_.contains(std::string(name));
}

ResourcePtr ResourcePublisher::Current(absl::string_view name) const {
  absl::MutexLock lock(&mu_);
  auto it = current_.find(name);
  return it == current_.end() ? nullptr : it->second;
}

absl::StatusOr<ResourcePtr> ResourcePublisher::Publish(Resource resource) {
  if (!IsKnownName(resource.name)) {
    return absl::InvalidArgumentError(absl::StrCat("\"", resource.name, "\" is not a resource name served here"));
  }
  std::vector<std::shared_ptr<Watch>> targets;
  ResourceUpdate update;
  {
    absl::MutexLock lock(&mu_);
    ResourcePtr& current = current_[resource.name];
    if (current != nullptr && current->version == resource.version && current->body.view() == resource.body.view()) {
      return current;
    }
    resource.generation = ++generation_;
    update.name = resource.name;
    current = std::make_shared<const Resource>(std::move(resource));
    update.resource = current;
    for (const auto& watch : watches_) {
      if (watch->names.contains(update.name)) targets.push_back(watch);
    }
  }
  for (const auto& watch : targets) {
    if (watch->active) watch->watcher->OnUpdate(update);
  }
  return update.resource;
}

absl::StatusOr<std::unique_ptr<Subscription>> ResourcePublisher::Subscribe(const StreamCaller&,
                                                                           std::shared_ptr<ResourceWatcher> watcher) {
  auto watch = std::make_shared<Watch>(std::move(watcher));
  {
    absl::MutexLock lock(&mu_);
    watches_.insert(watch);
  }
  return std::unique_ptr<Subscription>(std::make_unique<SubscriptionImpl>(*this, std::move(watch)));
}

}  // namespace meshid::xds
