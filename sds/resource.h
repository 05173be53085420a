// SDS resources: xds::Resource snapshots holding a serialized
// envoy.extensions.transport_sockets.tls.v3.Secret, versioned by content (xds::ContentVersion),
// and the declaration of the SDS stream (Envoy's rules, no additions). The functions are pure
// and thread-safe; the resources they return are immutable and may be shared.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/secret.h"
#include "xds/resource.h"
#include "xds/resource_type.h"

namespace meshid::sds {

inline constexpr absl::string_view kSecretTypeUrl =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
// The workload certificate and key (Istio's name).
inline constexpr absl::string_view kWorkloadResourceName = "default";
// The trust bundle (Istio's name).
inline constexpr absl::string_view kRootResourceName = "ROOTCA";

// The SDS stream: Secret resources on SecretDiscoveryService.StreamSecrets (and DeltaSecrets).
const xds::ResourceType& SecretType();

// Secret{name, tls_certificate{certificate_chain.inline_bytes, private_key.inline_bytes}}.
// InvalidArgument without a chain or a key.
absl::StatusOr<xds::ResourcePtr> MakeTlsCertificateResource(absl::string_view name, absl::string_view chain_pem,
                                                            absl::string_view private_key_pem, uint64_t generation);

// Secret{name, validation_context{trusted_ca.inline_bytes = concatenated roots}}; with a CRL
// (PEM) also crl.inline_bytes and only_verify_leaf_cert_crl (the CRL covers leaves only).
// InvalidArgument without a root.
absl::StatusOr<xds::ResourcePtr> MakeValidationContextResource(absl::string_view name,
                                                               const std::vector<std::string>& root_pems,
                                                               uint64_t generation, absl::string_view crl_pem = "");

// What the two kinds of resource above hold, read back (for the agent's Workload API, which
// serves the same certificates in another form). InvalidArgument for a resource of another kind.
struct TlsCertificateParts {
  std::string chain_pem;
  SecretString private_key_pem;
};
absl::StatusOr<TlsCertificateParts> ReadTlsCertificate(const xds::Resource& resource);
struct ValidationContextParts {
  std::string roots_pem;
  std::string crl_pem;  // "" without a CRL
};
absl::StatusOr<ValidationContextParts> ReadValidationContext(const xds::Resource& resource);

}  // namespace meshid::sds
