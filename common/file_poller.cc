#include "common/file_poller.h"

#include "common/files.h"

namespace meshid {

FilePoller::FilePoller(std::string path, absl::Duration interval, std::function<void(const std::string&)> on_change)
    : path_(std::move(path)), interval_(interval), on_change_(std::move(on_change)) {
  thread_ = std::thread([this] { Loop(); });
}

FilePoller::~FilePoller() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

void FilePoller::Loop() {
  std::string last;
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      auto stopped = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_; };
      if (mu_.AwaitWithTimeout(absl::Condition(&stopped), interval_)) return;
    }
    auto content = ReadFile(path_, 1 << 20);
    if (content.ok() && *content != last) {
      last = *content;
      on_change_(last);
    }
  }
}

}  // namespace meshid
