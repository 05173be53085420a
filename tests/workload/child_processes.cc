#include "tests/workload/child_processes.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

extern char** environ;

namespace meshid::testing {
namespace {

void WriteAll(int fd, const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ADD_FAILURE() << "write: " << std::strerror(errno);
      return;
    }
    done += static_cast<size_t>(n);
  }
}

}  // namespace

BlockedChild::BlockedChild() : BlockedChild(true) {}

BlockedChild::BlockedChild(bool start, const sockaddr_un* connect_to) {
  if (!start) return;
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe2: " << std::strerror(errno);
    return;
  }
  pid_ = ::fork();
  if (pid_ == 0) {
    // Only async-signal-safe calls from here: the parent has other threads.
    ::close(pipe_fds[1]);
    if (connect_to != nullptr) {
      const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
      if (fd < 0 || ::connect(fd, reinterpret_cast<const sockaddr*>(connect_to), sizeof(*connect_to)) != 0) {
        ::_exit(1);
      }
    }
    char byte;
    while (::read(pipe_fds[0], &byte, 1) < 0 && errno == EINTR) {
    }
    ::_exit(0);
  }
  ::close(pipe_fds[0]);
  release_fd_ = pipe_fds[1];
  if (pid_ < 0) ADD_FAILURE() << "fork: " << std::strerror(errno);
}

BlockedChild BlockedChild::WithPid(pid_t wanted) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    if (::kill(wanted, 0) == 0 || errno != ESRCH) {
      ADD_FAILURE() << "pid " << wanted << " is taken";
      break;
    }
    const int fd = ::open("/proc/sys/kernel/ns_last_pid", O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
      ADD_FAILURE() << "/proc/sys/kernel/ns_last_pid: " << std::strerror(errno);
      break;
    }
    const std::string last = absl::StrCat(wanted - 1);
    const bool written = ::write(fd, last.data(), last.size()) == static_cast<ssize_t>(last.size());
    ::close(fd);
    if (!written) {
      ADD_FAILURE() << "writing /proc/sys/kernel/ns_last_pid: " << std::strerror(errno);
      break;
    }
    BlockedChild child(true);
    if (child.pid() == wanted || child.pid() < 0) return child;
    // Something else took the pid first; this child goes away with `child`.
  }
  ADD_FAILURE() << "could not fork a process with pid " << wanted;
  return BlockedChild(false);
}

BlockedChild BlockedChild::ConnectedTo(const std::string& socket_path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof(address.sun_path)) {
    ADD_FAILURE() << socket_path << " is too long for a socket path";
    return BlockedChild(false);
  }
  std::memcpy(address.sun_path, socket_path.data(), socket_path.size());
  return BlockedChild(true, &address);
}

BlockedChild::BlockedChild(BlockedChild&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      release_fd_(std::exchange(other.release_fd_, -1)),
      reaped_(std::exchange(other.reaped_, false)) {}

BlockedChild::~BlockedChild() {
  if (pid_ > 0 && !reaped_) Kill();
  if (pid_ > 0 && !reaped_) Reap();
  if (release_fd_ >= 0) ::close(release_fd_);
}

void BlockedChild::Release() {
  if (release_fd_ >= 0) ::close(std::exchange(release_fd_, -1));  // the child's read returns 0
  Reap();
}

void BlockedChild::Kill(bool leave_zombie) {
  if (pid_ <= 0 || reaped_) return;
  ::kill(pid_, SIGKILL);
  if (leave_zombie) {
    siginfo_t info{};
    while (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOWAIT) != 0 && errno == EINTR) {
    }
    return;
  }
  Reap();
}

void BlockedChild::Reap() {
  if (pid_ <= 0 || reaped_) return;
  while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
  }
  reaped_ = true;
}

PipedProcess::PipedProcess(std::vector<std::string> argv) {
  int in[2], out[2];
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe2: " << std::strerror(errno);
    return;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, out[1], 2);
  std::vector<char*> args;
  for (std::string& arg : argv) args.push_back(arg.data());
  args.push_back(nullptr);
  const int err = ::posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(in[0]);
  ::close(out[1]);
  stdin_fd_ = in[1];
  stdout_fd_ = out[0];
  if (err != 0) {
    pid_ = -1;
    ADD_FAILURE() << "posix_spawn " << argv[0] << ": " << std::strerror(err);
  }
}

PipedProcess::~PipedProcess() {
  if (pid_ > 0 && !reaped_) {
    ::kill(pid_, SIGKILL);
    while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  if (stdin_fd_ >= 0) ::close(stdin_fd_);
  if (stdout_fd_ >= 0) ::close(stdout_fd_);
}

void PipedProcess::WriteLine(const std::string& line) { WriteAll(stdin_fd_, line + "\n"); }

std::optional<std::string> PipedProcess::ReadLine() {
  while (true) {
    const size_t newline = buffered_.find('\n');
    if (newline != std::string::npos) {
      std::string line = buffered_.substr(0, newline);
      buffered_.erase(0, newline + 1);
      return line;
    }
    char buffer[4096];
    const ssize_t n = ::read(stdout_fd_, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ADD_FAILURE() << "the process's output ended; it wrote at last: " << buffered_;
      return std::nullopt;
    }
    buffered_.append(buffer, static_cast<size_t>(n));
  }
}

std::optional<std::vector<std::string>> PipedProcess::ReadUntil(const std::string& end) {
  std::vector<std::string> lines;
  while (true) {
    std::optional<std::string> line = ReadLine();
    if (!line.has_value()) {
      ADD_FAILURE() << "before \"" << end << "\" it wrote:\n" << absl::StrJoin(lines, "\n");
      return std::nullopt;
    }
    if (*line == end) return lines;
    lines.push_back(*std::move(line));
  }
}

int PipedProcess::Wait() {
  if (stdin_fd_ >= 0) ::close(std::exchange(stdin_fd_, -1));
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  reaped_ = true;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

bool Shell(const std::string& command) {
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) {
    ADD_FAILURE() << "popen: " << std::strerror(errno);
    return false;
  }
  std::string output;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) output.append(buffer, n);
  const int status = ::pclose(pipe);
  if (status != 0) ADD_FAILURE() << command << " failed (" << status << "):\n" << output;
  return status == 0;
}

}  // namespace meshid::testing
