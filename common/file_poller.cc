#include "common/file_poller.h"

#include "common/files.h"

namespace meshid {

PollingThread::PollingThread(absl::Duration interval, std::function<void()> poll)
    : interval_(interval), poll_(std::move(poll)) {
  thread_ = std::thread([this] { Loop(); });
}

PollingThread::~PollingThread() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

void PollingThread::Loop() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      auto stopped = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_; };
      if (mu_.AwaitWithTimeout(absl::Condition(&stopped), interval_)) return;
    }
    poll_();
  }
}

FilePoller::FilePoller(std::string path, absl::Duration interval, std::function<void(const std::string&)> on_change)
    : path_(std::move(path)), on_change_(std::move(on_change)), thread_(interval, [this] { Poll(); }) {}

void FilePoller::Poll() {
  auto content = ReadFile(path_, 1 << 20);
  if (content.ok() && *content != last_) {
    last_ = *content;
    on_change_(last_);
  }
}

}  // namespace meshid
