#include "registration/receiver.h"

#include "absl/strings/str_cat.h"
#include "common/selector.h"
#include "registration/wire.h"

namespace meshid::registration {

std::vector<const NodeEntry*> NodeEntries::Matching(const absl::flat_hash_set<std::string>& selectors) const {
  std::vector<const NodeEntry*> out;
  for (const NodeEntry& entry : entries) {
    if (SelectorsMatch(entry.selectors, selectors)) out.push_back(&entry);
  }
  return out;
}

EntryReceiver::EntryReceiver(std::function<std::string()> own_id, MetricsRegistry& metrics, LoggerPtr logger)
    : own_id_(std::move(own_id)), logger_(std::move(logger)) {
  updates_ = &metrics.AddCounter("meshid_agent_registration_updates_total",
                                 "Sets of registration entries received from the server and put in force.");
  rejected_ =
      &metrics.AddCounter("meshid_agent_registration_rejected_total", "Sets of registration entries refused (NACKed).");
  metrics.AddComputedGauge("meshid_agent_registration_entries",
                           "Registration entries in force whose parent is this agent.", [this] {
                             auto entries = current();
                             return entries == nullptr ? 0.0 : static_cast<double>(entries->entries.size());
                           });
}

absl::Status EntryReceiver::OnResponse(const envoy::service::discovery::v3::DiscoveryResponse& response) {
  auto set = DecodeEntrySetResponse(response, own_id_());
  if (!set.ok()) {
    rejected_->Increment();
    logger_->warn("refused registration entries from the server: {}", set.status().message());
    return set.status();
  }
  auto entries = std::make_shared<NodeEntries>();
  entries->parent_id = set->parent_id();
  entries->registry_generation = set->registry_generation();
  for (const auto& in : set->entries()) {
    NodeEntry entry;
    entry.spiffe_id = in.spiffe_id();
    entry.selectors.assign(in.selectors().begin(), in.selectors().end());
    entry.dns_names.assign(in.dns_names().begin(), in.dns_names().end());
    entry.max_ttl = absl::Seconds(in.max_ttl_seconds());
    entries->entries.push_back(std::move(entry));
  }
  std::sort(entries->entries.begin(), entries->entries.end(),
            [](const NodeEntry& a, const NodeEntry& b) { return a.spiffe_id < b.spiffe_id; });
  logger_->info("registration entries at generation {}: {} workload identit{} for this node",
                entries->registry_generation, entries->entries.size(), entries->entries.size() == 1 ? "y" : "ies");
  updates_->Increment();
  Apply(std::move(entries));
  return absl::OkStatus();
}

void EntryReceiver::Apply(std::shared_ptr<const NodeEntries> entries) {
  std::vector<std::shared_ptr<Callback>> watches;
  {
    absl::MutexLock lock(&mu_);
    current_ = std::move(entries);
    for (const auto& [id, watch] : watches_) watches.push_back(watch);
  }
  for (const auto& watch : watches) {
    absl::MutexLock lock(&watch->mu);
    if (watch->fn) watch->fn();
  }
}

std::shared_ptr<const NodeEntries> EntryReceiver::current() const {
  absl::MutexLock lock(&mu_);
  return current_;
}

std::unique_ptr<EntryReceiver::Watch> EntryReceiver::AddWatch(std::function<void()> on_change) {
  absl::MutexLock lock(&mu_);
  const uint64_t id = next_watch_++;
  watches_[id] = std::make_shared<Callback>(std::move(on_change));
  return std::unique_ptr<Watch>(new Watch(*this, id));
}

void EntryReceiver::RemoveWatch(uint64_t id) {
  std::shared_ptr<Callback> callback;
  {
    absl::MutexLock lock(&mu_);
    auto it = watches_.find(id);
    if (it == watches_.end()) return;
    callback = std::move(it->second);
    watches_.erase(it);
  }
  absl::MutexLock lock(&callback->mu);  // waits for a call that is running
  callback->fn = nullptr;
}

}  // namespace meshid::registration
