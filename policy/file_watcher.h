// Hot reload: a watcher re-reads the configured policy files/directories when their content
// changes and swaps in a newly compiled engine. A broken new configuration is reported (log
// and last_error()) and the last good engine stays in force.
//
// Thread-safety: Current() and Poll() may be called from any thread; Start() runs Poll() on a
// background thread every `interval` until the watcher is destroyed.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "authz/policy_engine.h"
#include "authz/policy_set.h"
#include "common/clock.h"
#include "common/logging.h"
#include "common/metrics.h"

namespace meshid::policy {

class PolicyWatcher {
 public:
  struct Options {
    std::vector<std::string> paths;
    authz::LoadOptions load;
    authz::PolicyEngineOptions engine;
    absl::Duration interval = absl::Seconds(2);
  };

  // Loads the initial configuration; fails (InvalidArgument with every finding) if it is bad,
  // because there is no last good engine to fall back to yet. Engines check JWTs against
  // `clock`; loads are counted in `metrics` (meshid_policy_reloads_total). `clock` and `metrics`
  // must outlive the watcher and its engines; `logger` is not null.
  static absl::StatusOr<std::unique_ptr<PolicyWatcher>> Create(Options options, const Clock& clock,
                                                               MetricsRegistry& metrics, LoggerPtr logger);
  ~PolicyWatcher();

  std::shared_ptr<const authz::PolicyEngine> Current() const;
  // Reloads if the files changed. OK when unchanged or reloaded; the load error otherwise (the
  // previous engine is kept).
  absl::Status Poll();
  void Start();

  int64_t generation() const;  // successful loads so far (1 after Create)
  std::string last_error() const;

 private:
  PolicyWatcher(Options options, const Clock& clock, MetricsRegistry& metrics, LoggerPtr logger);
  absl::StatusOr<std::string> Fingerprint() const;
  absl::StatusOr<std::shared_ptr<const authz::PolicyEngine>> Build() const;

  const Options options_;
  const Clock& clock_;
  LoggerPtr logger_;
  Counter& reloads_ok_;
  Counter& reloads_failed_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const authz::PolicyEngine> engine_ ABSL_GUARDED_BY(mu_);
  std::string fingerprint_ ABSL_GUARDED_BY(mu_);
  std::string failed_fingerprint_ ABSL_GUARDED_BY(mu_);
  int64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  std::string last_error_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  absl::Mutex poll_mu_;  // serialises Poll()
  std::thread thread_;
};

}  // namespace meshid::policy
