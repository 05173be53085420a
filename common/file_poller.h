// Polling on a thread of its own: PollingThread runs a callback at a fixed interval (the server's
// reload of rotated files, ca/reloader.h), and FilePoller hands a file's content to a callback
// whenever it changed (the agent's --trust-anchors). An unreadable file is skipped until it can
// be read again.
#pragma once

#include <functional>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace meshid {

class PollingThread {
 public:
  // Starts a thread that calls `poll` every `interval` (the first call one interval from now).
  PollingThread(absl::Duration interval, std::function<void()> poll);
  ~PollingThread();  // stops and joins; a call in progress finishes first, none runs afterwards
  PollingThread(const PollingThread&) = delete;
  PollingThread& operator=(const PollingThread&) = delete;

 private:
  void Loop();

  const absl::Duration interval_;
  const std::function<void()> poll_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

class FilePoller {
 public:
  // Starts polling `path` every `interval`; `on_change` runs on the poller's thread with the new
  // content (up to 1 MiB), never for the content already seen.
  FilePoller(std::string path, absl::Duration interval, std::function<void(const std::string&)> on_change);

 private:
  void Poll();

  const std::string path_;
  const std::function<void(const std::string&)> on_change_;
  std::string last_;      // only the polling thread touches it
  PollingThread thread_;  // last: stopped (destroyed) before the fields it uses
};

}  // namespace meshid
