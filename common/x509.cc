#include "common/x509.h"

#include <openssl/err.h>
#include <openssl/pem.h>

#include <ctime>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/pem.h"

namespace meshid {

absl::StatusOr<X509Ptr> CertFromDer(absl::string_view der) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  X509* cert = d2i_X509(nullptr, &p, static_cast<long>(der.size()));
  if (cert == nullptr || p != reinterpret_cast<const unsigned char*>(der.data()) + der.size()) {
    X509_free(cert);
    return absl::InvalidArgumentError("malformed DER certificate: " + DrainOpenSslErrors());
  }
  return X509Ptr(cert);
}

absl::StatusOr<std::vector<X509Ptr>> CertsFromPem(absl::string_view pem, absl::string_view context) {
  std::string prefix = context.empty() ? "" : absl::StrCat(context, ": ");
  PemParseOptions options;
  options.allow_text_outside_blocks = true;
  auto blocks = ParsePemBlocks(pem, options);
  if (!blocks.ok()) return absl::InvalidArgumentError(absl::StrCat(prefix, blocks.status().message()));
  std::vector<X509Ptr> certs;
  for (size_t i = 0; i < blocks->size(); ++i) {
    const PemBlock& block = (*blocks)[i];
    if (block.type != "CERTIFICATE") {
      return absl::InvalidArgumentError(
          absl::StrCat(prefix, "PEM block ", i + 1, " is \"", block.type, "\", expected CERTIFICATE"));
    }
    auto cert = CertFromDer(block.der);
    if (!cert.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(prefix, "certificate ", i + 1, ": ", cert.status().message()));
    }
    certs.push_back(std::move(*cert));
  }
  return certs;
}

absl::StatusOr<X509Ptr> CertFromPem(absl::string_view pem, absl::string_view context) {
  auto certs = CertsFromPem(pem, context);
  if (!certs.ok()) return certs.status();
  if (certs->size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(context.empty() ? "" : absl::StrCat(context, ": "),
                                                   "expected one certificate, found ", certs->size()));
  }
  return std::move(certs->front());
}

std::string CertToDer(X509* cert) {
  unsigned char* der = nullptr;
  int len = i2d_X509(cert, &der);
  if (len <= 0) return "";
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

std::string CertToPem(X509* cert) { return EncodePem("CERTIFICATE", CertToDer(cert)); }

X509Ptr CopyCert(X509* cert) {
  X509_up_ref(cert);
  return X509Ptr(cert);
}

std::string SerialHex(X509* cert) {
  BignumPtr bn(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr));
  if (!bn) return "";
  char* hex = BN_bn2hex(bn.get());
  std::string out = hex != nullptr ? hex : "";
  OPENSSL_free(hex);
  return out;
}

namespace {
absl::Time Asn1TimeToAbsl(const ASN1_TIME* t) {
  struct tm tm {};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return absl::InfinitePast();
  return absl::FromUnixSeconds(timegm(&tm));
}

std::vector<std::string> SansOfType(X509* cert, int type) {
  std::vector<std::string> out;
  GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  if (!names) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), i);
    if (name->type != type) continue;
    const ASN1_IA5STRING* s = type == GEN_URI ? name->d.uniformResourceIdentifier : name->d.dNSName;
    out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)), ASN1_STRING_length(s));
  }
  return out;
}
}  // namespace

absl::Time NotBefore(X509* cert) { return Asn1TimeToAbsl(X509_get0_notBefore(cert)); }
absl::Time NotAfter(X509* cert) { return Asn1TimeToAbsl(X509_get0_notAfter(cert)); }
std::vector<std::string> UriSans(X509* cert) { return SansOfType(cert, GEN_URI); }
std::vector<std::string> DnsSans(X509* cert) { return SansOfType(cert, GEN_DNS); }

bool IsCa(X509* cert) { return X509_check_ca(cert) >= 1 && (X509_get_extension_flags(cert) & EXFLAG_CA) != 0; }

bool IsSelfSigned(X509* cert) { return X509_self_signed(cert, 1) == 1; }

absl::Status VerifyCertChain(X509* leaf, const std::vector<X509*>& intermediates, const std::vector<X509*>& roots,
                             absl::Time at) {
  X509StorePtr store(X509_STORE_new());
  for (X509* root : roots) X509_STORE_add_cert(store.get(), root);
  STACK_OF(X509)* untrusted = sk_X509_new_null();
  for (X509* c : intermediates) sk_X509_push(untrusted, c);
  X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  absl::Status result = absl::OkStatus();
  if (X509_STORE_CTX_init(ctx.get(), store.get(), leaf, untrusted) != 1) {
    result = absl::InternalError("X509_STORE_CTX_init failed: " + DrainOpenSslErrors());
  } else {
    X509_STORE_CTX_set_time(ctx.get(), 0, absl::ToTimeT(at));
    if (X509_verify_cert(ctx.get()) != 1) {
      int err = X509_STORE_CTX_get_error(ctx.get());
      result = absl::PermissionDeniedError(
          absl::StrCat("certificate chain does not verify: ", X509_verify_cert_error_string(err)));
    }
  }
  sk_X509_free(untrusted);
  ERR_clear_error();
  return result;
}

}  // namespace meshid
