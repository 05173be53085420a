// The compiled authorization engine: Istio RBAC objects in, an immutable indexed matcher out.
//
// Which model decides for a workload (Istio 1.5 pilot, builder.go): if any v1beta1
// AuthorizationPolicy applies to the workload (same namespace or the root namespace, selector a
// subset of the workload labels), v1beta1 decides and v1alpha1 is ignored for it; otherwise
// v1alpha1 RBAC decides if ClusterRbacConfig/RbacConfig enables it for the service; otherwise
// everything is allowed.
//
// Thread-safety: an RbacEngine is immutable after Create(); Evaluate() may be called from any
// number of threads. It allocates only for the result strings.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "rbac/attributes.h"
#include "rbac/policies.h"

namespace meshid::rbac {

// What the shadow (log-only) rules would have decided: v1alpha1 PERMISSIVE bindings (or every
// binding under enforcement_mode PERMISSIVE) and v1beta1 dry-run policies.
struct ShadowResult {
  bool allowed = true;
  std::string policy;
  std::string rule;
};

struct AuthzResult {
  bool allowed = false;
  std::string policy;                  // "ns/name" of the deciding object, "" when a default decided
  std::string rule;                    // "rules[0]", or "rules[0]; binding ns/b subjects[1]" for v1alpha1
  std::string reason;                  // one sentence for humans
  std::optional<ShadowResult> shadow;  // set when shadow rules apply to the workload
};

// The external authorizer behind CUSTOM policies (meshConfig extensionProviders in Istio).
class CustomAuthorizer {
 public:
  virtual ~CustomAuthorizer() = default;
  // OK(true) allows, OK(false) denies; an error fails closed (the request is denied).
  virtual absl::StatusOr<bool> Check(absl::string_view provider, const RequestAttributes& attrs) const = 0;
};

struct RbacEngineOptions {
  // meshConfig.rootNamespace: AuthorizationPolicies here apply mesh-wide.
  std::string root_namespace = "istio-system";
  // Consulted for matching CUSTOM policies; without it a matching CUSTOM policy is an
  // evaluation error (and so a denial).
  std::shared_ptr<const CustomAuthorizer> custom;
};

class RbacEngine {
 public:
  // Compiles validated policies (see ValidateRbacPolicies). Fails only on inconsistencies that
  // validation should have caught (InvalidArgument).
  static absl::StatusOr<std::unique_ptr<const RbacEngine>> Create(const RbacPolicies& policies,
                                                                  RbacEngineOptions options = {});
  ~RbacEngine();

  // The decision for one request. An error means "could not evaluate" (e.g. a CUSTOM provider
  // failed); callers must deny.
  absl::StatusOr<AuthzResult> Evaluate(const RequestAttributes& attrs) const;

  // Whether v1alpha1 RBAC is switched on for this service (ClusterRbacConfig/RbacConfig).
  bool IsV1alpha1Enabled(absl::string_view service_fqdn, absl::string_view service_namespace) const;

  struct Impl;

 private:
  explicit RbacEngine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace meshid::rbac
