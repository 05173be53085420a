// SDS resources as the server hands them out: one immutable, shared snapshot per (name,
// version), holding the serialized envoy.extensions.transport_sockets.tls.v3.Secret. The
// serialized bytes may contain a private key, so they live in a SecretString and are wiped when
// the last stream lets go of the snapshot.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/secret.h"

namespace meshid::sds {

inline constexpr absl::string_view kSecretTypeUrl =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
// The workload certificate and key (Istio's name).
inline constexpr absl::string_view kWorkloadResourceName = "default";
// The trust bundle (Istio's name).
inline constexpr absl::string_view kRootResourceName = "ROOTCA";

struct SdsResource {
  std::string name;
  // Opaque version: the first 16 hex digits of SHA-256 over the serialized Secret, so equal
  // content has equal versions (also across agent restarts, which matters for Delta's
  // initial_resource_versions).
  std::string version;
  // Orders snapshots of the same name: a higher generation is newer. Assigned by the provider.
  uint64_t generation = 0;
  // Serialized envoy.extensions.transport_sockets.tls.v3.Secret.
  SecretString serialized_secret;
};
using SdsResourcePtr = std::shared_ptr<const SdsResource>;

// Secret{name, tls_certificate{certificate_chain.inline_bytes, private_key.inline_bytes}}.
absl::StatusOr<SdsResourcePtr> MakeTlsCertificateResource(absl::string_view name, absl::string_view chain_pem,
                                                          absl::string_view private_key_pem, uint64_t generation);

// Secret{name, validation_context{trusted_ca.inline_bytes = concatenated roots}}.
absl::StatusOr<SdsResourcePtr> MakeValidationContextResource(absl::string_view name,
                                                             const std::vector<std::string>& root_pems,
                                                             uint64_t generation);

}  // namespace meshid::sds
