// Background retention of the issuance ledger: expired rows older than a horizon are deleted
// in small batches, each its own short transaction, so issuance (which writes the same table)
// never waits for more than one batch.
#pragma once

#include <cstdint>
#include <memory>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/logging.h"
#include "store/issuance_store.h"

namespace meshid {

struct LedgerPrunerOptions {
  // Rows whose not_after is more than `horizon` before now are deleted.
  absl::Duration horizon = absl::Hours(24 * 30);
  // Time between passes (real time; the first pass runs at Start()).
  absl::Duration interval = absl::Minutes(10);
  // Rows per transaction.
  int64_t batch_size = 500;
};

class LedgerPruner {
 public:
  // `store` and `clock` must outlive the pruner; `logger` (not null) gets the background
  // thread's outcomes. InvalidArgument for a negative horizon, a non-positive interval or batch
  // size.
  static absl::StatusOr<std::unique_ptr<LedgerPruner>> Create(IssuanceStore& store, const Clock& clock,
                                                              LoggerPtr logger,
                                                              const LedgerPrunerOptions& options = {});
  ~LedgerPruner();  // Stop()s
  LedgerPruner(const LedgerPruner&) = delete;
  LedgerPruner& operator=(const LedgerPruner&) = delete;

  // Starts the background thread (once; later calls do nothing). Its first pass runs at once.
  void Start();
  // Stops it, waiting for a batch in progress to finish. Idempotent.
  void Stop();

  // One pass on the calling thread: batches until one deletes fewer than batch_size rows (or
  // Stop() was called). Returns how many rows it deleted. Errors of the store are returned (the
  // background thread logs them and tries again at the next interval).
  absl::StatusOr<int64_t> RunOnce();

  // Passes the background thread finished (successful or not), and rows it deleted in total.
  int64_t passes() const;
  int64_t pruned() const;
  // Blocks until at least `n` background passes finished (for tests; no timeout).
  void WaitForPasses(int64_t n) const;

 private:
  LedgerPruner(IssuanceStore& store, const Clock& clock, LoggerPtr logger, const LedgerPrunerOptions& options);
  void Loop();

  IssuanceStore& store_;
  const Clock& clock_;
  const LoggerPtr logger_;
  const LedgerPrunerOptions options_;
  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int64_t passes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t pruned_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;  // touched only by Start/Stop, which callers do not race
};

}  // namespace meshid
