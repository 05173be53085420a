// The process at the other end of an accepted Unix socket, pinned so that its pid cannot
// silently come to mean another process.
//
// SO_PEERCRED gives the peer's pid as of connect(); a pid is only a number, free for reuse once
// that process has exited and been reaped. A pidfd refers to the process itself: it never comes
// to mean another one, and it tells whether that process has exited. Attestation
// (workload/attestor.h) reads /proc/<pid> and then asks the pidfd whether the process is still
// running: if it is, the pid still named it while /proc was read.
//
// How the pidfd is obtained decides what is left of the race between connect() and pinning:
//  - SO_PEERPIDFD (Linux 6.5+): the kernel's own reference to the process that connected,
//    taken at connect(); nothing is left.
//  - pidfd_open(pid) (older kernels): between connect() and pidfd_open the peer could exit and
//    its pid be given to a new process, which would then be pinned instead. PinPeer refuses a
//    process that started after the connection was accepted (its start time in
//    /proc/<pid>/stat against the accept time, both CLOCK_BOOTTIME in clock ticks). What is
//    left: a process that started between the peer's connect() and the accept, or in the same
//    clock tick (10 ms) as the accept, and was given the exited peer's pid; the pid space
//    must wrap around to exactly that pid within that window, and the peer's socket must still
//    be open in some process for the connection to be used at all.
//
// Neither can tell who uses a connection after connect(): a peer may hand its socket to another
// process (by fork or SCM_RIGHTS), and it is still the connecting process that is attested, as
// long as it runs (SPIRE's unix attestor has the same model).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "workload/unique_fd.h"

namespace meshid::workload {

// A process pinned by a pidfd. Immutable; thread-safe.
class PinnedProcess {
 public:
  // pidfd_open(pid). PermissionDenied if no such process runs (it exited), InvalidArgument for a
  // pid that is not a process (a thread's id), Internal for any other failure.
  static absl::StatusOr<std::shared_ptr<const PinnedProcess>> Open(pid_t pid);
  // Takes `pidfd`, which refers to the process that `pid` named when the pidfd was made.
  PinnedProcess(pid_t pid, UniqueFd pidfd) : pid_(pid), pidfd_(std::move(pidfd)) {}

  pid_t pid() const { return pid_; }
  int pidfd() const { return pidfd_.get(); }

  // True once the process has exited (a zombie included): from then on, its pid may be given to
  // another process. A pidfd becomes readable when its process exits, so this is poll() with no
  // wait; it needs no permission over the process (unlike pidfd_send_signal, which a non-root
  // agent may not send to another user's process). A failing poll counts as exited, so that a
  // caller checking this fails closed.
  bool Exited() const;

 private:
  const pid_t pid_;
  const UniqueFd pidfd_;
};

// SO_PEERCRED: the peer's ids as of connect(), in this process's pid and user namespaces.
struct PeerCredentials {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
};

// An accepted connection's peer.
struct PeerProcess {
  PeerCredentials credentials;
  std::shared_ptr<const PinnedProcess> process;  // never null
};

enum class PinMethod {
  // SO_PEERPIDFD, and kPidfdOpen on a kernel without it (ENOPROTOOPT).
  kPeerPidfd,
  // pidfd_open on SO_PEERCRED's pid, refusing a process that started after the accept.
  kPidfdOpen,
};

// CLOCK_BOOTTIME in clock ticks (sysconf(_SC_CLK_TCK)): the clock and unit of the start time in
// /proc/<pid>/stat.
uint64_t BoottimeTicks();

// Reads SO_PEERCRED of the accepted Unix socket `socket_fd` and pins the peer.
// `accepted_at_ticks` is BoottimeTicks() taken right after accept() (used by kPidfdOpen).
// Errors: InvalidArgument if `socket_fd` is not a connected Unix socket; PermissionDenied if the
// peer's process is not visible in this pid namespace (pid 0), has exited, or (kPidfdOpen) its
// pid now names a process that started after the accept; Internal for other system failures.
// Every message starts "peer pid <N>" once the pid is known.
absl::StatusOr<PeerProcess> PinPeer(int socket_fd, uint64_t accepted_at_ticks,
                                    PinMethod method = PinMethod::kPeerPidfd);

}  // namespace meshid::workload
