// Loading a whole policy configuration: every Istio security kind meshid understands, from
// files and directories, validated together. Unknown kinds are skipped with a warning (a
// manifest directory usually holds Deployments too).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "authz/authn_policies.h"
#include "rbac/diagnostics.h"
#include "rbac/policies.h"
#include "rbac/yaml_source.h"

namespace meshid::authz {

struct PolicySet {
  rbac::RbacPolicies rbac;         // RBAC kinds and Services
  std::vector<AuthnPolicy> authn;  // Policy and MeshPolicy
  std::vector<PeerAuthentication> peer_authn;
  std::vector<RequestAuthentication> request_authn;
  std::vector<DestinationRule> destination_rules;
};

struct LoadOptions {
  rbac::ReadOptions read;
  std::string domain = "cluster.local";  // service FQDN suffix: <name>.<ns>.svc.<domain>
};

// Parses documents into `out` and runs the cross-object checks. Findings go to `diag`.
void AddDocuments(const std::vector<rbac::SourceDocument>& docs, const LoadOptions& options, PolicySet& out,
                  Diagnostics& diag);
void ValidatePolicySet(const PolicySet& set, Diagnostics& diag);

// Reads, parses and validates `paths` (files or directories). Every finding is in `diag`;
// the result is InvalidArgument (listing all errors) if any document is broken.
absl::StatusOr<PolicySet> LoadPolicySet(const std::vector<std::string>& paths, const LoadOptions& options,
                                        Diagnostics& diag);
// The same for text already in memory (`file` names it in findings).
absl::StatusOr<PolicySet> ParsePolicySet(absl::string_view text, const std::string& file, const LoadOptions& options,
                                         Diagnostics& diag);

}  // namespace meshid::authz
