// Go-style durations ("90s", "1h30m", "24h", "500ms"), the form Istio's environment uses.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace meshid {

// Accepts a sequence of <number><unit> with units ns, us, ms, s, m, h, d; a bare "0" is zero.
// Negative durations are refused.
absl::StatusOr<absl::Duration> ParseDuration(absl::string_view text);
std::string FormatDuration(absl::Duration d);

}  // namespace meshid
