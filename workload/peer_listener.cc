#include "workload/peer_listener.h"

#include <fcntl.h>
#include <grpcpp/server.h>
#include <grpcpp/server_posix.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "common/files.h"
#include "common/status_macros.h"
#include "workload/proc.h"

namespace meshid::workload {
namespace {

sockaddr_un UnixAddress(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.data(), path.size());
  return address;
}

bool SocketIsLive(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return false;
  const sockaddr_un address = UnixAddress(path);
  return ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0;
}

// Takes `path` for this process: the lock, then a stale socket file removed. Returns the lock.
absl::StatusOr<UniqueFd> AcquirePath(const std::string& path) {
  const std::string parent = std::filesystem::path(path).parent_path().string();
  if (!parent.empty()) MESHID_RETURN_IF_ERROR(EnsureDirectory(parent, 0755));
  const std::string lock_path = path + ".lock";
  UniqueFd lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock.valid()) return ErrnoStatus(errno, lock_path);
  if (::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
    return absl::FailedPreconditionError(absl::StrCat("another process holds ", lock_path, ": it serves ", path));
  }
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return absl::FailedPreconditionError(absl::StrCat(path, " exists and is not a socket; refusing to replace it"));
    }
    if (SocketIsLive(path)) return absl::FailedPreconditionError(absl::StrCat("another server is listening on ", path));
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoStatus(errno, path);
  } else if (errno != ENOENT) {
    return ErrnoStatus(errno, path);
  }
  return lock;
}

// A socket bound to `path` with `mode` (and `group`) applied before it listens: until listen(),
// a connect() is refused, so no connection arrives under the mode bind() left.
absl::StatusOr<UniqueFd> Listen(const PeerListenerOptions& options) {
  const std::string& path = options.socket_path;
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoStatus(errno, absl::StrCat(path, ": socket"));
  const sockaddr_un address = UnixAddress(path);
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    return ErrnoStatus(errno, absl::StrCat(path, ": bind"));
  }
  auto fail = [&](absl::string_view what) {
    absl::Status status = ErrnoStatus(errno, absl::StrCat(path, ": ", what));
    ::unlink(path.c_str());
    return status;
  };
  if (options.socket_group.has_value() && ::chown(path.c_str(), static_cast<uid_t>(-1), *options.socket_group) != 0) {
    return fail(absl::StrCat("chown to group ", *options.socket_group));
  }
  if (::chmod(path.c_str(), static_cast<mode_t>(options.socket_mode)) != 0) return fail("chmod");
  if (::listen(fd.get(), options.backlog) != 0) return fail("listen");
  return fd;
}

absl::Status ValidateOptions(const PeerListenerOptions& options) {
  if (options.socket_path.empty()) return absl::InvalidArgumentError("socket_path: empty");
  if (options.socket_path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("socket_path: \"", options.socket_path, "\" is longer than ",
                                                   sizeof(sockaddr_un{}.sun_path) - 1, " bytes"));
  }
  if (options.socket_mode < 0 || options.socket_mode > 0777) {
    return absl::InvalidArgumentError(absl::StrCat("socket_mode: 0", absl::StrFormat("%o", options.socket_mode),
                                                   " is not a permission mode (0 to 0777)"));
  }
  if (options.backlog <= 0) return absl::InvalidArgumentError("backlog: must be at least 1");
  if (options.sweep_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("sweep_interval: must be positive");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<PeerProcess> PeerRegistry::Lookup(absl::string_view peer) const {
  int fd = -1;
  absl::string_view number = peer;
  if (!absl::ConsumePrefix(&number, "fd:") || number.empty() ||
      !std::all_of(number.begin(), number.end(), absl::ascii_isdigit) || !absl::SimpleAtoi(number, &fd)) {
    return absl::NotFoundError(absl::StrCat("peer \"", peer, "\" is not a connection a PeerListener accepted"));
  }
  absl::ReaderMutexLock lock(&mu_);
  auto it = entries_.find(fd);
  struct stat st {};
  if (it == entries_.end() || ::fstat(fd, &st) != 0 || st.st_dev != it->second.device ||
      st.st_ino != it->second.inode) {
    return absl::NotFoundError(absl::StrCat("no open connection on fd ", fd));
  }
  return it->second.peer;
}

absl::Status PeerRegistry::Register(int fd, PeerProcess peer) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return ErrnoStatus(errno, absl::StrCat("fd ", fd));
  absl::MutexLock lock(&mu_);
  entries_.insert_or_assign(fd, Entry{.device = st.st_dev, .inode = st.st_ino, .peer = std::move(peer)});
  return absl::OkStatus();
}

size_t PeerRegistry::Sweep() {
  absl::MutexLock lock(&mu_);
  return absl::erase_if(entries_, [](const auto& item) {
    struct stat st {};
    return ::fstat(item.first, &st) != 0 || st.st_dev != item.second.device || st.st_ino != item.second.inode;
  });
}

size_t PeerRegistry::size() const {
  absl::ReaderMutexLock lock(&mu_);
  return entries_.size();
}

absl::StatusOr<std::unique_ptr<PeerListener>> PeerListener::Create(const PeerListenerOptions& options,
                                                                   PeerRegistry& registry, grpc::Server& server,
                                                                   MetricsRegistry& metrics, LoggerPtr logger) {
  MESHID_RETURN_IF_ERROR(ValidateOptions(options));
  MESHID_ASSIGN_OR_RETURN(UniqueFd lock, AcquirePath(options.socket_path));
  UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake.valid()) return ErrnoStatus(errno, "eventfd");
  MESHID_ASSIGN_OR_RETURN(UniqueFd listening, Listen(options));
  return std::unique_ptr<PeerListener>(new PeerListener(options, registry, server, metrics, std::move(logger),
                                                        std::move(lock), std::move(listening), std::move(wake)));
}

PeerListener::PeerListener(const PeerListenerOptions& options, PeerRegistry& registry, grpc::Server& server,
                           MetricsRegistry& metrics, LoggerPtr logger, UniqueFd lock, UniqueFd listening, UniqueFd wake)
    : options_(options),
      registry_(registry),
      server_(server),
      accepted_(metrics.AddCounter("meshid_agent_workload_connections_total",
                                   "Connections to the workload socket by result.", {{"result", "accepted"}})),
      refused_(metrics.AddCounter("meshid_agent_workload_connections_total",
                                  "Connections to the workload socket by result.", {{"result", "refused"}})),
      peers_(metrics.AddGauge("meshid_agent_workload_peers", "Connections in the peer registry.")),
      logger_(std::move(logger)),
      lock_(std::move(lock)),
      listening_(std::move(listening)),
      wake_(std::move(wake)) {
  thread_ = std::thread([this] { Run(); });
}

PeerListener::~PeerListener() {
  const uint64_t one = 1;
  // An eventfd write of 1 cannot fail or block here (the counter is far from its maximum).
  [[maybe_unused]] const ssize_t written = ::write(wake_.get(), &one, sizeof(one));
  thread_.join();
  ::unlink(options_.socket_path.c_str());
}

void PeerListener::Run() {
  const auto interval = absl::ToChronoMilliseconds(options_.sweep_interval);
  auto next_sweep = std::chrono::steady_clock::now() + interval;
  while (true) {
    const auto wait =
        std::chrono::duration_cast<std::chrono::milliseconds>(next_sweep - std::chrono::steady_clock::now());
    pollfd fds[2] = {{.fd = listening_.get(), .events = POLLIN, .revents = 0},
                     {.fd = wake_.get(), .events = POLLIN, .revents = 0}};
    const int ready = ::poll(fds, 2, static_cast<int>(std::clamp<int64_t>(wait.count(), 0, 1 << 30)));
    if (ready < 0 && errno != EINTR) {
      logger_->error("workload socket {}: poll: {}", options_.socket_path, std::strerror(errno));
      return;
    }
    if (fds[1].revents != 0) return;
    if ((fds[0].revents & POLLIN) != 0 && !AcceptAll()) return;
    if (std::chrono::steady_clock::now() >= next_sweep) {
      registry_.Sweep();
      peers_.Set(static_cast<double>(registry_.size()));
      next_sweep = std::chrono::steady_clock::now() + interval;
    }
  }
}

bool PeerListener::AcceptAll() {
  while (true) {
    UniqueFd connection(::accept4(listening_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (connection.valid()) {
      Accepted(std::move(connection));
      continue;
    }
    switch (errno) {
      case EAGAIN:
        return true;
      case EINTR:
      case ECONNABORTED:
        continue;
      case EMFILE:
      case ENFILE:
      case ENOBUFS:
      case ENOMEM: {
        // Out of descriptors or memory: the backlog stays readable, so wait a little (or until
        // stopped) instead of spinning, and try again.
        logger_->warn("workload socket {}: accept: {}", options_.socket_path, std::strerror(errno));
        pollfd wake{.fd = wake_.get(), .events = POLLIN, .revents = 0};
        return ::poll(&wake, 1, 100) == 0;
      }
      default:
        logger_->error("workload socket {}: accept: {}; no longer accepting", options_.socket_path,
                       std::strerror(errno));
        return false;
    }
  }
}

void PeerListener::Accepted(UniqueFd connection) {
  // Taken first: the pinned process must have started before this (workload/peer_process.h).
  const uint64_t accepted_at = BoottimeTicks();
  auto peer = PinPeer(connection.get(), accepted_at, options_.pin_method);
  absl::Status registered = peer.ok() ? registry_.Register(connection.get(), *peer) : peer.status();
  if (!registered.ok()) {
    refused_.Increment();
    logger_->info("workload socket {}: connection refused: {}", options_.socket_path, registered);
    return;  // closes the connection
  }
  accepted_.Increment();
  peers_.Set(static_cast<double>(registry_.size()));
  // gRPC owns the descriptor from here and closes it when the connection is done.
  grpc::AddInsecureChannelFromFd(&server_, connection.Release());
}

}  // namespace meshid::workload
