#include "policy/wire.h"

#include <algorithm>
#include <memory>
#include <tuple>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/sha256.h"

namespace meshid::policy {
namespace {

using envoy::service::discovery::v3::DiscoveryRequest;
using envoy::service::discovery::v3::DiscoveryResponse;
using meshid::policy::v1::PolicyDocument;
using meshid::policy::v1::PolicySnapshot;

// Feeds one length-prefixed field (8 bytes big-endian length, then the bytes) to `hasher`.
void Field(Sha256Hasher& hasher, absl::string_view s) {
  char len[8];
  uint64_t n = s.size();
  for (int i = 7; i >= 0; --i, n >>= 8) len[i] = static_cast<char>(n & 0xff);
  hasher.Update(absl::string_view(len, sizeof(len)));
  hasher.Update(s);
}

// Protobuf strings are std::string; the rest of the code speaks absl::string_view.
absl::string_view View(const std::string& s) { return absl::string_view(s.data(), s.size()); }

std::string Clip(absl::string_view s, size_t max = 80) {
  return s.size() <= max ? std::string(s) : absl::StrCat(s.substr(0, max), "...");
}

}  // namespace

std::string PolicyDigest(const google::protobuf::RepeatedPtrField<PolicyDocument>& documents) {
  Sha256Hasher hasher;
  for (const auto& doc : documents) {
    Field(hasher, View(doc.kind()));
    Field(hasher, View(doc.namespace_()));
    Field(hasher, View(doc.name()));
    Field(hasher, View(doc.yaml()));
  }
  return hasher.HexDigest();
}

std::string PolicyDigest(const std::vector<StoredPolicyDocument>& documents) {
  Sha256Hasher hasher;
  for (const auto& doc : documents) {
    Field(hasher, doc.kind);
    Field(hasher, doc.namespace_);
    Field(hasher, doc.name);
    Field(hasher, doc.yaml);
  }
  return hasher.HexDigest();
}

PolicySnapshotPtr MakePolicySnapshot(const PolicyVersion& version) {
  auto snapshot = std::make_shared<PolicySnapshot>();
  snapshot->set_version(version.info.version);
  snapshot->set_created_at_unix_micros(absl::ToUnixMicros(version.info.created_at));
  for (const auto& d : version.documents) {
    PolicyDocument* doc = snapshot->add_documents();
    doc->set_kind(d.kind);
    doc->set_namespace_(d.namespace_);
    doc->set_name(d.name);
    doc->set_yaml(d.yaml);
    doc->set_source(d.source);
  }
  snapshot->set_digest(PolicyDigest(snapshot->documents()));
  return snapshot;
}

absl::Status ValidatePolicySnapshot(const PolicySnapshot& snapshot) {
  if (snapshot.version() < 0) return absl::InvalidArgumentError("snapshot.version: must not be negative");
  if (snapshot.version() == 0 && snapshot.documents_size() > 0) {
    return absl::InvalidArgumentError("snapshot.version: version 0 is the empty policy set, it has no documents");
  }
  if (static_cast<size_t>(snapshot.documents_size()) > kMaxPolicyDocuments) {
    return absl::InvalidArgumentError(
        absl::StrCat("snapshot.documents: ", snapshot.documents_size(), " documents, more than ", kMaxPolicyDocuments));
  }
  for (int i = 0; i < snapshot.documents_size(); ++i) {
    const PolicyDocument& doc = snapshot.documents(i);
    const std::string field = absl::StrCat("snapshot.documents[", i, "]");
    if (doc.kind().empty()) return absl::InvalidArgumentError(absl::StrCat(field, ".kind: must not be empty"));
    if (doc.name().empty()) return absl::InvalidArgumentError(absl::StrCat(field, ".name: must not be empty"));
    if (doc.yaml().empty()) return absl::InvalidArgumentError(absl::StrCat(field, ".yaml: must not be empty"));
    if (i > 0) {
      const PolicyDocument& prev = snapshot.documents(i - 1);
      if (std::tie(prev.kind(), prev.namespace_(), prev.name()) >= std::tie(doc.kind(), doc.namespace_(), doc.name())) {
        return absl::InvalidArgumentError(absl::StrCat(field, ": ", Clip(View(doc.kind())), " ",
                                                       Clip(View(doc.namespace_())), "/", Clip(View(doc.name())),
                                                       " is out of order or listed twice"));
      }
    }
  }
  std::string digest = PolicyDigest(snapshot.documents());
  if (digest != snapshot.digest()) {
    return absl::InvalidArgumentError(absl::StrCat("snapshot.digest: \"", Clip(View(snapshot.digest())),
                                                   "\" does not match the documents (", digest, ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> ParsePolicyVersion(absl::string_view version_info) {
  if (version_info.empty()) return 0;
  int64_t v = 0;
  if (version_info.size() > 19 || !absl::SimpleAtoi(version_info, &v) || v < 0 ||
      !std::all_of(version_info.begin(), version_info.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return absl::InvalidArgumentError(
        absl::StrCat("version_info \"", Clip(version_info, 40), "\" is not a policy version (a decimal number)"));
  }
  return v;
}

absl::StatusOr<PolicySnapshotPtr> DecodePolicyResponse(const DiscoveryResponse& response) {
  if (View(response.type_url()) != kPolicySnapshotTypeUrl) {
    return absl::InvalidArgumentError(
        absl::StrCat("type_url \"", Clip(View(response.type_url())), "\" is not ", kPolicySnapshotTypeUrl));
  }
  if (response.resources_size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("a policy response carries exactly one resource, this one ", response.resources_size()));
  }
  const auto& any = response.resources(0);
  if (View(any.type_url()) != kPolicySnapshotTypeUrl) {
    return absl::InvalidArgumentError(
        absl::StrCat("resources[0].type_url \"", Clip(View(any.type_url())), "\" is not ", kPolicySnapshotTypeUrl));
  }
  if (any.value().size() > kMaxPolicySnapshotBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("resources[0]: ", any.value().size(), " bytes, more than ", kMaxPolicySnapshotBytes));
  }
  auto snapshot = std::make_shared<PolicySnapshot>();
  if (!snapshot->ParseFromString(any.value())) {
    return absl::InvalidArgumentError("resources[0]: not a serialized meshid.policy.v1.PolicySnapshot");
  }
  if (auto s = ValidatePolicySnapshot(*snapshot); !s.ok()) return s;
  auto version = ParsePolicyVersion(View(response.version_info()));
  if (!version.ok()) return version.status();
  if (*version != snapshot->version()) {
    return absl::InvalidArgumentError(
        absl::StrCat("version_info ", *version, " differs from the snapshot's version ", snapshot->version()));
  }
  return PolicySnapshotPtr(std::move(snapshot));
}

// ---- the stream's declaration ----

namespace {

// What the policy stream checks of every request beyond xDS (the type URL and node.id are
// checked by xds/): our type URL named, a decimal version_info, node fields of sane length.
absl::Status ValidatePolicyRequest(const DiscoveryRequest& request, bool first) {
  if (View(request.type_url()) != kPolicySnapshotTypeUrl) {
    return absl::InvalidArgumentError(absl::StrCat("type_url \"", Clip(View(request.type_url())),
                                                   "\" is not served here; want ", kPolicySnapshotTypeUrl));
  }
  if (auto version = ParsePolicyVersion(View(request.version_info())); !version.ok()) return version.status();
  if (first && (request.node().id().size() > 256 || request.node().cluster().size() > 253)) {
    return absl::InvalidArgumentError("node.id (256) or node.cluster (253) is too long");
  }
  return absl::OkStatus();
}

}  // namespace

const xds::ResourceType& PolicySnapshotType() {
  static const xds::ResourceType type{
      .type_url = std::string(kPolicySnapshotTypeUrl),
      .sotw_method = "/meshid.policy.v1.PolicyDistributionService/StreamPolicies",
      .sotw =
          {
              .one_response_in_flight = true,
              .require_node_id = true,
              .wildcard_names = {std::string(kPolicySnapshotName)},
              .strict_ack = true,
              .validate_request = ValidatePolicyRequest,
          },
      .client_acks_unchanged_without_handler = true,
  };
  return type;
}

xds::Resource PolicySnapshotResource(const PolicySnapshot& snapshot) {
  xds::Resource resource;
  resource.name = std::string(kPolicySnapshotName);
  resource.version = absl::StrCat(snapshot.version());
  resource.body = SecretString(snapshot.SerializeAsString());
  return resource;
}

envoy::config::core::v3::Node ToXdsNode(const PolicyNode& node) {
  envoy::config::core::v3::Node out;
  out.set_id(node.id);
  out.set_cluster(node.service);
  if (!node.namespace_.empty()) {
    (*out.mutable_metadata()->mutable_fields())[std::string(kNodeNamespaceKey)].set_string_value(node.namespace_);
  }
  return out;
}

PolicyNode PolicyNodeOf(const envoy::config::core::v3::Node& node) {
  PolicyNode out;
  out.id = node.id();
  out.service = node.cluster();
  auto it = node.metadata().fields().find(std::string(kNodeNamespaceKey));
  if (it != node.metadata().fields().end() && it->second.has_string_value() &&
      it->second.string_value().size() <= 253) {
    out.namespace_ = it->second.string_value();
  }
  return out;
}

}  // namespace meshid::policy
