// Workload selectors: what the node agent's attestation says about a caller, and what a
// registration entry requires of one. The kinds and their spelling are SPIRE's unix workload
// attestor's, so entries read the same in both systems:
//
//   unix:uid:<N>          the caller's real uid (decimal, no leading zeros)
//   unix:user:<name>      the user name of that uid
//   unix:gid:<N>          the caller's gid, primary or supplementary
//   unix:group:<name>     the name of such a gid
//   unix:path:<abs path>  the caller's executable (/proc/<pid>/exe)
//   unix:sha256:<hex>     SHA-256 of that executable, 64 lower-case hex digits
//
// An entry matches a workload when every selector of the entry is among the workload's
// selectors (an entry's set is a subset of the workload's).
#pragma once

#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace meshid {

inline constexpr size_t kMaxSelectorLength = 1024;

// Parses one selector and returns its canonical text (hex lower-cased; nothing else is
// rewritten). InvalidArgument saying what is wrong and which forms are accepted for: an
// unknown type or key, an empty value, a uid/gid that is not a decimal number in [0, 2^32-1),
// a name with characters outside [A-Za-z0-9._-] (a trailing "$" allowed) or longer than 256
// bytes, a path that is not absolute or contains NUL, "//", "/./" or "/../", a sha256 that is
// not 64 hex digits, or more than kMaxSelectorLength bytes. Untrusted input: never crashes.
absl::StatusOr<std::string> ParseSelector(absl::string_view text);

// Parses every selector (an error names the index: "selectors[2]: ...") and returns them
// canonical, sorted and without duplicates.
absl::StatusOr<std::vector<std::string>> ParseSelectors(absl::Span<const std::string> texts);

// True when every one of `required` is in `present` (an empty `required` matches nothing:
// an entry without selectors never matches a workload).
bool SelectorsMatch(absl::Span<const std::string> required, const absl::flat_hash_set<std::string>& present);

}  // namespace meshid
