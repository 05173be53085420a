// Real binaries run from tests: spawn with arguments, capture stdout and stderr in a file, wait
// for a log line or for the exit, and always kill the process when the handle goes away.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace meshid::testing {

// One child process. Not thread-safe; one owner.
class Subprocess {
 public:
  // Starts argv[0] (a path) with `argv`, the test's environment plus `extra_env` ("NAME=value"),
  // stdin from /dev/null and stdout+stderr into `log_path`. started() says whether it ran.
  Subprocess(std::vector<std::string> argv, std::string log_path, std::vector<std::string> extra_env = {});
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;
  // SIGKILL and reap.
  ~Subprocess();

  bool started() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  // Everything the process has written so far.
  std::string Log() const;

  // Waits until the log matches `pattern` and returns the first capture group (or the whole
  // match); nullopt when the process exits or `timeout` passes first.
  std::optional<std::string> WaitForLog(const std::string& pattern,
                                        std::chrono::seconds timeout = std::chrono::seconds(30));

  // Waits for the exit; returns the exit status (128+signal when killed), nullopt on timeout.
  std::optional<int> Wait(std::chrono::seconds timeout = std::chrono::seconds(30));

  // Sends `sig`; for SIGKILL also waits for the exit.
  void Kill(int sig);

 private:
  bool Exited();

  std::string log_path_;
  pid_t pid_ = -1;
  bool exited_ = false;
  int exit_code_ = -1;
};

// Runs `command` through /bin/sh to completion; returns (exit status, stdout+stderr). The status
// is -1 when the shell could not run or the command was killed.
std::pair<int, std::string> RunShell(const std::string& command);

}  // namespace meshid::testing
