// Taking over a Unix domain socket path safely: one owner at a time (an flock on
// "<path>.lock"), a stale socket file left by a dead server is removed, a live one is not,
// and the socket is created with the requested mode from the start.
#pragma once

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace meshid::sds {

class UnixSocketPath {
 public:
  // Creates missing parent directories (0755), takes the lock, and
  // checks `path`: absent is fine; a socket nobody accepts on is deleted; a live socket is
  // FailedPrecondition ("another server is listening"), anything that is not a socket too.
  static absl::StatusOr<UnixSocketPath> Acquire(const std::string& path);

  UnixSocketPath(UnixSocketPath&& other) noexcept;
  UnixSocketPath& operator=(UnixSocketPath&&) = delete;
  UnixSocketPath(const UnixSocketPath&) = delete;
  ~UnixSocketPath();  // removes the socket file and releases the lock

  // Runs `bind` (which creates the socket file) with the process umask narrowed to `mode`
  // (e.g. 0600 or 0660), then applies `mode` and `group` explicitly.
  absl::Status Bind(int mode, std::optional<gid_t> group, const std::function<absl::Status()>& bind);

  const std::string& path() const { return path_; }

 private:
  UnixSocketPath(std::string path, int lock_fd) : path_(std::move(path)), lock_fd_(lock_fd) {}
  std::string path_;
  int lock_fd_ = -1;
  bool bound_ = false;
};

// True if something accepts connections on the Unix socket at `path`.
bool UnixSocketIsLive(const std::string& path);

}  // namespace meshid::sds
