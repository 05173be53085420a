// `meshid apply`: Istio YAML in, a new policy version in the store out; and the way back, from
// a stored version (or a received snapshot) to a compiled engine.
//
// What a version is. Every version is the whole policy set, and `meshid apply -f FILE|DIR`
// works the way `kubectl apply -f` does on a cluster's Istio objects: the objects in the files
// are created or replaced by (kind, namespace, name); objects not mentioned stay as they are.
// That is what an Istio user expects (applying one AuthorizationPolicy must not delete the
// others). `--prune` makes the files the complete set instead (objects not in them are
// deleted, like `kubectl apply --prune` over a directory kept in git), and `meshid delete -f`
// removes the objects the files name. An apply that changes nothing creates no version.
//
// Stored form. Each object is kept as one canonical YAML document re-emitted from what the
// loader read (apiVersion, kind, metadata.name/namespace/labels/annotations/creationTimestamp,
// spec), with an explicit namespace (documents without one get --namespace, as kubectl does)
// and the file:line it came from. Kinds that are not policy kinds (a Deployment in a manifest
// directory) are skipped with a warning.
//
// Validation. The resulting set is validated as a whole, with the same loader and compiler as
// `meshid authz check` and the proxy: every finding is reported with file, line, object and
// field path (objects kept from the stored version name their stored source), and nothing is
// stored if there is any error. Key sets (JWKS) are not fetched here: a proxy that cannot load
// one NACKs the version and keeps its last good policy.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "authz/policy_engine.h"
#include "authz/policy_set.h"
#include "common/clock.h"
#include "policy/wire.h"
#include "rbac/diagnostics.h"
#include "store/policy_repository.h"

namespace meshid::policy {

// The kinds `meshid apply` stores (everything authz::PolicySet understands).
bool IsPolicyKind(absl::string_view kind);

enum class ApplyMode {
  kUpsert,  // create or replace the objects named; keep the rest
  kPrune,   // the objects named are the whole set
  kDelete,  // remove the objects named (NotFound if one does not exist)
};

struct ApplyPlan {
  std::vector<StoredPolicyDocument> documents;  // the resulting whole set, sorted
  std::vector<std::string> changes;             // "AuthorizationPolicy demo/allow-a created", ...
  int created = 0;
  int changed = 0;
  int unchanged = 0;
  int deleted = 0;
  bool no_change() const { return created == 0 && changed == 0 && deleted == 0; }
  std::string Summary() const;  // "2 created, 1 changed, 0 deleted, 5 unchanged"
};

// Plans `incoming` (read by rbac::ReadDocuments) onto `base` (the current version's documents)
// and validates the result. InvalidArgument listing every finding (also in `diag`).
//
// creationTimestamp follows Kubernetes: an object created without one gets `now` (plus its
// position in microseconds, so objects of one apply keep their order), and an object replaced
// without one keeps the stored one. Istio resolves conflicts by the oldest object, so this keeps
// "oldest wins" meaning what it means on a cluster.
absl::StatusOr<ApplyPlan> PlanPolicyApply(const std::vector<rbac::SourceDocument>& incoming,
                                          const std::vector<StoredPolicyDocument>& base, ApplyMode mode,
                                          const authz::LoadOptions& options, absl::Time now, rbac::Diagnostics& diag);

struct ApplyResult {
  ApplyPlan plan;
  int64_t version = 0;  // the new version, or the unchanged current one
};

// Reads `paths`, plans onto the store's newest version, and commits a new version unless
// nothing changed. A concurrent apply (Aborted from the store) is retried on the new version,
// re-validating, a few times. Errors: InvalidArgument with every finding (nothing stored),
// the store's errors otherwise.
absl::StatusOr<ApplyResult> ApplyPolicyFiles(PolicyRepository& store, const std::vector<std::string>& paths,
                                             ApplyMode mode, const authz::LoadOptions& options, const Clock& clock,
                                             const std::string& created_by, rbac::Diagnostics& diag);

// Parses and validates a stored set or a received snapshot (each document's findings name
// its source). InvalidArgument listing every error.
absl::StatusOr<authz::PolicySet> ParseStoredDocuments(const std::vector<StoredPolicyDocument>& documents,
                                                      const authz::LoadOptions& options, rbac::Diagnostics& diag);
absl::StatusOr<authz::PolicySet> ParseSnapshot(const meshid::policy::v1::PolicySnapshot& snapshot,
                                               const authz::LoadOptions& options, rbac::Diagnostics& diag);

// An authz::JwksFetcher that fetches nothing ("not fetched while validating"), for validating a set
// without network access or side effects (`meshid apply`, the server).
std::shared_ptr<const authz::JwksFetcher> NoFetchJwksFetcher();

// Validates `set` by compiling it (without fetching key sets). InvalidArgument on failure.
absl::Status CompileCheck(authz::PolicySet set, const authz::PolicyEngineOptions& options);

}  // namespace meshid::policy
