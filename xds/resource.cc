#include "xds/resource.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/sha256.h"

namespace meshid::xds {

std::string ContentVersion(absl::string_view body) { return Sha256Hex(body).substr(0, 16); }

absl::StatusOr<int64_t> ParseNumberedVersion(absl::string_view version_info, absl::string_view number_name) {
  if (version_info.empty()) return 0;
  const size_t dot = version_info.find('.');
  const absl::string_view number = version_info.substr(0, dot);
  const absl::string_view hash = dot == absl::string_view::npos ? "" : version_info.substr(dot + 1);
  int64_t v = 0;
  if (number.empty() || number.size() > 19 || (number.size() > 1 && number[0] == '0') ||
      !std::all_of(number.begin(), number.end(), absl::ascii_isdigit) || !absl::SimpleAtoi(number, &v) ||
      hash.empty() || hash.size() > 64 || !std::all_of(hash.begin(), hash.end(), absl::ascii_isxdigit)) {
    return absl::InvalidArgumentError(
        absl::StrCat("version_info \"", ClipForError(version_info, 40), "\" is not <", number_name, ">.<hex digest>"));
  }
  return v;
}

std::string ClipForError(absl::string_view s, size_t max) {
  if (s.size() <= max) return std::string(s);
  return absl::StrCat(s.substr(0, max), "...");
}

}  // namespace meshid::xds
