// The attributes of one request (or TCP connection) as the policy engines see them, after
// authentication. The authz/ layer builds these from a `meshid authz check` JSON line or an
// Envoy ext_authz CheckRequest; the RBAC engine only reads them.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "rbac/match.h"

namespace meshid::rbac {

enum class Protocol { kHttp, kTcp };

struct RequestAttributes {
  Protocol protocol = Protocol::kHttp;

  // The destination workload (the one enforcing the policy).
  std::string destination_service;    // FQDN, e.g. "reviews.default.svc.cluster.local"
  std::string destination_namespace;  // "default"
  std::string destination_name;       // short service name, "reviews"
  std::map<std::string, std::string> destination_labels;
  std::optional<IpAddress> destination_ip;
  uint32_t destination_port = 0;  // the workload port the proxy receives on
  std::string destination_user;   // service account from the destination's SPIFFE ID

  // The peer. Identities are written without "spiffe://", as Istio's authn filter stores them.
  std::string source_principal;  // empty when the peer is not authenticated (plaintext)
  std::string source_namespace;  // from "/ns/<ns>/" in the principal
  std::optional<IpAddress> source_ip;
  bool mtls = false;
  std::string sni;

  // HTTP only.
  std::string method;
  std::string path;   // normalised, without query (Envoy url_path, as Istio 1.5 matches paths)
  std::string query;  // the raw query string without '?' (JWT jwt_params / fromParams)
  std::string host;   // :authority
  std::vector<std::pair<std::string, std::string>> headers;  // lower-case names, sorted by name

  // Request authentication results (HTTP only).
  std::string request_principal;                           // request.auth.principal
  std::string audience;                                    // request.auth.audiences: the token's first "aud"
  std::string presenter;                                   // request.auth.presenter: "azp"
  std::map<std::string, std::vector<std::string>> claims;  // string and string-list claims

  // nullptr if absent.
  const std::string* Header(absl::string_view lower_name) const;
  // Sorts headers and lower-cases names; joins repeated names with ",".
  void CanonicalizeHeaders();
};

// "cluster.local/ns/foo/sa/bar" → "foo"; "" if the principal has no "/ns/<ns>/" part.
std::string NamespaceFromPrincipal(absl::string_view principal);
// "cluster.local/ns/foo/sa/bar" → "bar"; "" if there is no "/sa/<sa>" part.
std::string ServiceAccountFromPrincipal(absl::string_view principal);
// Strips a leading "spiffe://".
absl::string_view StripSpiffeScheme(absl::string_view id);

}  // namespace meshid::rbac
