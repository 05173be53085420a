#include "common/duration.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace meshid {

absl::StatusOr<absl::Duration> ParseDuration(absl::string_view text) {
  if (text == "0") return absl::ZeroDuration();
  absl::Duration d;
  // absl accepts "1h30m", "1.5s", "300ms", "2us", "5ns"; add days, which Istio users write too.
  if (!text.empty() && text.back() == 'd' && text.find_first_not_of("0123456789", 0) == text.size() - 1 &&
      text.size() > 1) {
    int64_t days = 0;
    for (char c : text.substr(0, text.size() - 1)) {
      days = days * 10 + (c - '0');
      if (days > 100000) return absl::InvalidArgumentError(absl::StrCat("duration \"", text, "\" is too long"));
    }
    return absl::Hours(24 * days);
  }
  if (text.empty() || !absl::ParseDuration(text, &d) || d == absl::InfiniteDuration() ||
      d == -absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("invalid duration \"", text, "\" (use e.g. 90s, 30m, 24h, 7d)"));
  }
  if (d < absl::ZeroDuration()) return absl::InvalidArgumentError(absl::StrCat("duration \"", text, "\" is negative"));
  return d;
}

std::string FormatDuration(absl::Duration d) { return absl::FormatDuration(d); }

}  // namespace meshid
