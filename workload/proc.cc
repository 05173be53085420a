#include "workload/proc.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace meshid::workload {
namespace {

// A decimal number without sign or leading zeros, at most `max`.
std::optional<uint64_t> ParseDecimal(absl::string_view text, uint64_t max) {
  if (text.empty() || text.size() > 20 || (text.size() > 1 && text[0] == '0')) return std::nullopt;
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (value > (max - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  return value;
}

// Ids are 32 bits; 2^32-1 is "no id" ((uid_t)-1) and never a process's.
constexpr uint64_t kMaxId = std::numeric_limits<uint32_t>::max() - 1;

absl::Status BadLine(absl::string_view key, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("\"", key, ":\" line: ", what));
}

// "real\teffective\tsaved\tfilesystem": returns the real id.
absl::StatusOr<uint32_t> ParseIdQuad(absl::string_view key, absl::string_view value) {
  std::vector<absl::string_view> fields = absl::StrSplit(value, '\t');
  if (fields.size() != 4) return BadLine(key, absl::StrCat(fields.size(), " tab-separated fields, want 4"));
  uint32_t real = 0;
  for (size_t i = 0; i < fields.size(); ++i) {
    auto id = ParseDecimal(fields[i], kMaxId);
    if (!id.has_value()) return BadLine(key, absl::StrCat("field ", i + 1, " is not an id below 2^32-1"));
    if (i == 0) real = static_cast<uint32_t>(*id);
  }
  return real;
}

absl::StatusOr<std::vector<gid_t>> ParseGroups(absl::string_view value) {
  std::vector<gid_t> groups;
  // The kernel writes each id followed by a space (an empty list is a lone space); older ones
  // wrote "a b c " or "". Drop the one trailing space, then the ids are separated by single
  // spaces.
  if (!value.empty() && value.back() == ' ') value.remove_suffix(1);
  if (value.empty()) return groups;
  for (absl::string_view field : absl::StrSplit(value, ' ')) {
    if (groups.size() == kMaxSupplementaryGroups) {
      return BadLine("Groups", absl::StrCat("more than ", kMaxSupplementaryGroups, " groups"));
    }
    auto id = ParseDecimal(field, kMaxId);
    if (!id.has_value()) {
      return BadLine("Groups", absl::StrCat("group ", groups.size() + 1, " is not an id below 2^32-1"));
    }
    groups.push_back(static_cast<gid_t>(*id));
  }
  return groups;
}

}  // namespace

absl::StatusOr<ProcStatusIds> ParseProcStatus(absl::string_view status) {
  std::optional<absl::string_view> uid_line, gid_line, groups_line;
  for (absl::string_view line : absl::StrSplit(status, '\n')) {
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos) continue;
    const absl::string_view key = line.substr(0, colon);
    std::optional<absl::string_view>* slot = key == "Uid"      ? &uid_line
                                             : key == "Gid"    ? &gid_line
                                             : key == "Groups" ? &groups_line
                                                               : nullptr;
    if (slot == nullptr) continue;
    if (slot->has_value()) return BadLine(key, "appears more than once");
    absl::string_view value = line.substr(colon + 1);
    if (value.empty() || value[0] != '\t') return BadLine(key, "no tab after the colon");
    value.remove_prefix(1);
    *slot = value;
  }
  if (!uid_line.has_value()) return absl::InvalidArgumentError("no \"Uid:\" line");
  if (!gid_line.has_value()) return absl::InvalidArgumentError("no \"Gid:\" line");
  if (!groups_line.has_value()) return absl::InvalidArgumentError("no \"Groups:\" line");
  ProcStatusIds ids;
  auto uid = ParseIdQuad("Uid", *uid_line);
  if (!uid.ok()) return uid.status();
  auto gid = ParseIdQuad("Gid", *gid_line);
  if (!gid.ok()) return gid.status();
  auto groups = ParseGroups(*groups_line);
  if (!groups.ok()) return groups.status();
  ids.real_uid = *uid;
  ids.real_gid = *gid;
  ids.groups = *std::move(groups);
  return ids;
}

absl::StatusOr<uint64_t> ParseProcStatStartTime(absl::string_view stat) {
  const size_t close = stat.rfind(')');
  if (close == absl::string_view::npos || stat.find('(') == absl::string_view::npos || stat.find('(') > close) {
    return absl::InvalidArgumentError("no command name in parentheses");
  }
  // After ") " come field 3 (the state) onwards, separated by single spaces.
  absl::string_view rest = stat.substr(close + 1);
  if (rest.empty() || rest[0] != ' ') return absl::InvalidArgumentError("no space after the command name");
  rest.remove_prefix(1);
  int field = 3;
  for (absl::string_view text : absl::StrSplit(rest, ' ')) {
    if (field == 22) {
      auto start = ParseDecimal(text, std::numeric_limits<uint64_t>::max());
      if (!start.has_value()) return absl::InvalidArgumentError("field 22 (starttime) is not a decimal number");
      return *start;
    }
    ++field;
  }
  return absl::InvalidArgumentError(absl::StrCat("only ", field - 1, " fields, want at least 22"));
}

absl::Status ErrnoStatus(int err, absl::string_view path) {
  std::string message = absl::StrCat(path, ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
    case ESRCH:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::StatusOr<UniqueFd> OpenProcDir(pid_t pid) {
  const std::string path = absl::StrCat("/proc/", pid);
  UniqueFd dir(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir.valid()) return ErrnoStatus(errno, path);
  return dir;
}

absl::StatusOr<std::string> ReadFileAt(int dir, absl::string_view dir_path, const char* name, size_t max_bytes) {
  UniqueFd fd(::openat(dir, name, O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(errno, absl::StrCat(dir_path, "/", name));
  std::string out;
  char buffer[4096];
  while (true) {
    const ssize_t n = ::read(fd.get(), buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, absl::StrCat(dir_path, "/", name));
    }
    if (n == 0) return out;
    out.append(buffer, static_cast<size_t>(n));
    if (out.size() > max_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(dir_path, "/", name, ": larger than ", max_bytes, " bytes"));
    }
  }
}

}  // namespace meshid::workload
