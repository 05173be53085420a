#include "workload/peer_process.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "workload/proc.h"

// Linux 6.5; Debian 12's glibc headers predate it.
#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

namespace meshid::workload {
namespace {

std::string PeerPid(pid_t pid) { return absl::StrCat("peer pid ", pid); }

// kPidfdOpen: pins SO_PEERCRED's pid, then refuses it if that pid now names a process that
// started after the accept (the peer exited and its pid was reused before pidfd_open).
absl::StatusOr<std::shared_ptr<const PinnedProcess>> PinByPid(pid_t pid, uint64_t accepted_at_ticks) {
  auto pinned = PinnedProcess::Open(pid);
  if (!pinned.ok()) return pinned.status();
  auto dir = OpenProcDir(pid);
  absl::StatusOr<std::string> stat = dir.ok() ? ReadFileAt(dir->get(), absl::StrCat("/proc/", pid), "stat", 4096)
                                              : absl::StatusOr<std::string>(dir.status());
  // Still running after the read: the pid named the pinned process while /proc was read.
  if ((*pinned)->Exited()) {
    return absl::PermissionDeniedError(absl::StrCat(PeerPid(pid), ": the process exited before it could be pinned"));
  }
  if (!stat.ok()) return absl::Status(stat.status().code(), absl::StrCat(PeerPid(pid), ": ", stat.status().message()));
  auto started = ParseProcStatStartTime(*stat);
  if (!started.ok()) {
    return absl::InternalError(absl::StrCat(PeerPid(pid), ": /proc/", pid, "/stat: ", started.status().message()));
  }
  if (*started > accepted_at_ticks) {
    return absl::PermissionDeniedError(absl::StrCat(PeerPid(pid), ": the process started (tick ", *started,
                                                    ") after the connection was accepted (tick ", accepted_at_ticks,
                                                    "): the peer exited and its pid was reused"));
  }
  return pinned;
}

}  // namespace

absl::StatusOr<std::shared_ptr<const PinnedProcess>> PinnedProcess::Open(pid_t pid) {
  // The system call itself: Debian 12's glibc (2.36) declares pidfd_open in <sys/pidfd.h>
  // without C linkage, so C++ cannot link to it.
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd.valid()) {
    const int err = errno;
    if (err == ESRCH) return absl::PermissionDeniedError(absl::StrCat(PeerPid(pid), ": no such process (it exited)"));
    const std::string message = absl::StrCat(PeerPid(pid), ": pidfd_open: ", std::strerror(err));
    if (err == EINVAL) return absl::InvalidArgumentError(message);
    return absl::InternalError(message);
  }
  return std::make_shared<const PinnedProcess>(pid, std::move(pidfd));
}

bool PinnedProcess::Exited() const {
  pollfd fd{.fd = pidfd_.get(), .events = POLLIN, .revents = 0};
  int n;
  do {
    n = ::poll(&fd, 1, 0);
  } while (n < 0 && errno == EINTR);
  return n != 0;  // readable (exited), or poll failed: fail closed
}

uint64_t BoottimeTicks() {
  timespec now{};
  ::clock_gettime(CLOCK_BOOTTIME, &now);  // cannot fail for a valid clock id and pointer
  const uint64_t ticks_per_second = static_cast<uint64_t>(::sysconf(_SC_CLK_TCK));
  return static_cast<uint64_t>(now.tv_sec) * ticks_per_second +
         static_cast<uint64_t>(now.tv_nsec) / (1000000000 / ticks_per_second);
}

absl::StatusOr<PeerProcess> PinPeer(int socket_fd, uint64_t accepted_at_ticks, PinMethod method) {
  ucred cred{};
  socklen_t length = sizeof(cred);
  if (::getsockopt(socket_fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) != 0 || length != sizeof(cred)) {
    return absl::InvalidArgumentError(absl::StrCat("SO_PEERCRED: ", std::strerror(errno)));
  }
  PeerProcess peer{.credentials = {.pid = cred.pid, .uid = cred.uid, .gid = cred.gid}, .process = nullptr};
  if (cred.pid <= 0) {
    return absl::PermissionDeniedError("the peer's process is not visible in this pid namespace (SO_PEERCRED pid 0)");
  }
  if (method == PinMethod::kPeerPidfd) {
    int pidfd = -1;
    length = sizeof(pidfd);
    if (::getsockopt(socket_fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &length) == 0) {
      peer.process = std::make_shared<const PinnedProcess>(cred.pid, UniqueFd(pidfd));
      return peer;
    }
    const int err = errno;
    if (err != ENOPROTOOPT) {
      // Some kernels give no pidfd for a peer that has already been reaped (EINVAL or ESRCH);
      // this one gives one whose process has exited, which attestation then refuses.
      if (err == ESRCH || err == EINVAL) {
        return absl::PermissionDeniedError(
            absl::StrCat(PeerPid(cred.pid), ": the process exited before it could be pinned"));
      }
      return absl::InternalError(absl::StrCat(PeerPid(cred.pid), ": SO_PEERPIDFD: ", std::strerror(err)));
    }
  }
  auto pinned = PinByPid(cred.pid, accepted_at_ticks);
  if (!pinned.ok()) return pinned.status();
  peer.process = *std::move(pinned);
  return peer;
}

}  // namespace meshid::workload
