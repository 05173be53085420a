#include "policy/file_watcher.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/sha256.h"

namespace meshid::policy {

namespace {
constexpr char kReloadsMetric[] = "meshid_policy_reloads_total";
constexpr char kReloadsHelp[] = "Policy configuration loads";
}  // namespace

PolicyWatcher::PolicyWatcher(Options options, const Clock& clock, MetricsRegistry& metrics, LoggerPtr logger)
    : options_(std::move(options)),
      clock_(clock),
      logger_(std::move(logger)),
      reloads_ok_(metrics.AddCounter(kReloadsMetric, kReloadsHelp, {{"result", "ok"}})),
      reloads_failed_(metrics.AddCounter(kReloadsMetric, kReloadsHelp, {{"result", "error"}})) {}

PolicyWatcher::~PolicyWatcher() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

absl::StatusOr<std::unique_ptr<PolicyWatcher>> PolicyWatcher::Create(Options options, const Clock& clock,
                                                                     MetricsRegistry& metrics, LoggerPtr logger) {
  std::unique_ptr<PolicyWatcher> w(new PolicyWatcher(std::move(options), clock, metrics, std::move(logger)));
  auto fp = w->Fingerprint();
  if (!fp.ok()) return fp.status();
  auto engine = w->Build();
  if (!engine.ok()) return engine.status();
  absl::MutexLock lock(&w->mu_);
  w->engine_ = std::move(*engine);
  w->fingerprint_ = std::move(*fp);
  w->generation_ = 1;
  w->reloads_ok_.Increment();
  return w;
}

std::shared_ptr<const authz::PolicyEngine> PolicyWatcher::Current() const {
  absl::MutexLock lock(&mu_);
  return engine_;
}

int64_t PolicyWatcher::generation() const {
  absl::MutexLock lock(&mu_);
  return generation_;
}

std::string PolicyWatcher::last_error() const {
  absl::MutexLock lock(&mu_);
  return last_error_;
}

// A digest over the names and contents of every file the loader would read.
absl::StatusOr<std::string> PolicyWatcher::Fingerprint() const {
  std::vector<std::string> files;
  for (const auto& p : options_.paths) {
    std::error_code ec;
    if (std::filesystem::is_directory(p, ec)) {
      for (const auto& e : std::filesystem::directory_iterator(p, ec)) {
        const std::string name = e.path().filename().string();
        if (name.empty() || name[0] == '.') continue;
        if (absl::EndsWith(name, ".yaml") || absl::EndsWith(name, ".yml") || absl::EndsWith(name, ".json")) {
          files.push_back(e.path().string());
        }
      }
    } else {
      files.push_back(p);
    }
  }
  std::sort(files.begin(), files.end());
  Sha256Hasher digest;
  for (const auto& f : files) {
    auto content = ReadFile(f, options_.load.read.max_file_bytes);
    digest.Update(absl::StrCat(f, "\n", content.ok() ? *content : content.status().ToString(), "\n"));
  }
  return digest.HexDigest();
}

absl::StatusOr<std::shared_ptr<const authz::PolicyEngine>> PolicyWatcher::Build() const {
  rbac::Diagnostics diag;
  auto set = authz::LoadPolicySet(options_.paths, options_.load, diag);
  for (const auto& d : diag.warnings()) logger_->warn("policy: {}", d.ToString());
  if (!set.ok()) {
    for (const auto& d : diag.errors()) logger_->error("policy: {}", d.ToString());
    return set.status();
  }
  auto engine = authz::PolicyEngine::Create(std::move(*set), clock_, options_.engine);
  if (!engine.ok()) return engine.status();
  for (const auto& w : (*engine)->warnings()) logger_->warn("policy: {}", w);
  return engine;
}

absl::Status PolicyWatcher::Poll() {
  absl::MutexLock poll_lock(&poll_mu_);
  auto fp = Fingerprint();
  if (!fp.ok()) return fp.status();
  {
    absl::MutexLock lock(&mu_);
    if (*fp == fingerprint_) return absl::OkStatus();
    if (*fp == failed_fingerprint_) return absl::InvalidArgumentError(last_error_);  // reported once already
  }
  auto engine = Build();
  absl::MutexLock lock(&mu_);
  if (!engine.ok()) {
    failed_fingerprint_ = *fp;
    last_error_ = std::string(engine.status().message());
    reloads_failed_.Increment();
    logger_->error("policy reload failed; keeping configuration generation {} in force", generation_);
    return engine.status();
  }
  engine_ = std::move(*engine);
  fingerprint_ = *fp;
  failed_fingerprint_.clear();
  last_error_.clear();
  ++generation_;
  reloads_ok_.Increment();
  logger_->info("policy reloaded (generation {})", generation_);
  return absl::OkStatus();
}

void PolicyWatcher::Start() {
  if (thread_.joinable()) return;
  thread_ = std::thread([this] {
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        if (mu_.AwaitWithTimeout(absl::Condition(&stop_), options_.interval)) return;
      }
      (void)Poll();
    }
  });
}

}  // namespace meshid::policy
