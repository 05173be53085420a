// The revocation stream's wire form, without any transport: the RevocationList resource, the
// check of a received response, and the declaration of the stream (RevocationListType) that
// xds/ serves (server → agent) and receives (agent) with. The service and message layout:
// api/meshid/revocation/v1/revocation.proto.
//
// The stream's rules: xDS state of the world for one singleton resource ("crl"), with node.id
// required on the first request, strict ACKs, and a resend of the list an agent runs (after a
// reconnect) ACKed without being applied again. Functions here are pure and thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "envoy/service/discovery/v3/discovery.pb.h"
#include "meshid/revocation/v1/revocation.pb.h"
#include "xds/resource.h"
#include "xds/resource_type.h"

namespace meshid::revocation {

inline constexpr absl::string_view kRevocationListTypeUrl = "type.googleapis.com/meshid.revocation.v1.RevocationList";
// The name of the one resource of the stream.
inline constexpr absl::string_view kRevocationListName = "crl";

// Bounds on what a receiver accepts: 100,000 revocations are about 5 MB of DER.
inline constexpr size_t kMaxRevocationListBytes = 64 << 20;
inline constexpr int kMaxIssuerChain = 8;

// The stream's declaration, for xds::StreamServer and xds::SotwClient.
const xds::ResourceType& RevocationListType();

// `list` as the stream's resource: version = "<crl_number>.<digest of the bytes>", so a CRL
// re-signed under the same number (a later nextUpdate) is a new version every stream receives.
xds::Resource RevocationListResource(const meshid::revocation::v1::RevocationList& list);

// Decodes a response of the stream: the type URL, exactly one resource of the type that parses,
// a CRL present, at most kMaxIssuerChain issuer certificates, and version_info equal to its
// crl_number (before its "."). The CRL itself is checked by the receiver (receiver.h). InvalidArgument saying
// which field is wrong.
absl::StatusOr<meshid::revocation::v1::RevocationList> DecodeRevocationResponse(
    const envoy::service::discovery::v3::DiscoveryResponse& response);

}  // namespace meshid::revocation
