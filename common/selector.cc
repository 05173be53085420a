#include "common/selector.h"

#include <algorithm>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace meshid {
namespace {

constexpr absl::string_view kAcceptedForms =
    "unix:uid:<N>, unix:user:<name>, unix:gid:<N>, unix:group:<name>, unix:path:<absolute path>, "
    "unix:sha256:<64 hex digits>";
constexpr size_t kMaxNameLength = 256;
// (uid_t)-1 is "no id" to the kernel (setreuid's "unchanged"): no process runs as it.
constexpr uint64_t kMaxId = 4294967294;

// InvalidArgument quoting the selector (escaped, so the message stays one printable line, and
// cut short: the text may be anything a caller sent).
absl::Status Invalid(absl::string_view text, absl::string_view problem) {
  constexpr size_t kQuoted = 80;
  std::string quoted = absl::CHexEscape(text.substr(0, kQuoted));
  if (text.size() > kQuoted) quoted += "...";
  return absl::InvalidArgumentError(absl::StrCat("selector \"", quoted, "\": ", problem));
}

absl::Status CheckId(absl::string_view text, absl::string_view key, absl::string_view value) {
  const bool ok = value.size() <= 10 && (value == "0" || value.front() != '0') &&
                  std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; });
  uint64_t id = 0;
  if (ok) {
    for (char c : value) id = id * 10 + static_cast<uint64_t>(c - '0');
  }
  if (!ok || id > kMaxId) {
    return Invalid(text, absl::StrCat(key, " must be a decimal number from 0 to ", kMaxId, " without leading zeros"));
  }
  return absl::OkStatus();
}

absl::Status CheckName(absl::string_view text, absl::string_view key, absl::string_view value) {
  if (value.size() > kMaxNameLength) {
    return Invalid(text, absl::StrCat(key, " name is longer than ", kMaxNameLength, " bytes"));
  }
  // Machine accounts (Samba, SSSD joined to Active Directory) end in "$".
  absl::string_view body = value;
  if (body.back() == '$') body.remove_suffix(1);
  const bool ok = !body.empty() && std::all_of(body.begin(), body.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
  if (!ok) {
    return Invalid(text, absl::StrCat(key, " must be a name of characters [A-Za-z0-9._-] (a trailing \"$\" allowed)"));
  }
  return absl::OkStatus();
}

absl::Status CheckPath(absl::string_view text, absl::string_view value) {
  if (value.front() != '/') return Invalid(text, "path must be absolute (start with \"/\")");
  if (value.find('\0') != absl::string_view::npos) return Invalid(text, "path must not contain NUL");
  // The kernel's /proc/<pid>/exe is already normal: a path that is not would never match.
  if (absl::StrContains(value, "//") || absl::StrContains(value, "/./") || absl::StrContains(value, "/../") ||
      absl::EndsWith(value, "/.") || absl::EndsWith(value, "/..")) {
    return Invalid(text, "path must be normal: no \"//\", \"/./\" or \"/../\" (nor a trailing \"/.\" or \"/..\")");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> ParseSelector(absl::string_view text) {
  if (text.size() > kMaxSelectorLength) {
    return absl::InvalidArgumentError(absl::StrCat("selector is longer than ", kMaxSelectorLength, " bytes"));
  }
  const size_t type_end = text.find(':');
  if (type_end == absl::string_view::npos) {
    return Invalid(text, absl::StrCat("not of the form <type>:<key>:<value>; accepted: ", kAcceptedForms));
  }
  const absl::string_view type = text.substr(0, type_end);
  if (type != "unix") {
    return Invalid(
        text, absl::StrCat("unknown type \"", absl::CHexEscape(type.substr(0, 32)), "\"; accepted: ", kAcceptedForms));
  }
  absl::string_view rest = text.substr(type_end + 1);
  const size_t key_end = rest.find(':');
  const absl::string_view key = rest.substr(0, key_end);
  const absl::string_view value = key_end == absl::string_view::npos ? absl::string_view() : rest.substr(key_end + 1);
  const bool known =
      key == "uid" || key == "user" || key == "gid" || key == "group" || key == "path" || key == "sha256";
  if (!known) {
    return Invalid(
        text, absl::StrCat("unknown key \"", absl::CHexEscape(key.substr(0, 32)), "\"; accepted: ", kAcceptedForms));
  }
  if (value.empty()) return Invalid(text, absl::StrCat("the ", key, " is empty; accepted: ", kAcceptedForms));
  if (key == "uid" || key == "gid") {
    if (absl::Status s = CheckId(text, key, value); !s.ok()) return s;
  } else if (key == "user" || key == "group") {
    if (absl::Status s = CheckName(text, key, value); !s.ok()) return s;
  } else if (key == "path") {
    if (absl::Status s = CheckPath(text, value); !s.ok()) return s;
  } else {  // sha256
    if (value.size() != 64 || !std::all_of(value.begin(), value.end(), [](char c) {
          return absl::ascii_isxdigit(static_cast<unsigned char>(c));
        })) {
      return Invalid(text, "sha256 must be 64 hex digits");
    }
    return absl::StrCat("unix:sha256:", absl::AsciiStrToLower(value));
  }
  return std::string(text);
}

absl::StatusOr<std::vector<std::string>> ParseSelectors(absl::Span<const std::string> texts) {
  std::vector<std::string> out;
  out.reserve(texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    absl::StatusOr<std::string> selector = ParseSelector(texts[i]);
    if (!selector.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("selectors[", i, "]: ", selector.status().message()));
    }
    out.push_back(*std::move(selector));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

bool SelectorsMatch(absl::Span<const std::string> required, const absl::flat_hash_set<std::string>& present) {
  if (required.empty()) return false;
  return std::all_of(required.begin(), required.end(),
                     [&](const std::string& selector) { return present.contains(selector); });
}

}  // namespace meshid
