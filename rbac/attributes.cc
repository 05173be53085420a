#include "rbac/attributes.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace meshid::rbac {

const std::string* RequestAttributes::Header(absl::string_view lower_name) const {
  auto it = std::lower_bound(headers.begin(), headers.end(), lower_name,
                             [](const auto& h, absl::string_view n) { return absl::string_view(h.first) < n; });
  if (it == headers.end() || it->first != lower_name) return nullptr;
  return &it->second;
}

void RequestAttributes::CanonicalizeHeaders() {
  for (auto& h : headers) absl::AsciiStrToLower(&h.first);
  auto by_name = [](const auto& a, const auto& b) { return a.first < b.first; };
  if (!std::is_sorted(headers.begin(), headers.end(), by_name)) {
    std::stable_sort(headers.begin(), headers.end(), by_name);
  }
  bool duplicates = false;
  for (size_t i = 1; i < headers.size(); ++i) duplicates = duplicates || headers[i].first == headers[i - 1].first;
  if (!duplicates) return;
  std::vector<std::pair<std::string, std::string>> merged;
  for (auto& h : headers) {
    if (!merged.empty() && merged.back().first == h.first) {
      absl::StrAppend(&merged.back().second, ",", h.second);
    } else {
      merged.push_back(std::move(h));
    }
  }
  headers = std::move(merged);
}

absl::string_view StripSpiffeScheme(absl::string_view id) {
  if (absl::StartsWith(id, "spiffe://")) id.remove_prefix(9);
  return id;
}

namespace {
std::string SegmentAfter(absl::string_view principal, absl::string_view marker) {
  size_t pos = principal.find(marker);
  if (pos == absl::string_view::npos) return "";
  absl::string_view rest = principal.substr(pos + marker.size());
  return std::string(rest.substr(0, rest.find('/')));
}
}  // namespace

std::string NamespaceFromPrincipal(absl::string_view principal) { return SegmentAfter(principal, "/ns/"); }
std::string ServiceAccountFromPrincipal(absl::string_view principal) { return SegmentAfter(principal, "/sa/"); }

}  // namespace meshid::rbac
