// The one compiled policy engine: authentication (v1alpha1 Policy/MeshPolicy, v1beta1
// PeerAuthentication/RequestAuthentication) followed by authorization (rbac::RbacEngine), built
// once from a PolicySet and immutable afterwards.
//
// Authentication follows Istio 1.5:
//  * mTLS: a PeerAuthentication applying to the workload decides (STRICT/PERMISSIVE/DISABLE,
//    port-level by workload port); without one, the v1alpha1 Policy selected for the service
//    port decides (peers in order, peer_is_optional, trust-domain check); with neither, the
//    mode is PERMISSIVE. STRICT without mTLS: HTTP 401 "Peer authentication failed.", TCP the
//    connection is closed (reported as 403).
//  * JWT (HTTP only): RequestAuthentication rules applying to the workload decide (an invalid
//    token is 401, a missing one passes with no request principal); without any, the selected
//    Policy's origins decide (trigger rules, origin_is_optional, 401 "Origin authentication
//    failed."), and principal_binding USE_PEER/USE_ORIGIN sets request.auth.principal.
// The RBAC engine then sees the authenticated attributes only: a plaintext caller has no
// principal, whatever it claims.
//
// Thread-safety: Check() may be called concurrently; the engine is immutable.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "authz/jwks_fetcher.h"
#include "authz/policy_set.h"
#include "common/clock.h"
#include "rbac/attributes.h"
#include "rbac/engine.h"

namespace meshid::authz {

// A request as the caller describes it, before authentication.
struct RequestInput {
  rbac::Protocol protocol = rbac::Protocol::kHttp;
  std::string destination_service;    // FQDN
  std::string destination_namespace;  // "" = the FQDN's second label
  std::map<std::string, std::string> destination_labels;
  std::string destination_ip;
  uint32_t destination_port = 0;
  std::string destination_principal;  // the workload's own SPIFFE ID (trust domain, service account)
  std::string source_principal;       // the peer certificate's identity; "" without one
  std::string source_ip;
  std::optional<bool> mtls;  // default: true iff source_principal is set
  std::string sni;
  std::string method;
  std::string path;  // request target, may include ?query
  std::string host;
  std::vector<std::pair<std::string, std::string>> headers;
};

struct Decision {
  bool allowed = false;
  int status = 403;    // 200, 401 or 403
  std::string policy;  // "ns/name" of the deciding object, "" for a default
  std::string rule;
  std::string reason;
  std::optional<rbac::ShadowResult> shadow;
  // The authenticated identities, for callers that forward them (ext_authz metadata).
  std::string source_principal;
  std::string request_principal;
};

struct PolicyEngineOptions {
  std::string root_namespace = "istio-system";
  // The local trust domain for the v1alpha1 peer trust-domain check; "" = the destination
  // principal's trust domain, and no check when that is unknown too.
  std::string trust_domain;
  std::shared_ptr<const JwksFetcher> jwks_fetcher;  // nullptr = DefaultJwksFetcher
  std::shared_ptr<const rbac::CustomAuthorizer> custom;
};

class PolicyEngine {
 public:
  // Compiles `set` (validated by LoadPolicySet). JWKS are resolved here; a key set that cannot
  // be fetched is a warning and makes its tokens fail (as istiod does), not a compile error.
  // `clock` is the time JWTs are checked against; it must outlive the engine (and every copy
  // of the returned pointer).
  static absl::StatusOr<std::shared_ptr<const PolicyEngine>> Create(PolicySet set, const Clock& clock,
                                                                    PolicyEngineOptions options = {});
  ~PolicyEngine();

  // Normalises the input: InvalidArgument for a malformed request (the caller denies).
  absl::StatusOr<rbac::RequestAttributes> Attributes(const RequestInput& in) const;
  // Authenticates and authorizes. A non-OK status means the request could not be evaluated;
  // the caller must deny.
  absl::StatusOr<Decision> Check(const RequestInput& in) const;

  const PolicySet& policies() const;
  const std::vector<std::string>& warnings() const;

  struct Impl;

 private:
  explicit PolicyEngine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace meshid::authz
