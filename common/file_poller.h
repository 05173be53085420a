// Polls a file on its own thread and hands its content to a callback whenever it changed (the
// agent's --trust-anchors). An unreadable file is skipped until it can be read again.
#pragma once

#include <functional>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace meshid {

class FilePoller {
 public:
  // Starts polling `path` every `interval`; `on_change` runs on the poller's thread with the new
  // content (up to 1 MiB), never for the content already seen.
  FilePoller(std::string path, absl::Duration interval, std::function<void(const std::string&)> on_change);
  ~FilePoller();  // stops and joins; no callback runs afterwards

 private:
  void Loop();

  const std::string path_;
  const absl::Duration interval_;
  const std::function<void(const std::string&)> on_change_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace meshid
