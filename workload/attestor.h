// Attestation of a local caller from what the kernel says about it: the ids, groups and
// executable of the process at the other end of a Unix socket, and the selectors they make in
// the canonical forms of common/selector.h (SPIRE's unix workload attestor's kinds).
//
// The caller is named by a PeerProcess (workload/peer_process.h): its pid, pinned by a pidfd
// since the connection was accepted. Attest reads /proc/<pid> through one directory handle
// (which stays bound to the process it was opened for), then asks the pidfd whether the pinned
// process is still running. Only if it is can the pid not have been given to another process
// before the handle was opened, so only then is what was read the caller's; otherwise the
// result is discarded (the caller exited, and its pid may now name any process, whose /proc
// was read instead).
//
// What the kernel says is what the caller is at the time of the call: the real uid and gid (as
// SPIRE uses; a setuid program keeps its caller's real ids), the supplementary groups, and the
// executable now mapped (/proc/<pid>/exe: a process that has executed another program since it
// connected is that other program).
//
// A selector that cannot be formed is left out, never guessed: a name that is not a valid
// selector name (common/selector.h), an executable that has been deleted ("(deleted)"), a path
// that no longer names the file being run or is too long for a selector, an executable above
// AttestorOptions::max_executable_bytes (no unix:sha256). Leaving one out can only make fewer
// registration entries match, since an entry matches when all of its selectors are present.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/metrics.h"
#include "workload/peer_process.h"

namespace meshid::workload {

struct WorkloadAttributes {
  pid_t pid = 0;
  uid_t uid = 0;                             // real uid
  gid_t gid = 0;                             // real gid
  std::vector<gid_t> supplementary_gids;     // as the kernel lists them (the primary gid may be among them)
  std::optional<std::string> user_name;      // of `uid`, when it has one that is a valid selector name
  std::map<gid_t, std::string> group_names;  // of `gid` and each supplementary gid that has one
  // The path by which this agent reaches the executable; absent: deleted, no executable, the path
  // no longer names that file (replaced, or not reachable from here), or too long.
  std::optional<std::string> executable_path;
  std::optional<std::string> executable_sha256;  // lower-case hex; absent: deleted, none, too large
  // Canonical (common/selector.h), sorted, without duplicates.
  std::vector<std::string> selectors;
};

struct AttestorOptions {
  // Digests kept, keyed by the executable file's device, inode, size, mtime and ctime, so that
  // calls from the same binary hash it once. When full, an arbitrary entry is dropped.
  size_t digest_cache_entries = 4096;
  // An executable above this many bytes is not hashed (no unix:sha256): a caller could otherwise
  // make the agent read a huge (sparse) file on every call whose binary it touches.
  uint64_t max_executable_bytes = uint64_t{1} << 30;
  // User and group names (getpwuid_r, getgrgid_r read and parse /etc/passwd and /etc/group on
  // every call, about 12 µs each) are kept this long, and all dropped at once when either file
  // changes (checked by stat on every call). The time bounds how long a name from another NSS
  // source (LDAP, sssd) may be stale. Zero: no cache.
  absl::Duration name_cache_ttl = absl::Seconds(30);
  // The files whose change (device, inode, size, mtime) drops every cached name. Tests point
  // them elsewhere; the lookups themselves always go through NSS.
  std::string passwd_file = "/etc/passwd";
  std::string group_file = "/etc/group";
  // Tests only: runs after /proc has been read and before the check that the caller is still
  // running, with the caller's pid. Null: nothing.
  std::function<void(pid_t)> after_proc_read;
};

// Counters and timings it keeps (registered in the MetricsRegistry passed to Create):
//   meshid_agent_workload_attestations_total{result}   ok, exited (the caller exited during
//                                                       attestation), error
//   meshid_agent_workload_attestation_seconds          the time Attest took (a histogram)
//   meshid_agent_workload_executable_digests_total{cache}  hit, miss (the executable was hashed)
//   meshid_agent_workload_name_lookups_total{cache}    hit, miss (getpwuid_r or getgrgid_r ran)
class WorkloadAttestor {
 public:
  // InvalidArgument naming the option for a zero digest_cache_entries. `metrics` must outlive
  // the attestor.
  static absl::StatusOr<std::unique_ptr<WorkloadAttestor>> Create(AttestorOptions options, MetricsRegistry& metrics);

  // Attests `peer`'s process. Thread-safe.
  // Errors:
  //  - PermissionDenied "the caller (pid N) exited during attestation": the pinned process is no
  //    longer running, so its pid may have named another process while /proc was read (also
  //    when it exited before the call began).
  //  - Aborted: the caller executed another program or its executable changed on disk while it
  //    was read; attesting again will see one of them.
  //  - Unavailable: the user or group database could not be read (getpwuid_r, getgrgid_r).
  //  - PermissionDenied, Internal: /proc could not be read (the agent lacks the privilege to read
  //    another user's /proc/<pid>/exe, or the kernel's text did not parse); the message names
  //    the file.
  absl::StatusOr<WorkloadAttributes> Attest(const PeerProcess& peer) const;

  // Digests in the cache. Thread-safe.
  size_t cached_digests() const;

 private:
  struct FileKey {
    dev_t device;
    ino_t inode;
    off_t size;
    int64_t mtime_ns;
    int64_t ctime_ns;
    bool operator==(const FileKey&) const = default;
    template <typename H>
    friend H AbslHashValue(H h, const FileKey& k) {
      return H::combine(std::move(h), k.device, k.inode, k.size, k.mtime_ns, k.ctime_ns);
    }
  };
  // A file's identity and version, to notice /etc/passwd or /etc/group change.
  struct FileStamp {
    dev_t device = 0;
    ino_t inode = 0;
    off_t size = 0;
    int64_t mtime_ns = 0;
    bool operator==(const FileStamp&) const = default;
  };
  struct CachedName {
    std::optional<std::string> name;  // nullopt: the id has no name
    absl::Time looked_up;
  };
  struct NameCache {
    FileStamp passwd;
    FileStamp group;
    absl::flat_hash_map<uid_t, CachedName> users;
    absl::flat_hash_map<gid_t, CachedName> groups;
  };
  struct Executable {
    std::optional<std::string> path;
    std::optional<std::string> sha256;
  };
  struct Metrics {
    Counter& ok;
    Counter& exited;
    Counter& error;
    Histogram& seconds;
    Counter& digest_hits;
    Counter& digest_misses;
    Counter& name_hits;
    Counter& name_misses;
  };

  WorkloadAttestor(AttestorOptions options, MetricsRegistry& metrics);
  absl::StatusOr<WorkloadAttributes> AttestUntimed(const PeerProcess& peer) const;
  absl::StatusOr<Executable> ReadExecutable(int proc_dir, const std::string& proc_path) const;
  absl::StatusOr<std::string> Digest(int executable_fd, const FileKey& key, const std::string& proc_path) const;

  const AttestorOptions options_;
  const Metrics metrics_;
  static FileStamp StampOf(const std::string& path);
  // Names of `uid` and `gids` (each possibly none); Unavailable when the database cannot be read.
  absl::Status LookUpNames(uid_t uid, const std::vector<gid_t>& gids, std::optional<std::string>& user_name,
                           std::map<gid_t, std::optional<std::string>>& group_names) const;

  mutable absl::Mutex names_mu_;
  mutable NameCache names_ ABSL_GUARDED_BY(names_mu_);
  mutable absl::Mutex mu_;
  mutable absl::flat_hash_map<FileKey, std::string> digests_ ABSL_GUARDED_BY(mu_);
};

}  // namespace meshid::workload
