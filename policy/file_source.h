// The `--config` policy source: files and directories read by PolicyWatcher, polled
// for changes. A broken new configuration is reported (log, meshid_policy_reloads_total
// {result="error"}) and never delivered, so the last good engine stays in force. With no
// paths at all the source delivers one empty policy set (no authentication or authorization
// policy: Istio's defaults, PERMISSIVE mTLS and no RBAC).
//
// Versions are "file-<generation>": generation 1 is the configuration loaded at start, each
// successful reload adds one (PolicyWatcher::generation()).
#pragma once

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "policy/file_watcher.h"
#include "policy/source.h"

namespace meshid::policy {

class FilePolicySource final : public PolicySource {
 public:
  // Validates nothing yet: Start() loads the initial configuration. The collaborators are
  // those of PolicyWatcher::Create.
  FilePolicySource(PolicyWatcher::Options options, const Clock& clock, MetricsRegistry& metrics, LoggerPtr logger);
  ~FilePolicySource() override;

  absl::Status Start(OnSnapshot on_snapshot) override;
  void Stop() override;
  std::string Describe() const override;

 private:
  absl::Status Deliver();
  void Run();

  const PolicyWatcher::Options options_;
  const Clock& clock_;
  MetricsRegistry& metrics_;
  LoggerPtr logger_;
  OnSnapshot on_snapshot_;
  std::unique_ptr<PolicyWatcher> watcher_;
  int64_t delivered_generation_ = 0;  // only touched by Start() and then the polling thread
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace meshid::policy
