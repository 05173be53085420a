// In-memory fakes of the two store interfaces the CA uses, for CA unit tests: the CA's registry
// and ledger logic is under test here; the real backends are tested in tests/sql and through the
// real binary. Each fake implements one interface. The ledger's fake checks a batch's registry
// generation against the registry's fake, as the real insert does in the same statement.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "store/identity_registry.h"
#include "store/issuance_store.h"

namespace meshid::testing {

class FakeIdentityRegistry final : public IdentityRegistry {
 public:
  absl::Status CreateEntry(const RegistryEntry& e) override {
    absl::MutexLock lock(&mu_);
    entries_[{e.spiffe_id, e.parent_id}] = e;  // replaces an existing entry (the real store refuses)
    ++generation_;
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<RegistryEntry>> ListEntries(const std::optional<std::string>& parent_id) override {
    absl::MutexLock lock(&mu_);
    std::vector<RegistryEntry> out;
    for (const auto& [key, e] : entries_) {
      if (!parent_id.has_value() || e.parent_id == *parent_id) out.push_back(e);
    }
    return out;
  }
  absl::StatusOr<int64_t> GetRegistryGeneration() override { return generation(); }
  absl::Status DeleteEntry(absl::string_view id, absl::string_view parent_id) override {
    absl::MutexLock lock(&mu_);
    if (entries_.erase({std::string(id), std::string(parent_id)}) == 0) return absl::NotFoundError("no such entry");
    ++generation_;
    return absl::OkStatus();
  }
  absl::Status Block(absl::string_view id, absl::string_view reason, absl::Time at) override {
    absl::MutexLock lock(&mu_);
    blocked_[std::string(id)] = BlockedIdentity{std::string(id), std::string(reason), at};
    ++generation_;
    return absl::OkStatus();
  }
  absl::Status Unblock(absl::string_view id) override {
    absl::MutexLock lock(&mu_);
    blocked_.erase(std::string(id));
    ++generation_;
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<BlockedIdentity>> ListBlocked() override { return std::vector<BlockedIdentity>(); }
  absl::StatusOr<IdentityStatus> GetIdentityStatus(absl::string_view id) override {
    absl::MutexLock lock(&mu_);
    if (!available_) return absl::UnavailableError("fake registry is down");
    IdentityStatus status;
    // (spiffe_id, parent_id) order: the direct entry ("") first, then the others by parent.
    const std::string key(id);
    for (auto it = entries_.lower_bound({key, ""}); it != entries_.end() && it->first.first == key; ++it) {
      if (it->second.parent_id.empty()) {
        status.entry = it->second;
      } else {
        status.node_entries.push_back(it->second);
      }
    }
    if (auto it = blocked_.find(key); it != blocked_.end()) status.blocked = it->second;
    status.registry_generation = generation_;
    ++status_reads_;
    return status;
  }

  void set_available(bool available) {
    absl::MutexLock lock(&mu_);
    available_ = available;
  }
  // Starts at 1; every change above adds one.
  int64_t generation() {
    absl::MutexLock lock(&mu_);
    return generation_;
  }
  int status_reads() {
    absl::MutexLock lock(&mu_);
    return status_reads_;
  }

 private:
  absl::Mutex mu_;
  bool available_ ABSL_GUARDED_BY(mu_) = true;
  int status_reads_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t generation_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<std::pair<std::string, std::string>, RegistryEntry> entries_ ABSL_GUARDED_BY(mu_);  // by (id, parent)
  std::map<std::string, BlockedIdentity> blocked_ ABSL_GUARDED_BY(mu_);
};

class FakeIssuanceStore final : public IssuanceStore {
 public:
  // `registry` decides whether a batch's registry generation is still current; it must outlive
  // this fake.
  explicit FakeIssuanceStore(FakeIdentityRegistry& registry) : registry_(registry) {}

  absl::Status RecordIssuancesAt(absl::Span<const IssuanceRecord> records,
                                 std::optional<int64_t> registry_generation) override {
    if (before_record_) before_record_();
    const int64_t current_generation = registry_.generation();
    absl::MutexLock lock(&mu_);
    if (!available_) return absl::UnavailableError("fake ledger is down");
    ++commits_;
    batch_sizes_.push_back(records.size());
    if (registry_generation.has_value() && *registry_generation != current_generation) {
      return absl::AbortedError("the identity registry changed");
    }
    for (const auto& r : records) {
      if (ledger_.count(r.serial_hex)) return absl::AlreadyExistsError("duplicate serial");
    }
    for (const auto& r : records) ledger_[r.serial_hex] = r;
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<IssuanceRecord>> ListIssuances(const IssuanceQuery&) override {
    absl::MutexLock lock(&mu_);
    std::vector<IssuanceRecord> out;
    for (const auto& [serial, r] : ledger_) out.push_back(r);
    return out;
  }
  absl::StatusOr<int64_t> PruneExpiredBefore(absl::Time, int64_t) override { return 0; }

  // Runs at the start of every RecordIssuancesAt (set it before the ledger starts writing).
  void set_before_record(std::function<void()> hook) { before_record_ = std::move(hook); }
  void set_available(bool available) {
    absl::MutexLock lock(&mu_);
    available_ = available;
  }
  size_t ledger_size() {
    absl::MutexLock lock(&mu_);
    return ledger_.size();
  }
  std::vector<size_t> batch_sizes() {
    absl::MutexLock lock(&mu_);
    return batch_sizes_;
  }
  int commits() {
    absl::MutexLock lock(&mu_);
    return commits_;
  }

 private:
  FakeIdentityRegistry& registry_;
  std::function<void()> before_record_;
  absl::Mutex mu_;
  bool available_ ABSL_GUARDED_BY(mu_) = true;
  int commits_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<size_t> batch_sizes_ ABSL_GUARDED_BY(mu_);  // records per attempted transaction
  std::map<std::string, IssuanceRecord> ledger_ ABSL_GUARDED_BY(mu_);
};

}  // namespace meshid::testing
