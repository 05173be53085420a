#include "common/csr.h"

#include <openssl/pem.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/keys.h"
#include "common/pem.h"

namespace meshid {

absl::StatusOr<std::string> BuildCsrPem(EVP_PKEY* key, const CsrOptions& options) {
  X509ReqPtr req(X509_REQ_new());
  X509_REQ_set_version(req.get(), 0);
  X509_REQ_set_pubkey(req.get(), key);
  STACK_OF(X509_EXTENSION)* exts = sk_X509_EXTENSION_new_null();
  auto cleanup_exts = [&] { sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free); };
  if (!options.uri_sans.empty() || !options.dns_sans.empty()) {
    GeneralNamesPtr names(sk_GENERAL_NAME_new_null());
    auto add = [&](int type, const std::string& value) {
      GENERAL_NAME* gn = GENERAL_NAME_new();
      ASN1_IA5STRING* s = ASN1_IA5STRING_new();
      ASN1_STRING_set(s, value.data(), static_cast<int>(value.size()));
      GENERAL_NAME_set0_value(gn, type, s);
      sk_GENERAL_NAME_push(names.get(), gn);
    };
    for (const auto& uri : options.uri_sans) add(GEN_URI, uri);
    for (const auto& dns : options.dns_sans) add(GEN_DNS, dns);
    sk_X509_EXTENSION_push(exts, X509V3_EXT_i2d(NID_subject_alt_name, 1, names.get()));
  }
  if (options.request_ca) {
    BASIC_CONSTRAINTS* bc = BASIC_CONSTRAINTS_new();
    bc->ca = 1;
    sk_X509_EXTENSION_push(exts, X509V3_EXT_i2d(NID_basic_constraints, 1, bc));
    BASIC_CONSTRAINTS_free(bc);
  }
  if (sk_X509_EXTENSION_num(exts) > 0) X509_REQ_add_extensions(req.get(), exts);
  cleanup_exts();
  auto kind = ClassifyKey(key);
  const EVP_MD* md = (kind.ok() && *kind == KeyAlgorithm::kEcdsaP384) ? EVP_sha384() : EVP_sha256();
  if (EVP_PKEY_get_base_id(key) == EVP_PKEY_ED25519 || EVP_PKEY_get_base_id(key) == EVP_PKEY_ED448) md = nullptr;
  if (X509_REQ_sign(req.get(), key, md) <= 0) return absl::InternalError("signing CSR failed: " + DrainOpenSslErrors());
  unsigned char* der = nullptr;
  int len = i2d_X509_REQ(req.get(), &der);
  if (len <= 0) return absl::InternalError("encoding CSR failed: " + DrainOpenSslErrors());
  std::string out = EncodePem("CERTIFICATE REQUEST", absl::string_view(reinterpret_cast<char*>(der), len));
  OPENSSL_free(der);
  return out;
}

}  // namespace meshid
