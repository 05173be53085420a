#include "sds/resource.h"

#include <openssl/crypto.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "envoy/extensions/transport_sockets/tls/v3/secret.pb.h"

namespace meshid::sds {
namespace {

using envoy::extensions::transport_sockets::tls::v3::Secret;

// Wipes every inline byte string of a Secret before it is destroyed.
void WipeSecretMessage(Secret& secret) {
  auto wipe = [](std::string* s) {
    if (!s->empty()) OPENSSL_cleanse(s->data(), s->size());
  };
  if (secret.has_tls_certificate()) {
    auto* tls = secret.mutable_tls_certificate();
    if (tls->private_key().has_inline_bytes()) wipe(tls->mutable_private_key()->mutable_inline_bytes());
  }
}

absl::StatusOr<xds::ResourcePtr> Finish(Secret& secret, uint64_t generation) {
  auto resource = std::make_shared<xds::Resource>();
  resource->name = secret.name();
  resource->generation = generation;
  std::string bytes;
  const bool ok = secret.SerializeToString(&bytes);
  WipeSecretMessage(secret);
  if (!ok) {
    SecretString wipe(std::move(bytes));
    return absl::InternalError("serializing the SDS secret failed");
  }
  resource->version = xds::ContentVersion(bytes);
  resource->body = SecretString(std::move(bytes));
  return xds::ResourcePtr(std::move(resource));
}

}  // namespace

const xds::ResourceType& SecretType() {
  static const xds::ResourceType type{
      .type_url = std::string(kSecretTypeUrl),
      .sotw_method = "/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets",
  };
  return type;
}

absl::StatusOr<xds::ResourcePtr> MakeTlsCertificateResource(absl::string_view name, absl::string_view chain_pem,
                                                            absl::string_view private_key_pem, uint64_t generation) {
  if (chain_pem.empty() || private_key_pem.empty()) {
    return absl::InvalidArgumentError("a tls_certificate secret needs a certificate chain and a private key");
  }
  Secret secret;
  secret.set_name(std::string(name));
  auto* tls = secret.mutable_tls_certificate();
  tls->mutable_certificate_chain()->set_inline_bytes(std::string(chain_pem));
  tls->mutable_private_key()->set_inline_bytes(std::string(private_key_pem));
  return Finish(secret, generation);
}

absl::StatusOr<xds::ResourcePtr> MakeValidationContextResource(absl::string_view name,
                                                               const std::vector<std::string>& root_pems,
                                                               uint64_t generation, absl::string_view crl_pem) {
  if (root_pems.empty()) return absl::InvalidArgumentError("a validation_context secret needs at least one root");
  std::string bundle;
  for (const auto& pem : root_pems) {
    bundle += pem;
    if (!pem.empty() && pem.back() != '\n') bundle += '\n';
  }
  Secret secret;
  secret.set_name(std::string(name));
  auto* context = secret.mutable_validation_context();
  context->mutable_trusted_ca()->set_inline_bytes(std::move(bundle));
  if (!crl_pem.empty()) {
    context->mutable_crl()->set_inline_bytes(std::string(crl_pem));
    // meshid's CRL covers the certificates it issues (leaves); its issuers have no CRL of their
    // own, and Envoy would otherwise refuse every chain for want of one.
    context->set_only_verify_leaf_cert_crl(true);
  }
  return Finish(secret, generation);
}

absl::StatusOr<TlsCertificateParts> ReadTlsCertificate(const xds::Resource& resource) {
  Secret secret;
  if (!secret.ParseFromArray(resource.body.view().data(), static_cast<int>(resource.body.view().size())) ||
      !secret.has_tls_certificate()) {
    WipeSecretMessage(secret);
    return absl::InvalidArgumentError(absl::StrCat("SDS resource \"", resource.name, "\" is not a tls_certificate"));
  }
  TlsCertificateParts parts;
  parts.chain_pem = secret.tls_certificate().certificate_chain().inline_bytes();
  parts.private_key_pem = SecretString(std::string(secret.tls_certificate().private_key().inline_bytes()));
  WipeSecretMessage(secret);
  return parts;
}

absl::StatusOr<ValidationContextParts> ReadValidationContext(const xds::Resource& resource) {
  Secret secret;
  if (!secret.ParseFromArray(resource.body.view().data(), static_cast<int>(resource.body.view().size())) ||
      !secret.has_validation_context()) {
    return absl::InvalidArgumentError(absl::StrCat("SDS resource \"", resource.name, "\" is not a validation_context"));
  }
  return ValidationContextParts{secret.validation_context().trusted_ca().inline_bytes(),
                                secret.validation_context().crl().inline_bytes()};
}

}  // namespace meshid::sds
