#include "common/files.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace meshid {

absl::StatusOr<std::string> ReadFile(const std::string& path, size_t max_bytes) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    std::string msg = absl::StrCat(path, ": ", strerror(err));
    return err == ENOENT ? absl::NotFoundError(msg) : absl::PermissionDeniedError(msg);
  }
  std::string out;
  char buf[16384];
  while (true) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      close(fd);
      return absl::InternalError(absl::StrCat(path, ": ", strerror(err)));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > max_bytes) {
      close(fd);
      return absl::InvalidArgumentError(absl::StrCat(path, ": larger than ", max_bytes, " bytes"));
    }
  }
  close(fd);
  return out;
}

absl::StatusOr<std::string> ReadTrustBundleFiles(const std::string& path, const std::string& optional_path,
                                                 size_t max_bytes) {
  MESHID_ASSIGN_OR_RETURN(std::string bundle, ReadFile(path, max_bytes));
  if (optional_path.empty()) return bundle;
  auto pushed = ReadFile(optional_path, max_bytes);
  if (absl::IsNotFound(pushed.status())) return bundle;
  if (!pushed.ok()) return pushed.status();
  if (!bundle.empty() && bundle.back() != '\n') bundle.push_back('\n');
  return bundle + *pushed;
}

absl::Status WriteFileAtomic(const std::string& path, absl::string_view content, int mode) {
  std::string tmp = absl::StrCat(path, ".tmp.", getpid());
  // A new file of our own (a leftover of a crash is removed first; a symlink is never
  // followed), so `mode` holds from its first byte and nobody else holds it open.
  unlink(tmp.c_str());
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0) return absl::PermissionDeniedError(absl::StrCat(tmp, ": ", strerror(errno)));
  fchmod(fd, static_cast<mode_t>(mode));  // the umask may have narrowed it
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      close(fd);
      unlink(tmp.c_str());
      return absl::InternalError(absl::StrCat(tmp, ": ", strerror(err)));
    }
    done += static_cast<size_t>(n);
  }
  if (fsync(fd) != 0 || close(fd) != 0) {
    unlink(tmp.c_str());
    return absl::InternalError(absl::StrCat(tmp, ": ", strerror(errno)));
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    unlink(tmp.c_str());
    return absl::InternalError(absl::StrCat(path, ": ", strerror(err)));
  }
  return absl::OkStatus();
}

absl::Status EnsureDirectory(const std::string& path, int mode) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return absl::OkStatus();
  std::filesystem::create_directories(path, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat(path, ": ", ec.message()));
  chmod(path.c_str(), static_cast<mode_t>(mode));
  return absl::OkStatus();
}

}  // namespace meshid
