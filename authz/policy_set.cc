#include "authz/policy_set.h"

#include "absl/strings/str_cat.h"

namespace meshid::authz {

using rbac::Diagnostic;

void AddDocuments(const std::vector<rbac::SourceDocument>& docs, const LoadOptions& options, PolicySet& out,
                  Diagnostics& diag) {
  for (const auto& doc : docs) {
    try {
      if (rbac::AddRbacDocument(doc, options.domain, out.rbac, diag)) continue;
      if (doc.kind == "Policy" || doc.kind == "MeshPolicy") {
        if (auto p = ParseAuthnPolicy(doc, diag)) out.authn.push_back(std::move(*p));
      } else if (doc.kind == "PeerAuthentication") {
        if (auto p = ParsePeerAuthentication(doc, diag)) out.peer_authn.push_back(std::move(*p));
      } else if (doc.kind == "RequestAuthentication") {
        if (auto p = ParseRequestAuthentication(doc, diag)) out.request_authn.push_back(std::move(*p));
      } else if (doc.kind == "DestinationRule") {
        if (auto p = ParseDestinationRule(doc, diag)) out.destination_rules.push_back(std::move(*p));
      } else {
        diag.Add({Diagnostic::Severity::kWarning, doc.file, doc.line, doc.ObjectName(), "kind",
                  absl::StrCat("kind ", doc.kind, " (", doc.api_version, ") is not a policy kind; skipped")});
      }
    } catch (const YAML::Exception& e) {
      // yaml-cpp may throw on malformed nodes; the document is rejected, never half-read.
      diag.Add({Diagnostic::Severity::kError, doc.file, e.mark.line >= 0 ? e.mark.line + 1 : doc.line, doc.ObjectName(),
                "", absl::StrCat("malformed document: ", e.msg)});
    }
  }
}

void ValidatePolicySet(const PolicySet& set, Diagnostics& diag) {
  rbac::ValidateRbacPolicies(set.rbac, diag);
  rbac::CheckDuplicateObjects(set.authn, diag);
  rbac::CheckDuplicateObjects(set.peer_authn, diag);
  rbac::CheckDuplicateObjects(set.request_authn, diag);
  rbac::CheckDuplicateObjects(set.destination_rules, diag);
}

absl::StatusOr<PolicySet> LoadPolicySet(const std::vector<std::string>& paths, const LoadOptions& options,
                                        Diagnostics& diag) {
  auto docs = rbac::ReadDocuments(paths, options.read, diag);
  PolicySet set;
  AddDocuments(docs, options, set, diag);
  ValidatePolicySet(set, diag);
  if (diag.has_errors()) return diag.ToStatus();
  return set;
}

absl::StatusOr<PolicySet> ParsePolicySet(absl::string_view text, const std::string& file, const LoadOptions& options,
                                         Diagnostics& diag) {
  auto docs = rbac::ParseDocuments(text, file, options.read, diag);
  PolicySet set;
  AddDocuments(docs, options, set, diag);
  ValidatePolicySet(set, diag);
  if (diag.has_errors()) return diag.ToStatus();
  return set;
}

}  // namespace meshid::authz
