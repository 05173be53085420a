// Istio authentication objects as validated data: v1alpha1 `Policy`/`MeshPolicy`
// (authentication.istio.io), v1beta1 `PeerAuthentication`/`RequestAuthentication`
// (security.istio.io), and the TLS part of `DestinationRule` (networking.istio.io).
// Parse* validate per Istio's rules and report every problem to `diag`.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "authz/jwt_auth.h"
#include "rbac/diagnostics.h"
#include "rbac/policies.h"
#include "rbac/yaml_source.h"

namespace meshid::authz {

using rbac::Diagnostics;

// ---- v1alpha1 Policy / MeshPolicy ----

enum class MtlsMode { kStrict, kPermissive };

struct PeerMethod {
  bool is_mtls = true;
  MtlsMode mode = MtlsMode::kStrict;  // mtls: {} or null means STRICT
  std::optional<JwtRuleSpec> jwt;     // the hidden peers[].jwt method
};

struct PortSelector {
  uint32_t number = 0;  // 0 when selected by name
  std::string name;
};

struct TargetSelector {
  std::string name;  // short service name in the policy's namespace
  std::vector<PortSelector> ports;
};

enum class PrincipalBinding { kUsePeer, kUseOrigin };

struct AuthnPolicy {
  rbac::ObjectRef ref;  // kind Policy or MeshPolicy (MeshPolicy has no namespace)
  std::vector<TargetSelector> targets;
  std::vector<PeerMethod> peers;
  bool peer_is_optional = false;
  std::vector<JwtRuleSpec> origins;
  bool origin_is_optional = false;
  PrincipalBinding principal_binding = PrincipalBinding::kUsePeer;

  bool is_mesh() const { return ref.kind == "MeshPolicy"; }
  // istioctl 1.5 shows "namespace/name" ("/default" for the MeshPolicy).
  std::string DisplayName() const { return ref.namespace_ + "/" + ref.name; }
};

std::optional<AuthnPolicy> ParseAuthnPolicy(const rbac::SourceDocument& doc, Diagnostics& diag);

// ---- v1beta1 ----

enum class PeerMode { kUnset, kDisable, kPermissive, kStrict };
const char* PeerModeName(PeerMode m);

struct PeerAuthentication {
  rbac::ObjectRef ref;
  std::optional<std::map<std::string, std::string>> selector;
  PeerMode mode = PeerMode::kUnset;
  std::map<uint32_t, PeerMode> port_level;  // workload (target) port → mode
};

struct RequestAuthentication {
  rbac::ObjectRef ref;
  std::optional<std::map<std::string, std::string>> selector;
  std::vector<JwtRuleSpec> rules;
};

std::optional<PeerAuthentication> ParsePeerAuthentication(const rbac::SourceDocument& doc, Diagnostics& diag);
std::optional<RequestAuthentication> ParseRequestAuthentication(const rbac::SourceDocument& doc, Diagnostics& diag);

// ---- DestinationRule (client-side TLS only) ----

enum class ClientTlsMode { kUnset, kDisable, kSimple, kMutual, kIstioMutual };
const char* ClientTlsModeName(ClientTlsMode m);

struct TlsSettings {
  // nullopt: the traffic policy has no `tls`. A port-level entry replaces the level's TLS
  // even when it has no `tls` itself (istioctl 1.4/1.5 semantics).
  std::optional<ClientTlsMode> mode;
  std::map<uint32_t, std::optional<ClientTlsMode>> port_level;

  // The TLS mode for `port`, kUnset when nothing applies.
  ClientTlsMode ModeForPort(uint32_t port) const;
};

struct DestinationRule {
  rbac::ObjectRef ref;
  std::string host;
  TlsSettings top;
  std::vector<std::pair<std::string, TlsSettings>> subsets;
};

std::optional<DestinationRule> ParseDestinationRule(const rbac::SourceDocument& doc, Diagnostics& diag);

// ---- selection: which policy applies ----

// The v1alpha1 policy for (service, service port) with Istio 1.5's precedence
// (push_context.go): a service-targeted Policy whose port selector matches the port (by number
// or name) wins, else the oldest service-targeted Policy without port selectors; then the
// namespace's Policy "default"; then MeshPolicy "default". nullptr if none applies.
// `policies` may hold any namespaces; `service_name`/`service_namespace` identify the service.
const AuthnPolicy* SelectAuthnPolicy(const std::vector<const AuthnPolicy*>& policies, absl::string_view service_name,
                                     absl::string_view service_namespace, uint32_t service_port,
                                     absl::string_view port_name);

// The server-side mode a v1alpha1 policy configures (the first mtls peer method; no policy,
// no peers or only JWT peers → DISABLE), as pilot's GetMutualTLSMode and tls-check compute it.
PeerMode AlphaPolicyMode(const AuthnPolicy* policy);

struct ComposedPeerMode {
  PeerMode mode = PeerMode::kPermissive;
  const PeerAuthentication* deciding = nullptr;  // the most specific policy that set the mode
};

// Istio's ComposePeerAuthentication (1.5): the oldest mesh-level (root namespace, no selector),
// namespace-level (no selector) and workload-level (selector matching `labels`; selectors in
// the root namespace are ignored) policies, applied in that order from PERMISSIVE, each only
// if not UNSET, then the workload policy's port-level entry for `workload_port`. nullopt when
// no PeerAuthentication applies at all (Istio 1.5 then falls back to the alpha Policy).
std::optional<ComposedPeerMode> ComposePeerAuthentication(const std::vector<const PeerAuthentication*>& policies,
                                                          absl::string_view ns,
                                                          const std::map<std::string, std::string>& labels,
                                                          uint32_t workload_port, absl::string_view root_namespace);

// True when `selector` (nullopt = none) selects a workload with `labels`.
bool SelectorMatches(const std::optional<std::map<std::string, std::string>>& selector,
                     const std::map<std::string, std::string>& labels);

}  // namespace meshid::authz
