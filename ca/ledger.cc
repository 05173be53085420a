#include "ca/ledger.h"

#include <pthread.h>

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace meshid {

GroupCommitLedger::GroupCommitLedger(IssuanceStore& store, MetricsRegistry& metrics, GroupCommitOptions options)
    : store_(store),
      options_(options),
      batches_(metrics.AddCounter("meshid_ca_ledger_commits", "Ledger transactions committed.")),
      failed_batches_(metrics.AddCounter("meshid_ca_ledger_commit_failures", "Ledger transactions that failed.")),
      batch_size_(metrics.AddHistogram("meshid_ca_ledger_batch_size", "Records per ledger transaction.",
                                       {1, 2, 4, 8, 16, 32, 64, 128, 256, 512})) {
  for (int i = 0; i < std::max(1, options_.writers); ++i) writers_.emplace_back([this] { WriterLoop(); });
}

GroupCommitLedger::~GroupCommitLedger() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    queued_.SignalAll();
  }
  for (std::thread& writer : writers_) writer.join();
}

void GroupCommitLedger::RecordAsync(IssuanceRecord record, std::optional<int64_t> registry_generation,
                                    std::function<void(absl::Status)> done) {
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      queue_.push_back(Pending{std::move(record), registry_generation, std::move(done)});
      // An idle writer waits for the first record; a pacing one only for a full batch.
      if (queue_.size() == 1 || queue_.size() >= options_.max_batch) queued_.Signal();
      return;
    }
  }
  done(absl::UnavailableError("the issuance ledger is shutting down"));
}

absl::Status GroupCommitLedger::Record(IssuanceRecord record) {
  absl::Status result;
  absl::Notification committed;
  RecordAsync(std::move(record), std::nullopt, [&](absl::Status status) {
    result = std::move(status);
    committed.Notify();
  });
  committed.WaitForNotification();
  return result;
}

void GroupCommitLedger::WriterLoop() {
  pthread_setname_np(pthread_self(), "ledger-writer");
  std::vector<Pending> batch;
  std::vector<IssuanceRecord> records;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      while (queue_.empty() && !stopping_) queued_.Wait(&mu_);
      if (queue_.empty()) return;  // stopping, nothing left
      // The steady clock: a wall-clock step must not stall (or hurry) the writers.
      const auto next_start = last_commit_start_ + absl::ToChronoNanoseconds(options_.commit_interval);
      while (queue_.size() < options_.max_batch && !stopping_) {
        const auto now = std::chrono::steady_clock::now();
        if (now >= next_start) break;
        queued_.WaitWithTimeout(&mu_, absl::FromChrono(next_start - now));
      }
      if (queue_.empty()) continue;  // another writer took it
      last_commit_start_ = std::chrono::steady_clock::now();
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
