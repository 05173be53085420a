// SPIFFE IDs (spiffe/spiffe standards/SPIFFE-ID.md): spiffe://<trust-domain>/<path>.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace meshid {

// Checks a trust domain: non-empty, at most 255 bytes, lower-case letters, digits, '.', '-', '_'.
absl::Status ValidateTrustDomain(absl::string_view trust_domain);

class SpiffeId {
 public:
  // Parses and validates a SPIFFE ID. Errors say which rule was broken. A root ID (no path)
  // is accepted only when `allow_root` is set; workload identities always have a path.
  static absl::StatusOr<SpiffeId> Parse(absl::string_view uri, bool allow_root = false);
  // An empty ID (ToString() == "spiffe://"), only as a placeholder before assignment.
  SpiffeId() = default;
  // spiffe://<td>/ns/<ns>/sa/<sa>, the Istio/Kubernetes service-account form.
  static absl::StatusOr<SpiffeId> ForServiceAccount(absl::string_view trust_domain, absl::string_view ns,
                                                    absl::string_view service_account);

  const std::string& trust_domain() const { return trust_domain_; }
  const std::string& path() const { return path_; }  // "" or starts with '/'
  std::string ToString() const { return "spiffe://" + trust_domain_ + path_; }

  // For /ns/<ns>/sa/<sa> paths: the namespace and service account, else empty.
  std::string Namespace() const;
  std::string ServiceAccount() const;

  friend bool operator==(const SpiffeId&, const SpiffeId&) = default;

 private:
  SpiffeId(std::string td, std::string path) : trust_domain_(std::move(td)), path_(std::move(path)) {}
  std::string trust_domain_;
  std::string path_;
};

}  // namespace meshid
