// An xds::ResourceProvider for the SDS server and client tests: serves what the test publishes
// under the names "default" and "ROOTCA", and records the tokens streams presented, the names
// they subscribed to and the ACK/NACK reports ("default@<version> ACK").
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "xds/provider.h"

namespace meshid::sds::testing {

class FakeSecretProvider final : public xds::ResourceProvider {
 public:
  absl::StatusOr<std::unique_ptr<xds::Subscription>> Subscribe(const xds::StreamCaller& caller,
                                                               std::shared_ptr<xds::ResourceWatcher> watcher) override {
    auto sub = std::make_unique<Sub>(this, std::move(watcher));
    absl::MutexLock lock(&mu_);
    tokens_.emplace_back(caller.bearer_token);
    subs_.insert(sub.get());
    return std::unique_ptr<xds::Subscription>(std::move(sub));
  }
  bool IsKnownName(absl::string_view name) const override { return name == "default" || name == "ROOTCA"; }

  // Sets the current state of a name (an error is passed on, not kept) and tells every stream
  // watching it.
  void Publish(xds::ResourceUpdate update) {
    std::vector<std::shared_ptr<xds::ResourceWatcher>> targets;
    {
      absl::MutexLock lock(&mu_);
      if (update.error.ok()) current_[update.name] = update;
      for (Sub* sub : subs_) {
        if (sub->names_.contains(update.name)) targets.push_back(sub->watcher_);
      }
    }
    for (auto& watcher : targets) watcher->OnUpdate(update);
  }
  void Publish(xds::ResourcePtr resource) { Publish({resource->name, resource, absl::OkStatus()}); }

  // Each waits (bounded, so that a bug fails instead of hanging) until the condition holds.
  bool WaitForWatchers(const std::string& name, size_t n) {
    return Await([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      size_t count = 0;
      for (Sub* sub : subs_) count += sub->names_.contains(name) ? 1 : 0;
      return count >= n;
    });
  }
  bool WaitForReports(size_t n) {
    return Await([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return reports_.size() >= n; });
  }
  bool WaitForSubscriptions(size_t n) {
    return Await([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return subscribed_.size() >= n; });
  }
  bool WaitForNoSubscriptions() {
    return Await([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return subs_.empty(); });
  }

  std::vector<std::string> reports() {
    absl::MutexLock lock(&mu_);
    return reports_;
  }
  std::vector<std::string> tokens() {
    absl::MutexLock lock(&mu_);
    return tokens_;
  }
  std::vector<std::string> subscribed() {
    absl::MutexLock lock(&mu_);
    return subscribed_;
  }

 private:
  class Sub final : public xds::Subscription {
   public:
    Sub(FakeSecretProvider* provider, std::shared_ptr<xds::ResourceWatcher> watcher)
        : provider_(provider), watcher_(std::move(watcher)) {}
    ~Sub() override {
      absl::MutexLock lock(&provider_->mu_);
      provider_->subs_.erase(this);
    }
    absl::StatusOr<std::vector<xds::ResourceUpdate>> SetNames(const std::set<std::string>& names) override {
      absl::MutexLock lock(&provider_->mu_);
      for (const auto& n : names) {
        if (!provider_->IsKnownName(n)) return absl::NotFoundError(absl::StrCat("no SDS resource named \"", n, "\""));
      }
      names_ = names;
      std::vector<xds::ResourceUpdate> out;
      for (const auto& n : names) {
        provider_->subscribed_.push_back(n);
        if (auto it = provider_->current_.find(n); it != provider_->current_.end()) out.push_back(it->second);
      }
      return out;
    }
    void ReportApplied(absl::string_view name, absl::string_view version, bool accepted) override {
      absl::MutexLock lock(&provider_->mu_);
      provider_->reports_.push_back(absl::StrCat(name, "@", version, accepted ? " ACK" : " NACK"));
    }
    std::string Describe() const override { return "fake"; }

    FakeSecretProvider* const provider_;
    const std::shared_ptr<xds::ResourceWatcher> watcher_;
    std::set<std::string> names_;  // guarded by the provider's mu_
  };

  template <typename Ready>
  bool Await(Ready ready) {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Seconds(30));
  }

  absl::Mutex mu_;
  std::set<Sub*> subs_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, xds::ResourceUpdate> current_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> reports_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> tokens_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> subscribed_ ABSL_GUARDED_BY(mu_);
};

}  // namespace meshid::sds::testing
