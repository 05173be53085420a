// Istio authorization objects as validated data: v1alpha1 RBAC (ClusterRbacConfig/RbacConfig,
// ServiceRole, ServiceRoleBinding) and v1beta1 AuthorizationPolicy, plus Kubernetes Services.
// Parse* functions validate one document per Istio's rules (pkg/config/validation in
// istio/istio release-1.4/1.5) and add every problem to `diag`; they return nullopt when the
// object has errors. Field names are accepted in the proto JSON (camelCase) and the original
// (snake_case) spelling, as Istio's jsonpb decoding does.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "rbac/diagnostics.h"
#include "rbac/yaml_source.h"

namespace meshid::rbac {

// Where an object came from, for explanations and "oldest wins" tie-breaks.
struct ObjectRef {
  std::string kind;
  std::string namespace_;
  std::string name;
  std::string file;
  int line = 0;
  int64_t order = 0;  // load order
  std::optional<absl::Time> created;

  std::string Id() const { return namespace_.empty() ? name : namespace_ + "/" + name; }
  static ObjectRef From(const SourceDocument& doc);
  // Istio sorts by creation time, then by name; load order stands in for a missing timestamp.
  static bool Older(const ObjectRef& a, const ObjectRef& b);
};

// ---- Kubernetes Service ----

struct ServicePort {
  std::string name;
  uint32_t port = 0;
  uint32_t target_port = 0;      // 0 when given by name
  std::string target_port_name;  // named container port
  std::string protocol = "TCP";
};

struct Service {
  ObjectRef ref;
  std::string hostname;  // <name>.<namespace>.svc.<domain>
  std::map<std::string, std::string> selector;
  std::vector<ServicePort> ports;

  // The service port whose target is workload port `workload_port` (targetPort, or port when
  // targetPort is absent); nullptr if none.
  const ServicePort* PortForWorkloadPort(uint32_t workload_port) const;
};

std::optional<Service> ParseService(const SourceDocument& doc, const std::string& domain, Diagnostics& diag);

// ---- v1alpha1 RBAC ----

enum class RbacMode { kOff, kOn, kOnWithInclusion, kOnWithExclusion };
const char* RbacModeName(RbacMode mode);

struct RbacTarget {
  std::vector<std::string> services;    // FQDNs, exact match
  std::vector<std::string> namespaces;  // exact match
};

struct RbacConfig {
  ObjectRef ref;  // kind ClusterRbacConfig or RbacConfig (the seed spelling RBACConfig is accepted)
  RbacMode mode = RbacMode::kOff;
  std::optional<RbacTarget> inclusion;
  std::optional<RbacTarget> exclusion;
  bool enforcement_permissive = false;  // enforcement_mode: PERMISSIVE
};

struct Constraint {
  std::string key;
  std::vector<std::string> values;
};

struct AccessRule {
  std::vector<std::string> services;
  std::vector<std::string> hosts, not_hosts;
  std::vector<std::string> paths, not_paths;
  std::vector<std::string> methods, not_methods;
  std::vector<int64_t> ports, not_ports;
  std::vector<Constraint> constraints;
};

struct ServiceRole {
  ObjectRef ref;
  std::vector<AccessRule> rules;
};

struct Subject {
  std::string user;
  std::vector<std::string> names, not_names;
  std::string group;
  std::vector<std::string> groups, not_groups;
  std::vector<std::string> namespaces, not_namespaces;
  std::vector<std::string> ips, not_ips;
  std::map<std::string, std::string> properties;
};

struct ServiceRoleBinding {
  ObjectRef ref;
  std::vector<Subject> subjects;
  std::string role;                                // roleRef.name (or the hidden `role` field)
  std::optional<std::vector<AccessRule>> actions;  // hidden inline role
  bool permissive = false;                         // mode: PERMISSIVE
};

std::optional<RbacConfig> ParseRbacConfig(const SourceDocument& doc, Diagnostics& diag);
std::optional<ServiceRole> ParseServiceRole(const SourceDocument& doc, Diagnostics& diag);
std::optional<ServiceRoleBinding> ParseServiceRoleBinding(const SourceDocument& doc, Diagnostics& diag);

// ---- v1beta1 AuthorizationPolicy ----

enum class AuthzAction { kAllow, kDeny, kAudit, kCustom };
const char* AuthzActionName(AuthzAction a);

struct AuthzSource {
  std::vector<std::string> principals, not_principals;
  std::vector<std::string> request_principals, not_request_principals;
  std::vector<std::string> namespaces, not_namespaces;
  std::vector<std::string> ip_blocks, not_ip_blocks;
  std::vector<std::string> remote_ip_blocks, not_remote_ip_blocks;
};

struct AuthzOperation {
  std::vector<std::string> hosts, not_hosts;
  std::vector<std::string> ports, not_ports;
  std::vector<std::string> methods, not_methods;
  std::vector<std::string> paths, not_paths;
};

struct AuthzCondition {
  std::string key;
  std::vector<std::string> values, not_values;
};

struct AuthzRule {
  std::vector<AuthzSource> from;
  std::vector<AuthzOperation> to;
  std::vector<AuthzCondition> when;
};

struct AuthorizationPolicy {
  ObjectRef ref;
  std::optional<std::map<std::string, std::string>> selector;  // matchLabels; nullopt = none
  AuthzAction action = AuthzAction::kAllow;
  std::string provider;  // CUSTOM only
  std::vector<AuthzRule> rules;
  bool dry_run = false;  // annotation istio.io/dry-run: "true"
};

std::optional<AuthorizationPolicy> ParseAuthorizationPolicy(const SourceDocument& doc, Diagnostics& diag);

// Everything the RBAC engine needs, as validated objects.
struct RbacPolicies {
  std::vector<RbacConfig> rbac_configs;  // ClusterRbacConfig and RbacConfig objects
  std::vector<ServiceRole> roles;
  std::vector<ServiceRoleBinding> bindings;
  std::vector<AuthorizationPolicy> authorization_policies;
  std::vector<Service> services;
};

// Parses one document of an RBAC kind (or Service) into `out`. False if the kind is not ours.
bool AddRbacDocument(const SourceDocument& doc, const std::string& domain, RbacPolicies& out, Diagnostics& diag);
// Reports objects of the same kind, namespace and name (T has an ObjectRef `ref`).
template <typename T>
void CheckDuplicateObjects(const std::vector<T>& items, Diagnostics& diag) {
  std::map<std::string, const ObjectRef*> seen;
  for (const auto& item : items) {
    const std::string id = item.ref.kind + " " + item.ref.Id();
    auto [it, inserted] = seen.emplace(id, &item.ref);
    if (!inserted) {
      diag.Add(
          {Diagnostic::Severity::kError, item.ref.file, item.ref.line, id, "metadata.name",
           "duplicate object (first defined at " + it->second->file + ":" + std::to_string(it->second->line) + ")"});
    }
  }
}

// Cross-object validation: one RbacConfig singleton, duplicate names, bindings referring to
// missing roles (reported as warnings, as Istio does), roles without bindings.
void ValidateRbacPolicies(const RbacPolicies& policies, Diagnostics& diag);

}  // namespace meshid::rbac
