#include "common/csr.h"

#include <openssl/pem.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/keys.h"
#include "common/pem.h"
#include "common/status_macros.h"
#include "common/x509.h"

namespace meshid {

absl::StatusOr<std::string> BuildCsrPem(EVP_PKEY* key, const CsrOptions& options) {
  X509ReqPtr req(X509_REQ_new());
  if (!req) return OpenSslError("allocating the CSR");
  if (X509_REQ_set_version(req.get(), 0) != 1) return OpenSslError("setting the CSR version");
  if (X509_REQ_set_pubkey(req.get(), key) != 1) return OpenSslError("setting the CSR public key");
  X509ExtensionStackPtr exts(sk_X509_EXTENSION_new_null());
  if (!exts) return OpenSslError("allocating the CSR extensions");
  auto add = [&](absl::StatusOr<X509ExtensionPtr> ext) -> absl::Status {
    if (!ext.ok()) return ext.status();
    if (sk_X509_EXTENSION_push(exts.get(), ext->get()) <= 0) return OpenSslError("adding a CSR extension");
    ext->release();  // the stack owns it now
    return absl::OkStatus();
  };
  if (!options.uri_sans.empty() || !options.dns_sans.empty()) {
    std::vector<std::pair<int, std::string>> sans;
    for (const auto& uri : options.uri_sans) sans.emplace_back(GEN_URI, uri);
    for (const auto& dns : options.dns_sans) sans.emplace_back(GEN_DNS, dns);
    MESHID_ASSIGN_OR_RETURN(GeneralNamesPtr names, MakeGeneralNames(sans));
    MESHID_RETURN_IF_ERROR(add(MakeExtension(NID_subject_alt_name, /*critical=*/true, names.get())));
  }
  if (options.request_ca) {
    BasicConstraintsPtr bc(BASIC_CONSTRAINTS_new());
    if (!bc) return OpenSslError("allocating basicConstraints");
    bc->ca = 1;
    MESHID_RETURN_IF_ERROR(add(MakeExtension(NID_basic_constraints, /*critical=*/true, bc.get())));
  }
  if (sk_X509_EXTENSION_num(exts.get()) > 0 && X509_REQ_add_extensions(req.get(), exts.get()) != 1) {
    return OpenSslError("adding the CSR extensions");
  }
  auto kind = ClassifyKey(key);
  const EVP_MD* md = (kind.ok() && *kind == KeyAlgorithm::kEcdsaP384) ? EVP_sha384() : EVP_sha256();
  if (EVP_PKEY_get_base_id(key) == EVP_PKEY_ED25519 || EVP_PKEY_get_base_id(key) == EVP_PKEY_ED448) md = nullptr;
  if (X509_REQ_sign(req.get(), key, md) <= 0) return OpenSslError("signing the CSR");
  MESHID_ASSIGN_OR_RETURN(std::string der, EncodeDer([&](unsigned char** out) { return i2d_X509_REQ(req.get(), out); },
                                                     "encoding the CSR"));
  return EncodePem("CERTIFICATE REQUEST", der);
}

}  // namespace meshid
