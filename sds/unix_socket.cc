#include "sds/unix_socket.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"

namespace meshid::sds {
namespace {

std::string Errno() { return std::strerror(errno); }

absl::Status MakeParents(const std::string& path) {
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (parent.empty()) return absl::OkStatus();
  std::error_code ec;
  if (std::filesystem::exists(parent, ec)) return absl::OkStatus();
  std::filesystem::create_directories(parent, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat("creating ", parent.string(), ": ", ec.message()));
  // New directories only: an existing one keeps the permissions its owner chose.
  // 0755: the socket file's own mode (0600/0660) is what guards connecting to it.
  std::filesystem::permissions(parent,
                               std::filesystem::perms::owner_all | std::filesystem::perms::group_read |
                                   std::filesystem::perms::group_exec | std::filesystem::perms::others_read |
                                   std::filesystem::perms::others_exec,
                               ec);
  return absl::OkStatus();
}

}  // namespace

bool UnixSocketIsLive(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path)) return false;
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const bool live = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return live;
}

absl::StatusOr<UnixSocketPath> UnixSocketPath::Acquire(const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError("the socket path is empty");
  if (path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("socket path \"", path, "\" is longer than ", sizeof(sockaddr_un{}.sun_path) - 1, " bytes"));
  }
  if (auto status = MakeParents(path); !status.ok()) return status;

  const std::string lock_path = path + ".lock";
  int lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd < 0) return absl::PermissionDeniedError(absl::StrCat("opening ", lock_path, ": ", Errno()));
  if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(lock_fd);
    return absl::FailedPreconditionError(
        absl::StrCat("another process holds ", lock_path, ": an agent is already serving ", path));
  }
  UnixSocketPath owned(path, lock_fd);

  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return absl::FailedPreconditionError(absl::StrCat(path, " exists and is not a socket; refusing to replace it"));
    }
    if (UnixSocketIsLive(path)) {
      return absl::FailedPreconditionError(absl::StrCat("another server is listening on ", path));
    }
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return absl::PermissionDeniedError(absl::StrCat("removing stale socket ", path, ": ", Errno()));
    }
  } else if (errno != ENOENT) {
    return absl::PermissionDeniedError(absl::StrCat("checking ", path, ": ", Errno()));
  }
  return owned;
}

UnixSocketPath::UnixSocketPath(UnixSocketPath&& other) noexcept
    : path_(std::move(other.path_)), lock_fd_(other.lock_fd_), bound_(other.bound_) {
  other.lock_fd_ = -1;
  other.bound_ = false;
}

UnixSocketPath::~UnixSocketPath() {
  if (lock_fd_ < 0) return;
  if (bound_) ::unlink(path_.c_str());
  ::close(lock_fd_);  // releases the flock; the lock file stays so the next owner can lock it
}

absl::Status UnixSocketPath::Bind(int mode, std::optional<gid_t> group, const std::function<absl::Status()>& bind) {
  const mode_t previous = ::umask(static_cast<mode_t>(~mode & 0777));
  absl::Status status = bind();
  ::umask(previous);
  if (!status.ok()) return status;
  bound_ = true;
  if (group.has_value() && ::chown(path_.c_str(), static_cast<uid_t>(-1), *group) != 0) {
    return absl::PermissionDeniedError(absl::StrCat("chown ", path_, " to group ", *group, ": ", Errno()));
  }
  if (::chmod(path_.c_str(), static_cast<mode_t>(mode)) != 0) {
    return absl::PermissionDeniedError(absl::StrCat("chmod ", path_, ": ", Errno()));
  }
  return absl::OkStatus();
}

}  // namespace meshid::sds
