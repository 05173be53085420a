#include "ca/ledger.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace meshid {

GroupCommitLedger::GroupCommitLedger(IssuanceStore& store, MetricsRegistry& metrics, GroupCommitOptions options)
    : store_(store),
      options_(options),
      batches_(metrics.AddCounter("meshid_ca_ledger_commits", "Ledger transactions committed.")),
      failed_batches_(metrics.AddCounter("meshid_ca_ledger_commit_failures", "Ledger transactions that failed.")),
      batch_size_(metrics.AddHistogram("meshid_ca_ledger_batch_size", "Records per ledger transaction.",
                                       {1, 2, 4, 8, 16, 32, 64, 128, 256, 512})) {}

GroupCommitLedger::~GroupCommitLedger() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
  if (TryLead()) {
    mu_.Unlock();
    Lead();
    mu_.Lock();
  }
  mu_.Await(absl::Condition(
      +[](GroupCommitLedger* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) { return self->leaders_ == 0; }, this));
}

GroupCommitLedger::Expectation& GroupCommitLedger::Expectation::operator=(Expectation&& other) noexcept {
  if (this != &other) {
    if (ledger_ != nullptr) ledger_->Unexpect();
    ledger_ = std::exchange(other.ledger_, nullptr);
  }
  return *this;
}

GroupCommitLedger::Expectation::~Expectation() {
  if (ledger_ != nullptr) ledger_->Unexpect();
}

GroupCommitLedger::Expectation GroupCommitLedger::ExpectRecord() {
  absl::MutexLock lock(&mu_);
  ++expected_;
  return Expectation(this);
}

void GroupCommitLedger::Unexpect() {
  bool lead = false;
  {
    absl::MutexLock lock(&mu_);
    --expected_;
    lead = TryLead();
  }
  if (lead) Lead();
}

bool GroupCommitLedger::CommitDue(std::chrono::steady_clock::time_point now) const {
  if (queue_.empty()) return false;
  if (stopping_ || expected_ == 0 || queue_.size() >= options_.max_batch) return true;
  // The steady clock: a wall-clock step must not stall (or hurry) the commits.
  return now - queue_.front().queued_at >= absl::ToChronoNanoseconds(options_.commit_interval);
}

bool GroupCommitLedger::TryLead() {
  if (leaders_ >= std::max(1, options_.writers) || !CommitDue(std::chrono::steady_clock::now())) return false;
  ++leaders_;
  return true;
}

void GroupCommitLedger::RecordAsync(Expectation expectation, IssuanceRecord record,
                                    std::optional<int64_t> registry_generation,
                                    std::function<void(absl::Status)> done) {
  bool queued = false;
  bool lead = false;
  {
    absl::MutexLock lock(&mu_);
    if (expectation.ledger_ == this) {
      expectation.ledger_ = nullptr;
      --expected_;
    }
    if (!stopping_) {
      queue_.push_back(
          Pending{std::move(record), registry_generation, std::move(done), std::chrono::steady_clock::now()});
      queued = true;
      lead = TryLead();
    }
  }
  if (lead) Lead();
  if (!queued) done(absl::UnavailableError("the issuance ledger is shutting down"));
}

absl::Status GroupCommitLedger::Record(IssuanceRecord record) {
  absl::Status result;
  absl::Notification committed;
  RecordAsync(ExpectRecord(), std::move(record), std::nullopt, [&](absl::Status status) {
    result = std::move(status);
    committed.Notify();
  });
  committed.WaitForNotification();
  return result;
}

void GroupCommitLedger::Lead() {
  std::vector<Pending> batch;
  std::vector<IssuanceRecord> records;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (!CommitDue(std::chrono::steady_clock::now())) {
        --leaders_;
        return;
      }
      size_t n = 1;
      const size_t most = std::min(queue_.size(), options_.max_batch);
      while (n < most && queue_[n].registry_generation == queue_.front().registry_generation) ++n;
      batch.assign(std::make_move_iterator(queue_.begin()),
                   std::make_move_iterator(queue_.begin() + static_cast<ptrdiff_t>(n)));
      queue_.erase(queue_.begin(), queue_.begin() + static_cast<ptrdiff_t>(n));
    }
    records.clear();
    for (Pending& p : batch) records.push_back(std::move(p.record));
    absl::Status status = store_.RecordIssuancesAt(records, batch.front().registry_generation);
    if (status.ok()) {
      batches_.Increment();
      batch_size_.Observe(static_cast<double>(batch.size()));
    } else if (!absl::IsAborted(status)) {
      failed_batches_.Increment();
      status = absl::UnavailableError(
          absl::StrCat("the issuance ledger is unavailable, so no certificate was issued: ", status.message()));
    }
    for (Pending& p : batch) p.done(status);
    batch.clear();
  }
}

}  // namespace meshid
