// The policy stream's wire rules, without any transport: snapshots (building, checking a
// received one), and the xDS state of the world for the singleton PolicySnapshot resource on
// the serving side (server → agent, agent → proxy) and on the receiving side (agent, proxy).
// The service and its message layout: api/meshid/policy/v1/policy.proto.
//
// Rules (Envoy's xds_protocol.rst, as the SDS server follows them):
//  - every response carries version_info (the snapshot version in decimal) and a fresh nonce;
//  - the first request of a stream must carry node.id; it (and any later request without a
//    nonce) starts a subscription: the current snapshot is sent;
//  - a request echoing the latest nonce without error_detail is an ACK, with error_detail a
//    NACK: the rejected version is never sent again on that stream, the next one is;
//  - a request echoing an older nonce is stale and changes nothing;
//  - at most one response awaits its ACK/NACK: a receiver busy compiling a large set gets the
//    newest version next, not every version in between.
//
// Not thread-safe; each stream serializes its calls.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "envoy/service/discovery/v3/discovery.pb.h"
#include "meshid/policy/v1/policy.pb.h"
#include "store/records.h"

namespace meshid::policy {

inline constexpr absl::string_view kPolicySnapshotTypeUrl = "type.googleapis.com/meshid.policy.v1.PolicySnapshot";
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

// Who is at the other end of a stream, from its first request's Node.
struct PolicyNode {
  std::string id;          // node.id
  std::string service;     // node.cluster
  std::string namespace_;  // node.metadata["NAMESPACE"]
};

// "" → 0, else a decimal version; InvalidArgument otherwise.
absl::StatusOr<int64_t> ParsePolicyVersion(absl::string_view version_info);

// ---- the serving side of one stream ----

struct PolicyRequestResult {
  bool first = false;  // the stream's first request: node() is known from now on
  bool stale = false;  // an older or repeated nonce: nothing changed
  bool ack = false;
  bool nack = false;
  int64_t version = 0;  // what the ACK/NACK refers to
  std::string error;    // the NACK's error_detail.message
};

class PolicyStreamServerState {
 public:
  // Interprets a request. InvalidArgument (the stream should end with it) for another type_url,
  // a first request without node.id, or a malformed version_info.
  absl::StatusOr<PolicyRequestResult> OnRequest(const envoy::service::discovery::v3::DiscoveryRequest& request);

  // Takes in the newest snapshot (null is ignored).
  void OnSnapshot(PolicySnapshotPtr snapshot);

  // The next response, if one is due: the current snapshot when the stream (re)subscribed or
  // the version changed, unless it is the rejected one or a response still awaits its ACK.
  // `nonce` must be fresh; afterwards the response counts as sent.
  std::optional<envoy::service::discovery::v3::DiscoveryResponse> TakeResponse(const std::string& nonce);

  bool started() const { return started_; }
  const PolicyNode& node() const { return node_; }
  int64_t applied_version() const { return applied_version_; }        // ACKed (or reported at subscribe)
  int64_t rejected_version() const { return rejected_.value_or(0); }  // last NACKed, 0: none
  const std::string& last_error() const { return last_error_; }

 private:
  bool started_ = false;
  PolicyNode node_;
  PolicySnapshotPtr latest_;
  bool must_send_ = false;
  bool awaiting_ = false;
  int64_t sent_version_ = -1;  // none yet (version 0 is the empty set)
  std::string last_nonce_;
  int64_t applied_version_ = 0;
  std::optional<int64_t> rejected_;
  std::string last_error_;
};

// ---- the receiving side (agent toward the server, proxy toward the agent) ----

class PolicyStreamClientState {
 public:
  explicit PolicyStreamClientState(PolicyNode node) : node_(std::move(node)) {}

  // The first request of a new stream: node, type_url, version_info = the version applied.
  envoy::service::discovery::v3::DiscoveryRequest StartStream();

  struct Received {
    // A valid snapshot to apply; call OnApplied with the outcome. Null when the reply is
    // already decided (`reply`): a NACK for an invalid response, or an ACK for the version
    // already applied (a resend after reconnecting).
    PolicySnapshotPtr snapshot;
    std::optional<envoy::service::discovery::v3::DiscoveryRequest> reply;
  };
  Received OnResponse(const envoy::service::discovery::v3::DiscoveryResponse& response);

  // The ACK (status OK: the snapshot is now the applied one) or NACK for the snapshot
  // OnResponse handed out.
  envoy::service::discovery::v3::DiscoveryRequest OnApplied(const absl::Status& status);

  const PolicySnapshotPtr& applied() const { return applied_; }
  int64_t applied_version() const { return applied_ ? applied_->version() : 0; }
  int64_t rejected_version() const { return rejected_version_; }
  const std::string& last_error() const { return last_error_; }

 private:
  envoy::service::discovery::v3::DiscoveryRequest Reply(const absl::Status& status, int64_t rejected);

  PolicyNode node_;
  std::string nonce_;
  PolicySnapshotPtr applied_;
  PolicySnapshotPtr pending_;
  int64_t rejected_version_ = 0;
  std::string last_error_;
};

}  // namespace meshid::policy
