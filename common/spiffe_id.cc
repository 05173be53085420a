#include "common/spiffe_id.h"

#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace meshid {
namespace {

constexpr absl::string_view kScheme = "spiffe://";
constexpr size_t kMaxIdBytes = 2048;

bool IsPathChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

absl::Status ValidatePath(absl::string_view path) {
  if (path.empty()) return absl::OkStatus();
  if (path.front() != '/') return absl::InvalidArgumentError("SPIFFE ID path must start with '/'");
  if (path.back() == '/') return absl::InvalidArgumentError("SPIFFE ID path must not end with '/'");
  for (absl::string_view segment : absl::StrSplit(path.substr(1), '/')) {
    if (segment.empty()) return absl::InvalidArgumentError("SPIFFE ID path has an empty segment");
    if (segment == "." || segment == "..") {
      return absl::InvalidArgumentError("SPIFFE ID path has a '.' or '..' segment");
    }
    for (char c : segment) {
      if (!IsPathChar(c)) {
        return absl::InvalidArgumentError(
            absl::StrCat("SPIFFE ID path has a character outside [a-zA-Z0-9._-]: '", std::string(1, c), "'"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateTrustDomain(absl::string_view td) {
  if (td.empty()) return absl::InvalidArgumentError("trust domain is empty");
  if (td.size() > 255) return absl::InvalidArgumentError("trust domain is longer than 255 bytes");
  for (char c : td) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat("trust domain \"", td, "\" has a character outside lower-case letters, digits, '.', '-', '_'"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<SpiffeId> SpiffeId::Parse(absl::string_view uri, bool allow_root) {
  if (uri.size() > kMaxIdBytes) return absl::InvalidArgumentError("SPIFFE ID is longer than 2048 bytes");
  if (!absl::StartsWith(uri, kScheme)) {
    return absl::InvalidArgumentError("SPIFFE ID must start with \"spiffe://\"");
  }
  absl::string_view rest = uri.substr(kScheme.size());
  if (rest.find_first_of("?#") != absl::string_view::npos) {
    return absl::InvalidArgumentError("SPIFFE ID must not have a query or fragment");
  }
  if (rest.find('%') != absl::string_view::npos) {
    return absl::InvalidArgumentError("SPIFFE ID must not be percent-encoded");
  }
  size_t slash = rest.find('/');
  absl::string_view td = rest.substr(0, slash);
  absl::string_view path = slash == absl::string_view::npos ? absl::string_view() : rest.substr(slash);
  if (td.find('@') != absl::string_view::npos) return absl::InvalidArgumentError("SPIFFE ID must not have user info");
  if (td.find(':') != absl::string_view::npos) return absl::InvalidArgumentError("SPIFFE ID must not have a port");
  if (absl::Status s = ValidateTrustDomain(td); !s.ok())
    return absl::InvalidArgumentError(absl::StrCat("SPIFFE ID: ", s.message()));
  if (absl::Status s = ValidatePath(path); !s.ok()) return s;
  if (path.empty() && !allow_root) return absl::InvalidArgumentError("SPIFFE ID has no path");
  return SpiffeId(std::string(td), std::string(path));
}

absl::StatusOr<SpiffeId> SpiffeId::ForServiceAccount(absl::string_view trust_domain, absl::string_view ns,
                                                     absl::string_view service_account) {
  if (ns.empty()) return absl::InvalidArgumentError("namespace is empty");
  if (service_account.empty()) return absl::InvalidArgumentError("service account is empty");
  if (ns.find('/') != absl::string_view::npos || service_account.find('/') != absl::string_view::npos) {
    return absl::InvalidArgumentError("namespace and service account must not contain '/'");
  }
  return Parse(absl::StrCat(kScheme, trust_domain, "/ns/", ns, "/sa/", service_account));
}

std::string SpiffeId::Namespace() const {
  std::vector<absl::string_view> parts = absl::StrSplit(path_, '/');
  if (parts.size() == 5 && parts[1] == "ns" && parts[3] == "sa") return std::string(parts[2]);
  return "";
}

std::string SpiffeId::ServiceAccount() const {
  std::vector<absl::string_view> parts = absl::StrSplit(path_, '/');
  if (parts.size() == 5 && parts[1] == "ns" && parts[3] == "sa") return std::string(parts[4]);
  return "";
}

}  // namespace meshid
