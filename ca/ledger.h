// The issuance ledger's write path: group commit. A request that finds no commit under way
// leads: it commits its record, then everything that queued up meanwhile, in one transaction per
// batch, on its own thread, until the queue is empty. Requests arriving while a leader commits
// only queue their record. Concurrent requests so share one commit (one fsync) instead of paying
// one each, and no record is handed to another thread: on a machine of few cores a hand-off
// (waking a writer thread, then waking a gRPC thread to send each answer) cost more CPU than the
// commit itself. A certificate is handed out only after its record is durable.
//
// A commit also waits for the records on their way: a request tells the ledger before it signs
// (ExpectRecord), and while certificates are being signed a queued record waits for them, up to
// `commit_interval` (or until a batch is full). Each commit costs an fsync and a few hundred
// microseconds of CPU whatever its size; on one core, committing at once gave batches of about 6
// records at 64 calls in flight. Waiting for the signers is not a timer: the last of them to
// queue its record (or to fail) starts the commit, so an idle ledger commits at once and no
// thread sleeps.
//
// A transaction holds records of one registry generation (the common case: all of them).
//
// One leader at a time suits SQLite (one write transaction at a time anyway). PostgreSQL commits
// concurrent transactions with one WAL flush, so several leaders overlap their round trips and
// flushes: a batch need not wait for the previous batch's commit.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/metrics.h"
#include "store/issuance_store.h"

namespace meshid {

struct GroupCommitOptions {
  size_t max_batch = 512;  // records per transaction
  int writers = 1;         // leaders (transactions in flight) at once (>= 1)
  // The longest a queued record waits for certificates still being signed to join its commit;
  // 0: commit at once.
  absl::Duration commit_interval = absl::ZeroDuration();
};

class GroupCommitLedger {
 public:
  // `store` must outlive the ledger.
  GroupCommitLedger(IssuanceStore& store, MetricsRegistry& metrics, GroupCommitOptions options = {});
  // Commits what is queued and waits for the leaders. No Expectation may be open and no
  // RecordAsync may start meanwhile.
  ~GroupCommitLedger();
  GroupCommitLedger(const GroupCommitLedger&) = delete;
  GroupCommitLedger& operator=(const GroupCommitLedger&) = delete;

  // Says that a record is coming (a request is about to sign a certificate): queued records
  // wait for it (see above). Ends when passed to RecordAsync or destroyed (the request failed).
  // Movable; must not outlive the ledger.
  class Expectation {
   public:
    Expectation(Expectation&& other) noexcept : ledger_(std::exchange(other.ledger_, nullptr)) {}
    Expectation& operator=(Expectation&& other) noexcept;
    ~Expectation();

   private:
    friend class GroupCommitLedger;
    explicit Expectation(GroupCommitLedger* ledger) : ledger_(ledger) {}
    GroupCommitLedger* ledger_;  // null once ended
  };
  Expectation ExpectRecord();

  // Queues `record` and calls `done` once its transaction committed (OK) or failed: Unavailable
  // (the store failed), or Aborted when `registry_generation` is set and the registry has moved
  // past it (Store::RecordIssuancesAt). Either way the caller must not hand out the certificate.
  // `done` runs on the leader's thread: the caller's own (then RecordAsync returns after the
  // commits it led), or another caller's. `done` may call RecordAsync; it must not block on the
  // ledger. Ends `expectation` (which may be another ledger's or ended: then it is only
  // destroyed). Thread-safe.
  void RecordAsync(Expectation expectation, IssuanceRecord record, std::optional<int64_t> registry_generation,
                   std::function<void(absl::Status)> done);
  // The same without a registry check, blocking until the outcome is known.
  absl::Status Record(IssuanceRecord record);

 private:
  struct Pending {
    IssuanceRecord record;
    std::optional<int64_t> registry_generation;
    std::function<void(absl::Status)> done;
    std::chrono::steady_clock::time_point queued_at;
  };
  // Ends an expectation; the caller then leads if a commit is due.
  void Unexpect();
  // Whether the queue should be committed now (see above).
  bool CommitDue(std::chrono::steady_clock::time_point now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Makes the calling thread a leader if a commit is due and fewer than `writers` lead.
  bool TryLead() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Commits batches while one is due; the calling thread is a leader.
  void Lead();

  IssuanceStore& store_;
  const GroupCommitOptions options_;
  Counter& batches_;
  Counter& failed_batches_;
  Histogram& batch_size_;
  absl::Mutex mu_;
  std::vector<Pending> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int leaders_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t expected_ ABSL_GUARDED_BY(mu_) = 0;  // Expectations not yet ended
};

}  // namespace meshid
