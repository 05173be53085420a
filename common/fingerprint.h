// How meshid names CA roots: "sha256:<lower-case hex>" of a certificate's DER, and for a set of
// roots those names sorted, without repeats, joined by commas. Agents report the roots they
// trust this way, the store records the replicas' roots this way, and the trust bundle stream
// carries it, so the three compare as strings.
#pragma once

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace meshid {

std::string RootFingerprint(absl::string_view der);
std::string RootSetFingerprint(const std::vector<std::string>& root_ders);

}  // namespace meshid
