#include "sql/pruner.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace meshid {

absl::StatusOr<std::unique_ptr<LedgerPruner>> LedgerPruner::Create(IssuanceStore& store, const Clock& clock,
                                                                   LoggerPtr logger,
                                                                   const LedgerPrunerOptions& options) {
  if (options.horizon < absl::ZeroDuration() || options.horizon == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError("retention horizon: must be a finite duration, zero or more");
  }
  if (options.interval <= absl::ZeroDuration())
    return absl::InvalidArgumentError("retention interval: must be positive");
  if (options.batch_size <= 0) return absl::InvalidArgumentError("retention batch size: must be positive");
  return std::unique_ptr<LedgerPruner>(new LedgerPruner(store, clock, std::move(logger), options));
}

LedgerPruner::LedgerPruner(IssuanceStore& store, const Clock& clock, LoggerPtr logger,
                           const LedgerPrunerOptions& options)
    : store_(store), clock_(clock), logger_(std::move(logger)), options_(options) {}

LedgerPruner::~LedgerPruner() { Stop(); }

void LedgerPruner::Start() {
  if (thread_.joinable()) return;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = false;
  }
  thread_ = std::thread([this] { Loop(); });
}

void LedgerPruner::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

absl::StatusOr<int64_t> LedgerPruner::RunOnce() {
  const absl::Time cutoff = clock_.Now() - options_.horizon;
  int64_t total = 0;
  while (true) {
    MESHID_ASSIGN_OR_RETURN(int64_t deleted, store_.PruneExpiredBefore(cutoff, options_.batch_size));
    total += deleted;
    if (deleted < options_.batch_size) break;
    absl::MutexLock lock(&mu_);
    if (stopping_) break;
  }
  return total;
}

void LedgerPruner::Loop() {
  while (true) {
    absl::StatusOr<int64_t> deleted = RunOnce();
    if (!deleted.ok()) {
      logger_->warn("ledger retention: {} (retrying in {})", deleted.status().message(),
                    absl::FormatDuration(options_.interval));
    } else if (*deleted > 0) {
      logger_->info("ledger retention: deleted {} certificates that expired more than {} ago", *deleted,
                    absl::FormatDuration(options_.horizon));
    }
    absl::MutexLock lock(&mu_);
    ++passes_;
    if (deleted.ok()) pruned_ += *deleted;
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), options_.interval);
    if (stopping_) return;
  }
}

int64_t LedgerPruner::passes() const {
  absl::MutexLock lock(&mu_);
  return passes_;
}

int64_t LedgerPruner::pruned() const {
  absl::MutexLock lock(&mu_);
  return pruned_;
}

void LedgerPruner::WaitForPasses(int64_t n) const {
  absl::MutexLock lock(&mu_);
  auto reached = [this, n]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return passes_ >= n; };
  mu_.Await(absl::Condition(&reached));
}

}  // namespace meshid
