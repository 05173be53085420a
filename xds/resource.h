// The unit every meshid xDS stream carries: one immutable version of one named resource of a
// type (an SDS Secret, a policy snapshot, ...), shared by every stream that sends it. The
// serialized bytes may hold a private key, so they live in a SecretString and are wiped when the
// last stream lets go of the snapshot.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/secret.h"

namespace meshid::xds {

struct Resource {
  std::string name;
  // Opaque version: equal content has equal versions (for SDS also across agent restarts, which
  // matters for Delta's initial_resource_versions).
  std::string version;
  // Orders snapshots of the same name: a higher generation is newer. Assigned by the provider.
  uint64_t generation = 0;
  // The serialized resource message (the value of the google.protobuf.Any sent on the wire).
  SecretString body;
};
using ResourcePtr = std::shared_ptr<const Resource>;

// The first 16 hex digits of SHA-256 over `body`: the version of a resource whose version is
// its content.
std::string ContentVersion(absl::string_view body);

// A version_info of meshid's own streams (revocation, registration): "" (nothing applied yet,
// 0) or "<number>.<hex digest>" with a canonical decimal number, returned. InvalidArgument
// otherwise, naming what the number is (`number_name`, e.g. "CRL number").
absl::StatusOr<int64_t> ParseNumberedVersion(absl::string_view version_info, absl::string_view number_name);

// `s` cut to `max` bytes with "..." after, for quoting peer-supplied text in an error.
std::string ClipForError(absl::string_view s, size_t max = 80);

}  // namespace meshid::xds
