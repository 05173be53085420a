// Reading a process's /proc files, and parsers for what attestation takes from them. The text
// comes from the kernel, but it describes a process the caller controls (its name is in the
// same files), so it is parsed strictly: anything but the kernel's own format is an error,
// never a guess.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "workload/unique_fd.h"

namespace meshid::workload {

// What attestation takes from /proc/<pid>/status.
struct ProcStatusIds {
  uid_t real_uid = 0;
  gid_t real_gid = 0;
  std::vector<gid_t> groups;  // the supplementary groups, in the kernel's order
};

// The kernel allows at most this many supplementary groups (NGROUPS_MAX).
inline constexpr size_t kMaxSupplementaryGroups = 65536;

// Parses the "Uid:", "Gid:" and "Groups:" lines of /proc/<pid>/status and ignores the others.
// Uid and Gid are four tab-separated decimal ids (real, effective, saved, filesystem); Groups
// is zero or more ids, each followed by one space (older kernels: separated by single spaces,
// one trailing space allowed). An id is a decimal number without sign or leading zeros below
// 2^32-1 (the kernel shows an unmapped id as the overflow id, never as -1).
//
// InvalidArgument naming the line and what is wrong for: a missing or repeated line (a repeated
// one could only be injected text, so it is refused rather than one of them believed), a wrong
// field count, a malformed id, more than kMaxSupplementaryGroups groups. Never crashes.
absl::StatusOr<ProcStatusIds> ParseProcStatus(absl::string_view status);

// Field 22 of /proc/<pid>/stat, the start time in clock ticks since boot (CLOCK_BOOTTIME).
// The command name (field 2) is in parentheses and may itself contain spaces and ')', so the
// fields are counted from the last ')'. InvalidArgument saying what is wrong otherwise.
absl::StatusOr<uint64_t> ParseProcStatStartTime(absl::string_view stat);

// Opens the directory /proc/<pid>. The directory stays bound to the process it was opened for:
// reads through it fail once that process has been reaped, and never show another process that
// was given the same pid. (It may already be another process's when opened: see
// workload/peer_process.h for how a pinned process's pid is checked afterwards.)
// NotFound if there is no such process, PermissionDenied, Internal otherwise; the message names
// the path.
absl::StatusOr<UniqueFd> OpenProcDir(pid_t pid);

// Reads the file `name` in the directory `dir` (opened as `dir_path`, for messages) entirely;
// more than `max_bytes` is InvalidArgument. NotFound when the file or its process is gone
// (ENOENT, ESRCH), PermissionDenied (EACCES, EPERM), Internal otherwise.
absl::StatusOr<std::string> ReadFileAt(int dir, absl::string_view dir_path, const char* name, size_t max_bytes);

// The status for a failed system call on `path`, with the code ReadFileAt documents for `err`.
absl::Status ErrnoStatus(int err, absl::string_view path);

}  // namespace meshid::workload
