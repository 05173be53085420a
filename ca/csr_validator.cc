#include "ca/csr_validator.h"

#include <openssl/err.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/pem.h"

namespace meshid {
namespace {

absl::Status Refuse(absl::string_view why) { return absl::InvalidArgumentError(absl::StrCat("CSR ", why)); }

using ExtensionsPtr = std::unique_ptr<STACK_OF(X509_EXTENSION), void (*)(STACK_OF(X509_EXTENSION)*)>;

void FreeExtensions(STACK_OF(X509_EXTENSION)* exts) { sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free); }

absl::Status CheckSans(const X509_EXTENSION* ext, const SpiffeId& caller) {
  GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(X509V3_EXT_d2i(const_cast<X509_EXTENSION*>(ext))));
  if (!names) return Refuse("has a malformed subjectAltName extension");
  const std::string want = caller.ToString();
  int count = sk_GENERAL_NAME_num(names.get());
  for (int i = 0; i < count; ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), i);
    if (name->type != GEN_URI) {
      const char* kind = name->type == GEN_DNS ? "DNS" : name->type == GEN_IPADD ? "IP" : name->type == GEN_EMAIL ? "email" : "non-URI";
      return Refuse(absl::StrCat("asks for a ", kind, " SAN; only the caller's SPIFFE ID ", want, " may be requested"));
    }
    const ASN1_IA5STRING* uri = name->d.uniformResourceIdentifier;
    std::string got(reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)), ASN1_STRING_length(uri));
    if (got != want) {
      return Refuse(absl::StrCat("asks for URI SAN \"", got, "\" but the caller is authenticated as ", want));
    }
  }
  if (count > 1) return Refuse("repeats the URI SAN; an SVID has exactly one");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ValidatedCsr> ValidateCsr(absl::string_view pem, const SpiffeId& caller) {
  if (pem.empty()) return Refuse("is empty");
  if (pem.size() > kMaxCsrPemBytes) {
    return Refuse(absl::StrCat("is ", pem.size(), " bytes, larger than the limit of ", kMaxCsrPemBytes));
  }
  PemParseOptions options;
  options.max_input_bytes = kMaxCsrPemBytes;
  options.max_blocks = 4;
  auto blocks = ParsePemBlocks(pem, options);
  if (!blocks.ok()) return Refuse(absl::StrCat("is not valid PEM: ", blocks.status().message()));
  if (blocks->size() != 1) return Refuse(absl::StrCat("must be one PEM block, found ", blocks->size()));
  const PemBlock& block = blocks->front();
  if (block.type != "CERTIFICATE REQUEST" && block.type != "NEW CERTIFICATE REQUEST") {
    return Refuse(absl::StrCat("PEM block is \"", block.type, "\", expected \"CERTIFICATE REQUEST\""));
  }
  const unsigned char* p = reinterpret_cast<const unsigned char*>(block.der.data());
  X509ReqPtr req(d2i_X509_REQ(nullptr, &p, static_cast<long>(block.der.size())));
  if (!req || p != reinterpret_cast<const unsigned char*>(block.der.data()) + block.der.size()) {
    ERR_clear_error();
    return Refuse("is not a valid DER PKCS#10 request");
  }
  EVP_PKEY* key = X509_REQ_get0_pubkey(req.get());
  if (key == nullptr) {
    ERR_clear_error();
    return Refuse("has an unreadable public key");
  }
  auto algorithm = ClassifyKey(key);
  if (!algorithm.ok()) return Refuse(absl::StrCat("key: ", algorithm.status().message()));
  if (X509_REQ_verify(req.get(), key) != 1) {
    ERR_clear_error();
    return Refuse("signature does not verify (no proof of possession of the private key)");
  }
  ExtensionsPtr exts(X509_REQ_get_extensions(req.get()), FreeExtensions);
  ERR_clear_error();
  for (int i = 0; exts && i < sk_X509_EXTENSION_num(exts.get()); ++i) {
    const X509_EXTENSION* ext = sk_X509_EXTENSION_value(exts.get(), i);
    int nid = OBJ_obj2nid(X509_EXTENSION_get_object(const_cast<X509_EXTENSION*>(ext)));
    if (nid == NID_subject_alt_name) {
      if (absl::Status s = CheckSans(ext, caller); !s.ok()) return s;
    } else if (nid == NID_basic_constraints) {
      BASIC_CONSTRAINTS* bc = static_cast<BASIC_CONSTRAINTS*>(X509V3_EXT_d2i(const_cast<X509_EXTENSION*>(ext)));
      bool ca = bc != nullptr && bc->ca;
      BASIC_CONSTRAINTS_free(bc);
      if (bc == nullptr) return Refuse("has a malformed basicConstraints extension");
      if (ca) return Refuse("asks for CA:TRUE; workload certificates cannot be CAs");
    }
  }
  ValidatedCsr out;
  EVP_PKEY_up_ref(key);
  out.public_key.reset(key);
  out.algorithm = *algorithm;
  return out;
}

}  // namespace meshid
