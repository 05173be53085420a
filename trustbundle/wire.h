// The trust bundle stream's wire form, without any transport: the TrustBundle resource (the CA's
// root certificates) built from a PEM bundle, the check of a bundle and of a received response,
// and the declaration of the stream (TrustBundleType) that xds/ serves (server → agent) and
// receives (agent) with. The service and message layout:
// api/meshid/trustbundle/v1/trustbundle.proto.
//
// The stream's rules: xDS state of the world for one singleton resource ("bundle"), with node.id
// required on the first request, strict ACKs, and a resend of the bundle an agent holds (after a
// reconnect) ACKed without being applied again: the revocation stream's rules.
//
// A bundle is canonical: 1 to kMaxTrustBundleRoots self-signed CA certificates, sorted by
// fingerprint without duplicates, and its fingerprint field is their RootSetFingerprint
// (common/fingerprint.h), so the same roots are the same bytes and the same version on every
// server. Functions here are pure and thread-safe.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/fingerprint.h"
#include "envoy/service/discovery/v3/discovery.pb.h"
#include "meshid/trustbundle/v1/trustbundle.pb.h"
#include "xds/resource.h"
#include "xds/resource_type.h"

namespace meshid::trustbundle {

inline constexpr absl::string_view kTrustBundleTypeUrl = "type.googleapis.com/meshid.trustbundle.v1.TrustBundle";
// The name of the one resource of the stream.
inline constexpr absl::string_view kTrustBundleName = "bundle";

// Bounds on what a sender makes and a receiver accepts: a rotation holds two or three roots; a
// root is well under 2 KiB.
inline constexpr int kMaxTrustBundleRoots = 16;
inline constexpr size_t kMaxRootBytes = 64 << 10;
// A serialized TrustBundle within the bounds above (the roots with their framing, the
// fingerprints, the trust domain).
inline constexpr size_t kMaxTrustBundleBytes = kMaxTrustBundleRoots * (kMaxRootBytes + 16) + 4096;

// The stream's declaration, for xds::StreamServer and xds::SotwClient.
const xds::ResourceType& TrustBundleType();

// The roots of a PEM bundle (a `--ca-root` file, a kept bundle): every CERTIFICATE block a
// self-signed CA certificate of at most kMaxRootBytes, as DER, duplicates dropped, sorted by
// fingerprint; 1 to kMaxTrustBundleRoots distinct roots. InvalidArgument starting with `context`
// (e.g. the file name) and naming the certificate (its position and subject).
absl::StatusOr<std::vector<std::string>> RootsFromPem(absl::string_view pem, absl::string_view context);

// The bundle a server publishes: `trust_domain` (a valid SPIFFE trust domain) and the roots of
// `roots_pem` as RootsFromPem returns them, with their fingerprint. InvalidArgument starting with
// "trust_domain: " or "roots_pem: ".
absl::StatusOr<meshid::trustbundle::v1::TrustBundle> MakeTrustBundle(absl::string_view trust_domain,
                                                                     absl::string_view roots_pem);

// Checks that `bundle` is canonical (see above): trust_domain valid, 1 to kMaxTrustBundleRoots
// roots each a self-signed CA certificate of at most kMaxRootBytes, sorted by fingerprint without
// duplicates, fingerprint equal to RootSetFingerprint of the roots. InvalidArgument whose message
// starts with the field that is wrong ("trust_domain", "root_der", "root_der[<i>]",
// "fingerprint").
absl::Status ValidateTrustBundle(const meshid::trustbundle::v1::TrustBundle& bundle);

// The stream's version of `bundle`: the first 16 hex digits of SHA-256 over its fingerprint
// field, so the same set of roots has the same version everywhere.
std::string TrustBundleVersion(const meshid::trustbundle::v1::TrustBundle& bundle);

// `bundle` as the stream's resource, named kTrustBundleName, versioned TrustBundleVersion.
xds::Resource TrustBundleResource(const meshid::trustbundle::v1::TrustBundle& bundle);

// Decodes a response of the stream: the type URL, exactly one resource of the type that parses
// within kMaxTrustBundleBytes, a canonical bundle (ValidateTrustBundle, fields named
// "resources[0].<field>"), and version_info equal to its TrustBundleVersion. Whether the agent
// may trust it is the receiver's check (receiver.h). InvalidArgument saying which field is wrong.
absl::StatusOr<meshid::trustbundle::v1::TrustBundle> DecodeTrustBundleResponse(
    const envoy::service::discovery::v3::DiscoveryResponse& response);

}  // namespace meshid::trustbundle
