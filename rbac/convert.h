// `meshid authz convert`: v1alpha1 RBAC (ClusterRbacConfig/RbacConfig, ServiceRole,
// ServiceRoleBinding) into v1beta1 AuthorizationPolicy YAML that decides every request the same
// way (the migration Istio users had to do by hand or with `istioctl x authz convert`).
//
// How it maps:
//  * RBAC switched on → a default-deny "allow-nothing" policy in the scope: mesh-wide (root
//    namespace) for ON, per included namespace / per included service (its workload selector)
//    for ON_WITH_INCLUSION, mesh-wide plus allow-all for each excluded namespace / service for
//    ON_WITH_EXCLUSION. OFF (or no config) converts to nothing.
//  * Each ServiceRole with bindings → one ALLOW policy per scope: namespace-wide when a rule's
//    `services` is "*" and its whole namespace is enforced, otherwise one per enforced Service
//    it matches, selected by that Service's `spec.selector` (Service documents are required).
//  * Each (access rule, subject) pair → one v1beta1 rule, so v1alpha1's "some rule and some
//    subject" is preserved exactly, including Istio's TCP rule (pairs using HTTP-only fields
//    are dropped on TCP in both models).
//  * Constraints and properties become `when` conditions; destination.labels[k] with one exact
//    value joins the selector; destination.name/namespace are decided at conversion time.
//  * PERMISSIVE bindings (or enforcement_mode PERMISSIVE) → the `istio.io/dry-run` annotation.
// What cannot be expressed (destination.user, label wildcards, services without Service
// documents) is an error naming the object and field.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "rbac/policies.h"

namespace meshid::rbac {

struct ConvertOptions {
  std::string root_namespace = "istio-system";
};

struct ConvertResult {
  std::string yaml;                // multi-document YAML, "" when nothing is enforced
  std::vector<std::string> notes;  // things the user should know (printed as comments too)
  size_t policies = 0;
};

absl::StatusOr<ConvertResult> ConvertToV1beta1(const RbacPolicies& policies, const ConvertOptions& options = {});

}  // namespace meshid::rbac
