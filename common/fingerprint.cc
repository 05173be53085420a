#include "common/fingerprint.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/sha256.h"

namespace meshid {

std::string RootFingerprint(absl::string_view der) { return absl::StrCat("sha256:", Sha256Hex(der)); }

std::string RootSetFingerprint(const std::vector<std::string>& root_ders) {
  std::vector<std::string> fingerprints;
  fingerprints.reserve(root_ders.size());
  for (const std::string& der : root_ders) fingerprints.push_back(RootFingerprint(der));
  std::sort(fingerprints.begin(), fingerprints.end());
  fingerprints.erase(std::unique(fingerprints.begin(), fingerprints.end()), fingerprints.end());
  return absl::StrJoin(fingerprints, ",");
}

}  // namespace meshid
