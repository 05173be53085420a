// The issuance ledger's write path: group commit. Each request hands its record to the writer
// threads; a free writer commits everything that queued up meanwhile in a single transaction,
// so concurrent requests share one commit (one fsync) instead of paying one each. A certificate
// is handed out only after its record is durable.
//
// Commits can be paced: a commit starts no sooner than `commit_interval` after the previous one
// started, unless a full batch is waiting. Each commit costs an fsync and tens of microseconds
// of CPU whatever its size, so under load pacing trades a fraction of a millisecond of latency
// for fewer, larger commits; a request that finds the ledger idle is committed at once.
//
// A transaction holds records of one registry generation (the common case: all of them).
//
// One writer suits SQLite (one write transaction at a time anyway). PostgreSQL commits
// concurrent transactions with one WAL flush, so several writers overlap their round trips and
// flushes: a batch need not wait for the previous batch's commit.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/metrics.h"
#include "store/issuance_store.h"

namespace meshid {

struct GroupCommitOptions {
  size_t max_batch = 512;                                 // records per transaction
  int writers = 1;                                        // transactions in flight at once (>= 1)
  absl::Duration commit_interval = absl::ZeroDuration();  // between commit starts; 0: no pacing
};

class GroupCommitLedger {
 public:
  // `store` must outlive the ledger.
  GroupCommitLedger(IssuanceStore& store, MetricsRegistry& metrics, GroupCommitOptions options = {});
  // Commits what is queued, then stops the writers.
  ~GroupCommitLedger();
  GroupCommitLedger(const GroupCommitLedger&) = delete;
  GroupCommitLedger& operator=(const GroupCommitLedger&) = delete;

  // Queues `record` and calls `done` on the writer thread once its transaction committed (OK)
  // or failed: Unavailable (the store failed), or Aborted when `registry_generation` is set and
  // the registry has moved past it (Store::RecordIssuancesAt). Either way the caller must not
  // hand out the certificate. `done` must not block on the ledger. Thread-safe.
  void RecordAsync(IssuanceRecord record, std::optional<int64_t> registry_generation,
                   std::function<void(absl::Status)> done);
  // The same without a registry check, blocking until the outcome is known.
  absl::Status Record(IssuanceRecord record);

 private:
  struct Pending {
    IssuanceRecord record;
    std::optional<int64_t> registry_generation;
    std::function<void(absl::Status)> done;
  };
  void WriterLoop();

  IssuanceStore& store_;
  const GroupCommitOptions options_;
  Counter& batches_;
  Counter& failed_batches_;
  Histogram& batch_size_;
  absl::Mutex mu_;
  absl::CondVar queued_;
  std::vector<Pending> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::chrono::steady_clock::time_point last_commit_start_ ABSL_GUARDED_BY(mu_) =
      std::chrono::steady_clock::time_point::min();  // none yet
  std::vector<std::thread> writers_;
};

}  // namespace meshid
