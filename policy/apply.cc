#include "policy/apply.h"

#include <yaml-cpp/yaml.h>

#include <map>
#include <set>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "rbac/yaml_source.h"

namespace meshid::policy {
namespace {

using rbac::Diagnostic;
using rbac::SourceDocument;
using Key = std::tuple<std::string, std::string, std::string>;

constexpr int kApplyAttempts = 5;

bool IsClusterScoped(absl::string_view kind) { return kind == "ClusterRbacConfig" || kind == "MeshPolicy"; }

// The seed spelling RBACConfig is the same kind as RbacConfig.
std::string CanonicalKind(const std::string& kind) { return kind == "RBACConfig" ? "RbacConfig" : kind; }

Key KeyOf(const SourceDocument& doc) {
  std::string kind = CanonicalKind(doc.kind);
  std::string ns = IsClusterScoped(kind) ? "" : doc.meta.namespace_;
  return {kind, ns, doc.meta.name};
}
Key KeyOf(const StoredPolicyDocument& doc) { return {doc.kind, doc.namespace_, doc.name}; }

std::string KeyName(const Key& key) {
  const auto& [kind, ns, name] = key;
  return ns.empty() ? absl::StrCat(kind, " ", name) : absl::StrCat(kind, " ", ns, "/", name);
}

// RFC 3339 in UTC with "Z" and as many fractional digits as needed (Kubernetes' form).
std::string Rfc3339(absl::Time t) { return absl::FormatTime("%Y-%m-%d%ET%H:%M:%E*SZ", t, absl::UTCTimeZone()); }

// The canonical stored text of one object.
std::string Emit(const SourceDocument& doc) {
  const Key key = KeyOf(doc);
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "apiVersion" << YAML::Value << doc.api_version;
  out << YAML::Key << "kind" << YAML::Value << std::get<0>(key);
  out << YAML::Key << "metadata" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "name" << YAML::Value << doc.meta.name;
  if (!std::get<1>(key).empty()) out << YAML::Key << "namespace" << YAML::Value << std::get<1>(key);
  auto emit_map = [&](const char* name, const std::map<std::string, std::string>& m) {
    if (m.empty()) return;
    out << YAML::Key << name << YAML::Value << YAML::BeginMap;
    for (const auto& [k, v] : m) out << YAML::Key << k << YAML::Value << YAML::DoubleQuoted << v;
    out << YAML::EndMap;
  };
  emit_map("labels", doc.meta.labels);
  emit_map("annotations", doc.meta.annotations);
  if (doc.meta.creation_timestamp) {
    out << YAML::Key << "creationTimestamp" << YAML::Value << YAML::DoubleQuoted
        << Rfc3339(*doc.meta.creation_timestamp);
  }
  out << YAML::EndMap;
  if (doc.spec.IsDefined() && !doc.spec.IsNull()) out << YAML::Key << "spec" << YAML::Value << doc.spec;
  out << YAML::EndMap;
  return std::string(out.c_str(), out.size()) + "\n";
}

std::string SourceOf(const SourceDocument& doc) { return absl::StrCat(doc.file, ":", doc.line); }

// Findings about stored documents carry the stored source as their file ("dir/x.yaml:12
// (stored)"); their line numbers would point into the canonical text, so they are dropped.
// Returns the status of all findings (InvalidArgument listing every error, or OK).
absl::Status CopyFindings(const rbac::Diagnostics& from, const std::set<std::string>& stored_labels,
                          rbac::Diagnostics& to) {
  rbac::Diagnostics fixed;
  for (Diagnostic d : from.items()) {
    if (stored_labels.contains(d.file)) d.line = 0;
    to.Add(d);
    fixed.Add(std::move(d));
  }
  return fixed.ToStatus();
}

std::string StoredLabel(const StoredPolicyDocument& doc) {
  return absl::StrCat(doc.source.empty() ? KeyName(KeyOf(doc)) : doc.source, " (stored)");
}

// Parses stored documents into SourceDocuments labelled with their stored source. Findings go
// to `diag` with the labels' lines still set (CopyFindings drops them).
std::vector<SourceDocument> ParseStored(const std::vector<StoredPolicyDocument>& documents,
                                        const authz::LoadOptions& options, int64_t first_order,
                                        std::set<std::string>& labels, rbac::Diagnostics& diag) {
  std::vector<SourceDocument> out;
  for (const auto& stored : documents) {
    const std::string label = StoredLabel(stored);
    labels.insert(label);
    const size_t errors_before = diag.error_count();
    auto docs =
        rbac::ParseDocuments(stored.yaml, label, options.read, diag, first_order + static_cast<int64_t>(out.size()));
    if (docs.size() != 1) {
      if (diag.error_count() == errors_before) {
        diag.Add({Diagnostic::Severity::kError, label, 0, KeyName(KeyOf(stored)), "",
                  absl::StrCat("a stored policy document must hold exactly one object, this one has ", docs.size())});
      }
      continue;
    }
    if (KeyOf(docs[0]) != KeyOf(stored)) {
      diag.Add({Diagnostic::Severity::kError, label, 0, KeyName(KeyOf(stored)), "metadata",
                absl::StrCat("the document is ", KeyName(KeyOf(docs[0])), ", not the object it is stored as")});
      continue;
    }
    docs[0].line = 0;
    out.push_back(std::move(docs[0]));
  }
  return out;
}

class NoFetch final : public authz::JwksFetcher {
 public:
  absl::StatusOr<std::string> Fetch(const std::string& uri) const override {
    return absl::UnavailableError(absl::StrCat(uri, ": key sets are not fetched while validating"));
  }
};

}  // namespace

bool IsPolicyKind(absl::string_view kind) {
  static const std::set<absl::string_view> kKinds = {
      "ClusterRbacConfig",     "RbacConfig",     "RBACConfig", "ServiceRole", "ServiceRoleBinding",
      "AuthorizationPolicy",   "Service",        "Policy",     "MeshPolicy",  "PeerAuthentication",
      "RequestAuthentication", "DestinationRule"};
  return kKinds.contains(kind);
}

std::string ApplyPlan::Summary() const {
  return absl::StrCat(created, " created, ", changed, " changed, ", deleted, " deleted, ", unchanged, " unchanged");
}

std::shared_ptr<const authz::JwksFetcher> NoFetchJwksFetcher() { return std::make_shared<NoFetch>(); }

absl::Status CompileCheck(authz::PolicySet set, const authz::PolicyEngineOptions& options) {
  // The engine compiled here checks no request, so it never asks for the time.
  class NoTimeClock final : public Clock {
   public:
    absl::Time Now() const override { return absl::InfinitePast(); }
  };
  const NoTimeClock no_time;  // outlives the engine, which is dropped before returning
  authz::PolicyEngineOptions o = options;
  o.jwks_fetcher = NoFetchJwksFetcher();
  auto engine = authz::PolicyEngine::Create(std::move(set), no_time, o);
  if (!engine.ok())
    return absl::InvalidArgumentError(absl::StrCat("the policy set does not compile: ", engine.status().message()));
  return absl::OkStatus();
}

absl::StatusOr<ApplyPlan> PlanPolicyApply(const std::vector<SourceDocument>& incoming,
                                          const std::vector<StoredPolicyDocument>& base, ApplyMode mode,
                                          const authz::LoadOptions& options, absl::Time now, rbac::Diagnostics& diag) {
  rbac::Diagnostics local;
  std::set<std::string> stored_labels;
  std::map<Key, const StoredPolicyDocument*> base_by_key;
  for (const auto& d : base) base_by_key[KeyOf(d)] = &d;

  // Creation times of the stored objects, for replacements that carry none.
  auto stored_created = [&](const StoredPolicyDocument& stored) -> std::optional<absl::Time> {
    rbac::Diagnostics ignored;
    auto docs = rbac::ParseDocuments(stored.yaml, "stored", options.read, ignored);
    if (docs.size() != 1) return std::nullopt;
    return docs[0].meta.creation_timestamp;
  };

  ApplyPlan plan;
  std::map<Key, StoredPolicyDocument> result;
  std::vector<SourceDocument> to_validate;  // the incoming objects as they will be stored
  std::set<Key> named;
  int position = 0;
  for (const SourceDocument& in : incoming) {
    if (!IsPolicyKind(in.kind)) {
      local.Add({Diagnostic::Severity::kWarning, in.file, in.line, in.ObjectName(), "kind",
                 absl::StrCat("kind ", in.kind, " (", in.api_version, ") is not a policy kind; not stored")});
      continue;
    }
    const Key key = KeyOf(in);
    named.insert(key);
    if (mode == ApplyMode::kDelete) {
      if (!base_by_key.contains(key)) {
        local.Add({Diagnostic::Severity::kError, in.file, in.line, KeyName(key), "", "not found: nothing to delete"});
      }
      continue;
    }
    SourceDocument doc = in;
    doc.kind = std::get<0>(key);
    auto found = base_by_key.find(key);
    if (!doc.meta.creation_timestamp) {
      doc.meta.creation_timestamp = found != base_by_key.end() ? stored_created(*found->second) : std::nullopt;
      if (!doc.meta.creation_timestamp) doc.meta.creation_timestamp = now + absl::Microseconds(position);
    }
    ++position;
    result[key] = StoredPolicyDocument{std::get<0>(key), std::get<1>(key), std::get<2>(key), Emit(doc), SourceOf(in)};
    to_validate.push_back(std::move(doc));
  }

  // What stays from the stored version.
  std::vector<StoredPolicyDocument> kept;
  for (const auto& d : base) {
    const Key key = KeyOf(d);
    if (mode != ApplyMode::kPrune && !named.contains(key)) {
      kept.push_back(d);
      result[key] = d;
    }
  }
  for (auto& doc : ParseStored(kept, options, static_cast<int64_t>(to_validate.size()), stored_labels, local)) {
    to_validate.push_back(std::move(doc));
  }

  authz::PolicySet set;
  authz::AddDocuments(to_validate, options, set, local);
  authz::ValidatePolicySet(set, local);
  if (!local.has_errors()) {
    authz::PolicyEngineOptions engine_options;
    if (auto s = CompileCheck(std::move(set), engine_options); !s.ok()) {
      local.Add({Diagnostic::Severity::kError, "", 0, "", "", std::string(s.message())});
    }
  }
  MESHID_RETURN_IF_ERROR(CopyFindings(local, stored_labels, diag));

  // The changes, in key order.
  for (const auto& [key, doc] : result) {
    auto found = base_by_key.find(key);
    if (found == base_by_key.end()) {
      ++plan.created;
      plan.changes.push_back(absl::StrCat(KeyName(key), " created"));
    } else if (found->second->yaml != doc.yaml) {
      ++plan.changed;
      plan.changes.push_back(absl::StrCat(KeyName(key), " changed"));
    } else {
      ++plan.unchanged;
    }
  }
  for (const auto& [key, doc] : base_by_key) {
    if (!result.contains(key)) {
      ++plan.deleted;
      plan.changes.push_back(absl::StrCat(KeyName(key), " deleted"));
    }
  }
  for (auto& [key, doc] : result) {
    // An unchanged object keeps where it was first applied from.
    auto found = base_by_key.find(key);
    if (found != base_by_key.end() && found->second->yaml == doc.yaml) doc.source = found->second->source;
    plan.documents.push_back(std::move(doc));
  }
  return plan;
}

absl::StatusOr<ApplyResult> ApplyPolicyFiles(PolicyRepository& store, const std::vector<std::string>& paths,
                                             ApplyMode mode, const authz::LoadOptions& options, const Clock& clock,
                                             const std::string& created_by, rbac::Diagnostics& diag) {
  rbac::Diagnostics read_diag;
  std::vector<SourceDocument> incoming = rbac::ReadDocuments(paths, options.read, read_diag);
  if (read_diag.has_errors()) {
    for (const auto& d : read_diag.items()) diag.Add(d);
    return read_diag.ToStatus();
  }
  if (incoming.empty()) {
    for (const auto& d : read_diag.items()) diag.Add(d);
    return absl::InvalidArgumentError("no objects found in the given files");
  }
  absl::Status last;
  for (int attempt = 0; attempt < kApplyAttempts; ++attempt) {
    MESHID_ASSIGN_OR_RETURN(int64_t head, store.PolicyHeadVersion());
    std::vector<StoredPolicyDocument> base;
    if (head > 0) {
      MESHID_ASSIGN_OR_RETURN(PolicyVersion current, store.GetPolicyVersion(head));
      base = std::move(current.documents);
    }
    rbac::Diagnostics attempt_diag;
    for (const auto& d : read_diag.items()) attempt_diag.Add(d);
    absl::Time now = clock.Now();
    auto plan = PlanPolicyApply(incoming, base, mode, options, now, attempt_diag);
    if (!plan.ok()) {
      for (const auto& d : attempt_diag.items()) diag.Add(d);
      return plan.status();
    }
    if (plan->no_change()) {
      for (const auto& d : attempt_diag.items()) diag.Add(d);
      return ApplyResult{std::move(*plan), head};
    }
    PolicyVersionInfo info;
    info.created_at = now;
    info.created_by = created_by;
    const char* verb = mode == ApplyMode::kDelete ? "delete" : mode == ApplyMode::kPrune ? "apply --prune" : "apply";
    info.description = absl::StrCat(verb, " -f ", absl::StrJoin(paths, " -f "), ": ", plan->Summary());
    info.digest = PolicyDigest(plan->documents);
    info.document_count = static_cast<int64_t>(plan->documents.size());
    auto version = store.CommitPolicyVersion(head, info, plan->documents);
    if (version.ok()) {
      for (const auto& d : attempt_diag.items()) diag.Add(d);
      return ApplyResult{std::move(*plan), *version};
    }
    if (!absl::IsAborted(version.status())) return version.status();
    last = version.status();  // another apply won: re-plan on its version
  }
  return absl::AbortedError(
      absl::StrCat("gave up after ", kApplyAttempts, " concurrent applies won: ", last.message()));
}

absl::StatusOr<authz::PolicySet> ParseStoredDocuments(const std::vector<StoredPolicyDocument>& documents,
                                                      const authz::LoadOptions& options, rbac::Diagnostics& diag) {
  rbac::Diagnostics local;
  std::set<std::string> labels;
  std::vector<SourceDocument> docs = ParseStored(documents, options, 0, labels, local);
  authz::PolicySet set;
  authz::AddDocuments(docs, options, set, local);
  authz::ValidatePolicySet(set, local);
  MESHID_RETURN_IF_ERROR(CopyFindings(local, labels, diag));
  return set;
}

absl::StatusOr<authz::PolicySet> ParseSnapshot(const meshid::policy::v1::PolicySnapshot& snapshot,
                                               const authz::LoadOptions& options, rbac::Diagnostics& diag) {
  std::vector<StoredPolicyDocument> documents;
  documents.reserve(snapshot.documents_size());
  for (const auto& d : snapshot.documents()) {
    documents.push_back(StoredPolicyDocument{d.kind(), d.namespace_(), d.name(), d.yaml(), d.source()});
  }
  return ParseStoredDocuments(documents, options, diag);
}

}  // namespace meshid::policy
