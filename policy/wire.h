// The policy stream's wire form, without any transport: snapshots (building, checking a
// received one) and the declaration of the stream (PolicySnapshotType) that xds/ serves
// (server → agent, agent → proxy) and receives (agent, proxy) with. The service and its message
// layout: api/meshid/policy/v1/policy.proto.
//
// The stream's rules: xDS state of the world (xds/sotw_state.h) for one singleton resource,
// the PolicySnapshot, with these additions (xds::SotwRules):
//  - version_info is the snapshot version in decimal, on every request too;
//  - the first request of a stream must carry node.id; it (and any later request without a
//    nonce) subscribes to the snapshot, naming no resource: the current snapshot is sent;
//  - strict ACKs: only the latest nonce answers, once; a stale NACK rejects nothing; an "ACK"
//    reporting another version is a rejection; a rejected version is never sent again on that
//    stream, even after a re-subscription, the next one is;
//  - at most one response awaits its ACK/NACK: a receiver busy compiling a large set gets the
//    newest version next, not every version in between;
//  - a receiver ACKs a resend of the snapshot it runs (after reconnecting) without applying it.
//
// Functions here are pure and thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "envoy/config/core/v3/base.pb.h"
#include "envoy/service/discovery/v3/discovery.pb.h"
#include "meshid/policy/v1/policy.pb.h"
#include "store/records.h"
#include "xds/resource.h"
#include "xds/resource_type.h"

namespace meshid::policy {

inline constexpr absl::string_view kPolicySnapshotTypeUrl = "type.googleapis.com/meshid.policy.v1.PolicySnapshot";
// The name of the one resource of the stream (never on the wire: requests name no resource).
inline constexpr absl::string_view kPolicySnapshotName = "snapshot";
// The Node metadata key carrying a proxy's namespace (Istio's key).
inline constexpr absl::string_view kNodeNamespaceKey = "NAMESPACE";

// Bounds on what a receiver accepts.
inline constexpr size_t kMaxPolicyDocuments = 100000;
inline constexpr size_t kMaxPolicySnapshotBytes = 64 << 20;

// An immutable snapshot shared by every stream that sends it.
using PolicySnapshotPtr = std::shared_ptr<const meshid::policy::v1::PolicySnapshot>;

// Lower-case hex SHA-256 over the documents in order: for each, kind, namespace, name and yaml,
// each preceded by its length as 8 bytes big-endian. (`source` is informational and left out,
// so re-applying the same content from another file keeps the digest.)
std::string PolicyDigest(const google::protobuf::RepeatedPtrField<meshid::policy::v1::PolicyDocument>& documents);
std::string PolicyDigest(const std::vector<StoredPolicyDocument>& documents);

// The snapshot of a stored version (documents already sorted by the store).
PolicySnapshotPtr MakePolicySnapshot(const PolicyVersion& version);

// Checks a received snapshot: version >= 0 (version 0 is the empty set a server serves before
// anything was applied, so proxies start with Istio's defaults), at most kMaxPolicyDocuments
// documents, each with a
// kind, a name and yaml, sorted strictly by (kind, namespace, name) (so none twice), and the
// digest matching. InvalidArgument saying what is wrong.
absl::Status ValidatePolicySnapshot(const meshid::policy::v1::PolicySnapshot& snapshot);

// Decodes a DiscoveryResponse of the policy stream: the type_url, exactly one resource of the
// snapshot type that parses and validates, and version_info equal to its version.
absl::StatusOr<PolicySnapshotPtr> DecodePolicyResponse(
    const envoy::service::discovery::v3::DiscoveryResponse& response);

// The policy stream's declaration (see above), for xds::StreamServer and xds::SotwClient.
const xds::ResourceType& PolicySnapshotType();

// `snapshot` as the stream's resource: its version in decimal, its serialized bytes.
xds::Resource PolicySnapshotResource(const meshid::policy::v1::PolicySnapshot& snapshot);

// Who is at the other end of a stream, from its first request's Node.
struct PolicyNode {
  std::string id;          // node.id
  std::string service;     // node.cluster
  std::string namespace_;  // node.metadata["NAMESPACE"]
};

// The Node a receiver sends, and back (a namespace that is not a string of at most 253 bytes
// is left out).
envoy::config::core::v3::Node ToXdsNode(const PolicyNode& node);
PolicyNode PolicyNodeOf(const envoy::config::core::v3::Node& node);

// "" → 0, else a decimal version; InvalidArgument otherwise.
absl::StatusOr<int64_t> ParsePolicyVersion(absl::string_view version_info);

}  // namespace meshid::policy
