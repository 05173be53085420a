// Processes the workload tests attest: children that wait until released, a child given a
// chosen pid (the pid of a process that has exited, through /proc/sys/kernel/ns_last_pid, as
// root), and programs run with pipes to talk to them.
#pragma once

#include <sys/types.h>
#include <sys/un.h>

#include <optional>
#include <string>
#include <vector>

namespace meshid::testing {

// A forked copy of the test process that blocks until released (or killed). Async-signal-safe
// between fork and exit, so it may be forked while gRPC's threads run. Killed and reaped when
// the object goes away.
class BlockedChild {
 public:
  // pid() is -1 if fork failed (a test failure is recorded).
  BlockedChild();
  // A child that gets `wanted`, which must be free: ns_last_pid is set to wanted-1 before each
  // fork, for up to 100 attempts (any process or thread created meanwhile may take it). pid()
  // is -1 (and a failure recorded) if no attempt got it.
  static BlockedChild WithPid(pid_t wanted);
  // A child that connects to the Unix socket at `socket_path` (one that listens) and then waits;
  // it keeps the connection until it exits.
  static BlockedChild ConnectedTo(const std::string& socket_path);
  BlockedChild(BlockedChild&& other) noexcept;
  BlockedChild& operator=(BlockedChild&&) = delete;
  ~BlockedChild();

  pid_t pid() const { return pid_; }
  // Lets the child exit (status 0) and reaps it.
  void Release();
  // SIGKILL; waits until it has exited; reaps it unless `leave_zombie`.
  void Kill(bool leave_zombie = false);

 private:
  // Forks unless !start; the child connects to `connect_to` first when not null.
  explicit BlockedChild(bool start, const sockaddr_un* connect_to = nullptr);
  void Reap();
  pid_t pid_ = -1;
  int release_fd_ = -1;  // the write end of the pipe the child reads
  bool reaped_ = false;
};

// A program run with its stdin and stdout (stderr too) on pipes. Killed and reaped when the
// object goes away.
class PipedProcess {
 public:
  // posix_spawn of argv[0] (a path). pid() is -1 if it could not be started (failure recorded).
  explicit PipedProcess(std::vector<std::string> argv);
  PipedProcess(const PipedProcess&) = delete;
  PipedProcess& operator=(const PipedProcess&) = delete;
  ~PipedProcess();

  pid_t pid() const { return pid_; }
  void WriteLine(const std::string& line);
  // The next line of output; nullopt if the output ends first (a failure is recorded).
  std::optional<std::string> ReadLine();
  // The lines written up to (not including) a line equal to `end`; nullopt if the output ends
  // first (the process exited).
  std::optional<std::vector<std::string>> ReadUntil(const std::string& end);
  // Closes stdin and waits for the exit; the exit status (128+signal when killed).
  int Wait();

 private:
  pid_t pid_ = -1;
  int stdin_fd_ = -1;
  int stdout_fd_ = -1;
  std::string buffered_;
  bool reaped_ = false;
};

// Runs `command` through /bin/sh; true if it exited 0 (a failure is recorded with its output
// otherwise).
bool Shell(const std::string& command);

}  // namespace meshid::testing
