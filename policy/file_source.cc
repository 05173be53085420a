#include "policy/file_source.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace meshid::policy {

FilePolicySource::FilePolicySource(PolicyWatcher::Options options, const Clock& clock, MetricsRegistry& metrics,
                                   LoggerPtr logger)
    : options_(std::move(options)), clock_(clock), metrics_(metrics), logger_(std::move(logger)) {}

FilePolicySource::~FilePolicySource() { Stop(); }

std::string FilePolicySource::Describe() const {
  return options_.paths.empty() ? "none (no --config: Istio defaults)"
                                : absl::StrCat("file:", absl::StrJoin(options_.paths, ","));
}

absl::Status FilePolicySource::Start(OnSnapshot on_snapshot) {
  if (watcher_ != nullptr) return absl::FailedPreconditionError("the policy source is already started");
  on_snapshot_ = std::move(on_snapshot);
  auto watcher = PolicyWatcher::Create(options_, clock_, metrics_, logger_);
  if (!watcher.ok()) return watcher.status();
  watcher_ = std::move(*watcher);
  absl::Status first = Deliver();
  if (!first.ok()) return first;
  if (!options_.paths.empty()) thread_ = std::thread([this] { Run(); });
  return absl::OkStatus();
}

void FilePolicySource::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

absl::Status FilePolicySource::Deliver() {
  const int64_t generation = watcher_->generation();
  if (generation == delivered_generation_) return absl::OkStatus();
  Snapshot snapshot{absl::StrCat("file-", generation), watcher_->Current()};
  absl::Status applied = on_snapshot_(snapshot);
  // Delivered either way: a refused generation is not offered again.
  delivered_generation_ = generation;
  if (!applied.ok()) {
    logger_->error("policy version {} refused by the proxy: {}", snapshot.version, applied.message());
  }
  return applied;
}

void FilePolicySource::Run() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stop_), options_.interval)) return;
    }
    // Poll() logs and counts a broken configuration itself and keeps the last good engine.
    (void)watcher_->Poll();
    (void)Deliver();
  }
}

}  // namespace meshid::policy
