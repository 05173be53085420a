// The registration stream's wire form, without any transport: the EntrySet resource (the
// registration entries of one parent), the check of a received response, and the stream's
// declaration (EntrySetType) that xds/ serves (server → agent) and receives (agent) with. The
// service and message layout: api/meshid/registration/v1/registration.proto.
//
// The stream's rules: xDS state of the world for one resource per stream, named after the
// agent's authenticated SPIFFE ID (the names a request lists are ignored), node.id required,
// strict ACKs. Functions here are pure and thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "envoy/service/discovery/v3/discovery.pb.h"
#include "meshid/registration/v1/registration.pb.h"
#include "store/records.h"
#include "xds/resource.h"
#include "xds/resource_type.h"

namespace meshid::registration {

inline constexpr absl::string_view kEntrySetTypeUrl = "type.googleapis.com/meshid.registration.v1.EntrySet";

// Bounds on what a receiver accepts.
inline constexpr int kMaxEntriesPerParent = 20000;
inline constexpr size_t kMaxEntrySetBytes = 32 << 20;

// The stream's declaration, for xds::StreamServer and xds::SotwClient.
const xds::ResourceType& EntrySetType();

// The entries of `parent_id` (each must have that parent) as the stream's resource named
// `parent_id`: version = "<registry generation>.<digest of the bytes>".
xds::Resource EntrySetResource(const std::string& parent_id, const std::vector<RegistryEntry>& entries,
                               int64_t registry_generation);

// Decodes a response of the stream for the agent `own_id` ("" before the agent knows its own
// SPIFFE ID: the set's parent then stands in): the type URL, exactly one resource
// of the type that parses, the set's parent and every entry's parent equal to `own_id`, every
// spiffe_id a SPIFFE ID, every entry with 1 to 64 canonical sorted selectors, no identity twice,
// max_ttl_seconds not negative, and version_info's generation equal to the set's.
// InvalidArgument saying which field is wrong.
absl::StatusOr<meshid::registration::v1::EntrySet> DecodeEntrySetResponse(
    const envoy::service::discovery::v3::DiscoveryResponse& response, absl::string_view own_id);

}  // namespace meshid::registration
