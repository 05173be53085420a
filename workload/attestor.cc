#include "workload/attestor.h"

#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/selector.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "workload/proc.h"

namespace meshid::workload {
namespace {

// /proc/<pid>/status is about 1.5 KiB; 65536 groups of up to 11 bytes each fit in 1 MiB.
constexpr size_t kMaxStatusBytes = 1 << 20;
constexpr size_t kMaxSelectorNameBytes = 256;

absl::Status CallerExited(pid_t pid) {
  return absl::PermissionDeniedError(absl::StrCat("the caller (pid ", pid, ") exited during attestation"));
}

// A user or group name as common/selector.h accepts it: [A-Za-z0-9._-], a trailing "$" allowed.
bool ValidSelectorName(absl::string_view name) {
  if (name.empty() || name.size() > kMaxSelectorNameBytes) return false;
  if (name.back() == '$') name.remove_suffix(1);
  if (name.empty()) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
  });
}

// An executable path as common/selector.h accepts it (the kernel's names are canonical, but a
// file outside this process's root or a memfd is shown otherwise).
bool ValidSelectorPath(absl::string_view path) {
  return absl::StartsWith(path, "/") && !absl::StrContains(path, absl::string_view("\0", 1)) &&
         !absl::StrContains(path, "//") && !absl::StrContains(path, "/./") && !absl::StrContains(path, "/../") &&
         !absl::EndsWith(path, "/.") && !absl::EndsWith(path, "/..") &&
         path.size() + std::strlen("unix:path:") <= kMaxSelectorLength;
}

// getpwuid_r / getgrgid_r with a buffer that grows on ERANGE. nullopt: no entry.
template <typename Entry, typename Lookup>
absl::StatusOr<std::optional<std::string>> LookUpName(Lookup lookup, uint32_t id, absl::string_view what) {
  std::string buffer(1024, '\0');
  while (true) {
    Entry entry{};
    Entry* found = nullptr;
    const int err = lookup(id, &entry, buffer.data(), buffer.size(), &found);
    if (err == ERANGE && buffer.size() < (size_t{1} << 24)) {
      buffer.resize(buffer.size() * 4);
      continue;
    }
    // "Not found" is 0 with no entry, though some NSS modules report ENOENT, ESRCH, EBADF or
    // EPERM for it (getpwuid_r(3)).
    if (err == 0 || err == ENOENT || err == ESRCH || err == EBADF || err == EPERM) {
      if (found == nullptr) return std::optional<std::string>();
      if constexpr (std::is_same_v<Entry, passwd>) return std::optional<std::string>(found->pw_name);
      if constexpr (std::is_same_v<Entry, group>) return std::optional<std::string>(found->gr_name);
    }
    return absl::UnavailableError(absl::StrCat("looking up the name of ", what, " ", id, ": ", std::strerror(err)));
  }
}

int64_t Nanoseconds(const timespec& t) { return int64_t{t.tv_sec} * 1000000000 + t.tv_nsec; }

}  // namespace

absl::StatusOr<std::unique_ptr<WorkloadAttestor>> WorkloadAttestor::Create(AttestorOptions options,
                                                                           MetricsRegistry& metrics) {
  if (options.digest_cache_entries == 0) {
    return absl::InvalidArgumentError("digest_cache_entries: must be at least 1");
  }
  return std::unique_ptr<WorkloadAttestor>(new WorkloadAttestor(std::move(options), metrics));
}

WorkloadAttestor::WorkloadAttestor(AttestorOptions options, MetricsRegistry& metrics)
    : options_(std::move(options)),
      metrics_{
          .ok = metrics.AddCounter("meshid_agent_workload_attestations_total", "Workload attestations by result.",
                                   {{"result", "ok"}}),
          .exited = metrics.AddCounter("meshid_agent_workload_attestations_total", "Workload attestations by result.",
                                       {{"result", "exited"}}),
          .error = metrics.AddCounter("meshid_agent_workload_attestations_total", "Workload attestations by result.",
                                      {{"result", "error"}}),
          .seconds =
              metrics.AddHistogram("meshid_agent_workload_attestation_seconds", "Time to attest a workload from /proc.",
                                   {0.00001, 0.00002, 0.00005, 0.0001, 0.001, 0.01, 0.1, 1}),
          .digest_hits = metrics.AddCounter("meshid_agent_workload_executable_digests_total",
                                            "Executable digests by cache result.", {{"cache", "hit"}}),
          .digest_misses = metrics.AddCounter("meshid_agent_workload_executable_digests_total",
                                              "Executable digests by cache result.", {{"cache", "miss"}}),
          .name_hits = metrics.AddCounter("meshid_agent_workload_name_lookups_total",
                                          "User and group names by cache result.", {{"cache", "hit"}}),
          .name_misses = metrics.AddCounter("meshid_agent_workload_name_lookups_total",
                                            "User and group names by cache result.", {{"cache", "miss"}}),
      } {}

size_t WorkloadAttestor::cached_digests() const {
  absl::MutexLock lock(&mu_);
  return digests_.size();
}

absl::StatusOr<WorkloadAttributes> WorkloadAttestor::Attest(const PeerProcess& peer) const {
  const auto start = std::chrono::steady_clock::now();
  auto attributes = AttestUntimed(peer);
  metrics_.seconds.Observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  if (attributes.ok()) {
    metrics_.ok.Increment();
  } else if (peer.process->Exited()) {
    metrics_.exited.Increment();
  } else {
    metrics_.error.Increment();
  }
  return attributes;
}

absl::StatusOr<WorkloadAttributes> WorkloadAttestor::AttestUntimed(const PeerProcess& peer) const {
  const PinnedProcess& process = *peer.process;
  const pid_t pid = process.pid();
  const std::string proc_path = absl::StrCat("/proc/", pid);
  // A failure to read /proc is most often the caller having exited; say so when it is.
  auto failed = [&](const absl::Status& status) { return process.Exited() ? CallerExited(pid) : status; };

  auto dir = OpenProcDir(pid);
  if (!dir.ok()) return failed(dir.status());
  auto status_text = ReadFileAt(dir->get(), proc_path, "status", kMaxStatusBytes);
  if (!status_text.ok()) return failed(status_text.status());
  auto executable = ReadExecutable(dir->get(), proc_path);
  if (!executable.ok()) return failed(executable.status());

  if (options_.after_proc_read) options_.after_proc_read(pid);
  // The pinned process still runs, so it ran when `dir` was opened: its pid could not have been
  // given to another process by then, and `dir` (bound to the process it was opened for) is the
  // caller's. Everything read through it is the caller's.
  if (process.Exited()) return CallerExited(pid);

  auto ids = ParseProcStatus(*status_text);
  if (!ids.ok()) return absl::InternalError(absl::StrCat(proc_path, "/status: ", ids.status().message()));

  WorkloadAttributes out;
  out.pid = pid;
  out.uid = ids->real_uid;
  out.gid = ids->real_gid;
  out.supplementary_gids = std::move(ids->groups);
  out.executable_path = std::move(executable->path);
  out.executable_sha256 = std::move(executable->sha256);

  std::vector<gid_t> gids = out.supplementary_gids;
  gids.push_back(out.gid);
  std::sort(gids.begin(), gids.end());
  gids.erase(std::unique(gids.begin(), gids.end()), gids.end());
  std::map<gid_t, std::optional<std::string>> group_names;
  MESHID_RETURN_IF_ERROR(LookUpNames(out.uid, gids, out.user_name, group_names));
  if (out.user_name.has_value() && !ValidSelectorName(*out.user_name)) out.user_name.reset();
  for (auto& [gid, name] : group_names) {
    if (name.has_value() && ValidSelectorName(*name)) out.group_names.emplace(gid, *std::move(name));
  }

  std::vector<std::string>& selectors = out.selectors;
  selectors.push_back(absl::StrCat("unix:uid:", out.uid));
  if (out.user_name.has_value()) selectors.push_back(absl::StrCat("unix:user:", *out.user_name));
  for (gid_t gid : gids) selectors.push_back(absl::StrCat("unix:gid:", gid));
  for (const auto& [gid, name] : out.group_names) selectors.push_back(absl::StrCat("unix:group:", name));
  if (out.executable_path.has_value()) selectors.push_back(absl::StrCat("unix:path:", *out.executable_path));
  if (out.executable_sha256.has_value()) selectors.push_back(absl::StrCat("unix:sha256:", *out.executable_sha256));
  std::sort(selectors.begin(), selectors.end());
  selectors.erase(std::unique(selectors.begin(), selectors.end()), selectors.end());
  return out;
}

WorkloadAttestor::FileStamp WorkloadAttestor::StampOf(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return FileStamp{};  // a missing file's appearance is a change too
  return FileStamp{.device = st.st_dev, .inode = st.st_ino, .size = st.st_size, .mtime_ns = Nanoseconds(st.st_mtim)};
}

absl::Status WorkloadAttestor::LookUpNames(uid_t uid, const std::vector<gid_t>& gids,
                                           std::optional<std::string>& user_name,
                                           std::map<gid_t, std::optional<std::string>>& group_names) const {
  const absl::Duration ttl = options_.name_cache_ttl;
  if (ttl <= absl::ZeroDuration()) {
    metrics_.name_misses.Increment(static_cast<double>(1 + gids.size()));
    MESHID_ASSIGN_OR_RETURN(user_name, LookUpName<passwd>(::getpwuid_r, uid, "uid"));
    for (gid_t gid : gids) {
      MESHID_ASSIGN_OR_RETURN(group_names[gid], LookUpName<group>(::getgrgid_r, gid, "gid"));
    }
    return absl::OkStatus();
  }
  const FileStamp passwd_stamp = StampOf(options_.passwd_file);
  const FileStamp group_stamp = StampOf(options_.group_file);
  const absl::Time now = absl::Now();
  // Looked up outside the lock (NSS may be slow), then remembered; errors are not remembered.
  auto cached = [&](auto& map, uint32_t id) -> const CachedName* {
    auto it = map.find(id);
    return it != map.end() && now - it->second.looked_up < ttl ? &it->second : nullptr;
  };
  std::optional<CachedName> user;
  std::vector<gid_t> missing_gids;
  {
    absl::MutexLock lock(&names_mu_);
    if (!(names_.passwd == passwd_stamp) || !(names_.group == group_stamp)) {
      names_ = NameCache{.passwd = passwd_stamp, .group = group_stamp, .users = {}, .groups = {}};
    }
    if (const CachedName* hit = cached(names_.users, uid)) user = *hit;
    for (gid_t gid : gids) {
      if (const CachedName* hit = cached(names_.groups, gid)) {
        group_names[gid] = hit->name;
      } else {
        missing_gids.push_back(gid);
      }
    }
  }
  std::optional<std::optional<std::string>> looked_up_user;
  if (!user.has_value()) {
    MESHID_ASSIGN_OR_RETURN(looked_up_user, LookUpName<passwd>(::getpwuid_r, uid, "uid"));
    user = CachedName{.name = *looked_up_user, .looked_up = now};
  }
  user_name = user->name;
  const size_t misses = (looked_up_user.has_value() ? 1 : 0) + missing_gids.size();
  metrics_.name_misses.Increment(static_cast<double>(misses));
  metrics_.name_hits.Increment(static_cast<double>(1 + gids.size() - misses));
  for (gid_t gid : missing_gids) {
    MESHID_ASSIGN_OR_RETURN(group_names[gid], LookUpName<group>(::getgrgid_r, gid, "gid"));
  }
  if (looked_up_user.has_value() || !missing_gids.empty()) {
    absl::MutexLock lock(&names_mu_);
    if (names_.passwd == passwd_stamp && names_.group == group_stamp) {
      if (looked_up_user.has_value()) names_.users[uid] = *user;
      for (gid_t gid : missing_gids) names_.groups[gid] = CachedName{.name = group_names[gid], .looked_up = now};
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<WorkloadAttestor::Executable> WorkloadAttestor::ReadExecutable(int proc_dir,
                                                                              const std::string& proc_path) const {
  const std::string exe_path = absl::StrCat(proc_path, "/exe");
  Executable out;
  // Opened through /proc/<pid>/exe, not by its path: the file the process runs, even if another
  // file has been put at that path since.
  UniqueFd exe(::openat(proc_dir, "exe", O_RDONLY | O_CLOEXEC));
  if (!exe.valid()) {
    // A kernel thread or a zombie has no executable: no path or digest to report.
    if (errno == ENOENT) return out;
    return ErrnoStatus(errno, exe_path);
  }
  struct stat opened {};
  if (::fstat(exe.get(), &opened) != 0) return ErrnoStatus(errno, exe_path);
  // Deleted or replaced on disk (the kernel then shows "<path> (deleted)"): the path names
  // another file or none, and whatever the digest says cannot be compared with a file anyone
  // can inspect. A memfd has no link either.
  if (opened.st_nlink == 0 || !S_ISREG(opened.st_mode)) return out;

  char target[PATH_MAX + 1];
  const ssize_t length = ::readlinkat(proc_dir, "exe", target, sizeof(target));
  if (length < 0) return ErrnoStatus(errno, exe_path);
  // The process may have executed another program between the open and the readlink; then the
  // path and the digest would describe different files.
  struct stat now {};
  if (::fstatat(proc_dir, "exe", &now, 0) != 0) return ErrnoStatus(errno, exe_path);
  if (now.st_dev != opened.st_dev || now.st_ino != opened.st_ino) {
    return absl::AbortedError(absl::StrCat(exe_path, ": the caller executed another program during attestation"));
  }
  // The path only if it names, for this agent, the very file the process runs: not a file put
  // there since (the kernel shows the name the file was opened by, with " (deleted)" appended once
  // that name is gone, even when another link keeps the file), nor one from another mount
  // namespace that is not reachable from here.
  const std::string path(target, static_cast<size_t>(length));
  struct stat named {};
  if (static_cast<size_t>(length) < sizeof(target) && ValidSelectorPath(path) && ::stat(path.c_str(), &named) == 0 &&
      named.st_dev == opened.st_dev && named.st_ino == opened.st_ino) {
    out.path = path;
  }

  if (static_cast<uint64_t>(opened.st_size) <= options_.max_executable_bytes) {
    const FileKey key{.device = opened.st_dev,
                      .inode = opened.st_ino,
                      .size = opened.st_size,
                      .mtime_ns = Nanoseconds(opened.st_mtim),
                      .ctime_ns = Nanoseconds(opened.st_ctim)};
    MESHID_ASSIGN_OR_RETURN(out.sha256, Digest(exe.get(), key, exe_path));
  }
  return out;
}

absl::StatusOr<std::string> WorkloadAttestor::Digest(int executable_fd, const FileKey& key,
                                                     const std::string& proc_path) const {
  {
    absl::MutexLock lock(&mu_);
    auto it = digests_.find(key);
    if (it != digests_.end()) {
      metrics_.digest_hits.Increment();
      return it->second;
    }
  }
  metrics_.digest_misses.Increment();
  Sha256Hasher hasher;
  std::string buffer(1 << 16, '\0');
  off_t offset = 0;
  while (true) {
    const ssize_t n = ::pread(executable_fd, buffer.data(), buffer.size(), offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, proc_path);
    }
    if (n == 0) break;
    hasher.Update(absl::string_view(buffer.data(), static_cast<size_t>(n)));
    offset += n;
  }
  // A file written while it was hashed (a running executable usually cannot be, ETXTBSY, but
  // not every file system refuses) would be cached under a key that no longer describes it.
  struct stat after {};
  if (::fstat(executable_fd, &after) != 0) return ErrnoStatus(errno, proc_path);
  if (offset != key.size || after.st_size != key.size || Nanoseconds(after.st_mtim) != key.mtime_ns ||
      Nanoseconds(after.st_ctim) != key.ctime_ns) {
    return absl::AbortedError(absl::StrCat(proc_path, ": the executable changed while it was read"));
  }
  std::string digest = hasher.HexDigest();
  absl::MutexLock lock(&mu_);
  if (digests_.size() >= options_.digest_cache_entries) digests_.erase(digests_.begin());
  digests_.emplace(key, digest);
  return digest;
}

}  // namespace meshid::workload
