#include "registration/server.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "registration/wire.h"

namespace meshid::registration {

// Serves each stream the set named after its authenticated caller, under the name "self".
class RegistrationDistributionServer::ScopedProvider final : public xds::ResourceProvider {
 public:
  explicit ScopedProvider(RegistrationDistributionServer& server) : server_(server) {}

  absl::StatusOr<std::unique_ptr<xds::Subscription>> Subscribe(const xds::StreamCaller& caller,
                                                               std::shared_ptr<xds::ResourceWatcher> watcher) override {
    if (caller.identity.empty()) {
      return absl::PermissionDeniedError("the registration stream needs an authenticated agent");
    }
    server_.WantPublished(caller.identity);
    auto inner = server_.publisher_.Subscribe(caller, std::make_shared<Renaming>(std::move(watcher)));
    if (!inner.ok()) return inner.status();
    return std::unique_ptr<xds::Subscription>(std::make_unique<Scoped>(caller.identity, std::move(*inner)));
  }
  bool IsKnownName(absl::string_view name) const override { return name == kOwnEntriesName; }

 private:
  // Hands the caller's set on under the name the stream asked for. No lock of its own: the
  // stream's watcher outlives it (the publisher holds it through this one).
  class Renaming final : public xds::ResourceWatcher {
   public:
    explicit Renaming(std::shared_ptr<xds::ResourceWatcher> next) : next_(std::move(next)) {}
    void OnUpdate(const xds::ResourceUpdate& update) override {
      next_->OnUpdate(xds::ResourceUpdate{std::string(kOwnEntriesName), update.resource, update.error});
    }

   private:
    const std::shared_ptr<xds::ResourceWatcher> next_;
  };

  class Scoped final : public xds::Subscription {
   public:
    Scoped(std::string identity, std::unique_ptr<xds::Subscription> inner)
        : identity_(std::move(identity)), inner_(std::move(inner)) {}
    absl::StatusOr<std::vector<xds::ResourceUpdate>> SetNames(const std::set<std::string>& names) override {
      for (const auto& name : names) {
        if (name != kOwnEntriesName) {
          return absl::NotFoundError(absl::StrCat("no registration resource named \"", name,
                                                  "\"; an agent subscribes to \"self\" (its own entries)"));
        }
      }
      std::set<std::string> inner_names;
      if (!names.empty()) inner_names.insert(identity_);
      auto current = inner_->SetNames(inner_names);
      if (!current.ok()) return current.status();
      for (auto& update : *current) update.name = std::string(kOwnEntriesName);
      return current;
    }
    void ReportApplied(absl::string_view name, absl::string_view version, bool accepted) override {
      inner_->ReportApplied(identity_, version, accepted);
    }
    std::string Describe() const override { return identity_; }

   private:
    const std::string identity_;
    const std::unique_ptr<xds::Subscription> inner_;
  };

  RegistrationDistributionServer& server_;
};

absl::StatusOr<std::unique_ptr<RegistrationDistributionServer>> RegistrationDistributionServer::Create(
    RegistrationServerOptions options, xds::Authenticator authenticate, IdentityRegistry& registry,
    MetricsRegistry& metrics, LoggerPtr logger) {
  if (options.poll_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("registration poll interval: must be positive");
  }
  if (!authenticate) return absl::InvalidArgumentError("the registration stream needs an authenticator");
  std::unique_ptr<RegistrationDistributionServer> server(new RegistrationDistributionServer(options, registry, logger));
  server->poll_errors_ = &metrics.AddCounter("meshid_registration_poll_errors_total",
                                             "Registry reads for the registration stream that failed.");
  server->provider_ = std::make_unique<ScopedProvider>(*server);
  xds::StreamServerOptions stream_options;
  stream_options.sotw_rpc = "StreamEntries";
  stream_options.metrics_prefix = "meshid_registration";
  stream_options.subject = "registration";
  stream_options.authenticate = std::move(authenticate);
  server->streams_ = xds::StreamServer::Create(EntrySetType(), std::move(stream_options), *server->provider_, metrics,
                                               server->random_, std::move(logger));
  server->service_ = xds::MakeSotwService(EntrySetType(), *server->streams_);
  return server;
}

RegistrationDistributionServer::RegistrationDistributionServer(RegistrationServerOptions options,
                                                               IdentityRegistry& registry, LoggerPtr logger)
    : options_(options), registry_(registry), logger_(std::move(logger)) {}

RegistrationDistributionServer::~RegistrationDistributionServer() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    wake_.SignalAll();
  }
  if (poller_.joinable()) poller_.join();
}

void RegistrationDistributionServer::Start() {
  poller_ = std::thread([this] {
    for (;;) {
      if (auto status = PollOnce(); !status.ok()) {
        poll_errors_->Increment();
        logger_->warn("registration stream: {}", status.message());
      }
      absl::MutexLock lock(&mu_);
      const absl::Time deadline = absl::Now() + options_.poll_interval;
      while (!stop_ && wanted_.empty()) {
        if (wake_.WaitWithDeadline(&mu_, deadline)) break;
      }
      if (stop_) return;
    }
  });
}

void RegistrationDistributionServer::WantPublished(const std::string& parent) {
  absl::MutexLock lock(&mu_);
  wanted_.insert(parent);
  wake_.SignalAll();
}

absl::Status RegistrationDistributionServer::PollOnce() {
  std::set<std::string> wanted;
  {
    absl::MutexLock lock(&mu_);
    wanted.swap(wanted_);
  }
  auto generation = registry_.GetRegistryGeneration();
  if (!generation.ok()) {
    absl::MutexLock lock(&mu_);
    wanted_.insert(wanted.begin(), wanted.end());
    return generation.status();
  }
  if (*generation != generation_) {
    // Read after the generation: a change in between moves it again and is read next time.
    auto entries = registry_.ListEntries(std::nullopt);
    if (!entries.ok()) {
      absl::MutexLock lock(&mu_);
      wanted_.insert(wanted.begin(), wanted.end());
      return entries.status();
    }
    by_parent_.clear();
    for (auto& entry : *entries) {
      if (!entry.parent_id.empty()) by_parent_[entry.parent_id].push_back(std::move(entry));
    }
    generation_ = *generation;
  }
  // Every parent that has entries, had a set published, or has an agent waiting for one.
  std::set<std::string> parents = std::move(wanted);
  for (const auto& [parent, list] : by_parent_) parents.insert(parent);
  for (const auto& [parent, version] : published_) parents.insert(parent);
  static const std::vector<RegistryEntry> kNone;
  for (const std::string& parent : parents) {
    auto it = by_parent_.find(parent);
    const std::vector<RegistryEntry>& list = it == by_parent_.end() ? kNone : it->second;
    // Only the sets that changed are pushed: a change for one node is no news to the others.
    const std::string content = EntrySetResource(parent, list, 0).version;
    if (auto done = published_.find(parent); done != published_.end() && done->second == content) continue;
    auto resource = publisher_.Publish(EntrySetResource(parent, list, generation_));
    if (!resource.ok()) return resource.status();
    published_[parent] = content;
  }
  return absl::OkStatus();
}

}  // namespace meshid::registration
