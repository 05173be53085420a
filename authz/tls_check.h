// `meshid authn tls-check`: istioctl 1.4/1.5's table of server-side mTLS mode (authentication
// Policy/MeshPolicy, and PeerAuthentication where one applies) against the client-side TLS mode
// of DestinationRules, per service port (and per DestinationRule subset), with OK/CONFLICT/AUTO
// as pilot's EvaluateTLSState decides them (release-1.5 debug.go).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "authz/policy_set.h"

namespace meshid::authz {

struct TlsCheckRow {
  std::string host;  // FQDN, or "FQDN|subset"
  uint32_t port = 0;
  std::string status;            // OK, CONFLICT, AUTO
  std::string server;            // DISABLE, PERMISSIVE, STRICT
  std::string client;            // DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL; None if unset; "-" if unset with auto mTLS
  std::string authn_policy;      // "namespace/name" ("/default" for the MeshPolicy), None
  std::string destination_rule;  // "namespace/name", None; "-" with auto mTLS and no client TLS
};

struct TlsCheckOptions {
  std::string root_namespace = "istio-system";
  bool auto_mtls = false;  // meshConfig.enableAutoMtls
};

// One row per Service port, plus one per DestinationRule subset, sorted by host then port.
std::vector<TlsCheckRow> ComputeTlsCheck(const PolicySet& set, const TlsCheckOptions& options);

// Keeps rows for `filter` ("HOST" or "HOST:PORT"; HOST is the FQDN and also selects its
// "HOST|subset" rows). InvalidArgument for an unparsable port.
absl::StatusOr<std::vector<TlsCheckRow>> FilterTlsCheck(const std::vector<TlsCheckRow>& rows,
                                                        const std::string& filter);

// The status pilot's EvaluateTLSState (1.4/1.5) gives a server/client pair.
std::string EvaluateTlsState(PeerMode server, ClientTlsMode client, bool auto_mtls);

// istioctl's table (Go text/tabwriter, padding 5) and the /debug/authenticationz JSON fields.
std::string FormatTlsCheckTable(const std::vector<TlsCheckRow>& rows);
std::string FormatTlsCheckJson(const std::vector<TlsCheckRow>& rows);

}  // namespace meshid::authz
