#include "common/x509.h"

#include <openssl/err.h>
#include <openssl/pem.h>

#include <cstdlib>
#include <ctime>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/pem.h"

namespace meshid {

absl::StatusOr<X509Ptr> CertFromDer(absl::string_view der) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (cert == nullptr || p != reinterpret_cast<const unsigned char*>(der.data()) + der.size()) {
    return absl::InvalidArgumentError("malformed DER certificate: " + DrainOpenSslErrors());
  }
  return cert;
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
  absl::StatusOr<std::string> der =
      EncodeDer([&](unsigned char** out) { return i2d_X509(cert, out); }, "encoding a certificate");
  if (!der.ok()) std::abort();  // out of memory: see the header
  return *std::move(der);
}

std::string CertToPem(X509* cert) { return EncodePem("CERTIFICATE", CertToDer(cert)); }

X509Ptr CopyCert(X509* cert) {
  if (X509_up_ref(cert) != 1) std::abort();  // a reference count that cannot move is a broken object
  return X509Ptr(cert);
}

std::string Asn1IntegerHex(const ASN1_INTEGER* value) {
  BignumPtr bn(ASN1_INTEGER_to_BN(value, nullptr));
  if (!bn) return "";
  OpenSslBuffer<char> hex(BN_bn2hex(bn.get()));
  return hex != nullptr ? std::string(hex.get()) : "";
}

std::string SerialHex(X509* cert) { return Asn1IntegerHex(X509_get0_serialNumber(cert)); }

absl::Time Asn1TimeToAbsl(const ASN1_TIME* t) {
  struct tm tm {};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return absl::InfinitePast();
  return absl::FromUnixSeconds(timegm(&tm));
}

namespace {

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

absl::StatusOr<GeneralNamesPtr> MakeGeneralNames(const std::vector<std::pair<int, std::string>>& names) {
  GeneralNamesPtr out(sk_GENERAL_NAME_new_null());
  if (!out) return OpenSslError("allocating a name list");
  for (const auto& [type, value] : names) {
    GeneralNamePtr name(GENERAL_NAME_new());
    Asn1StringPtr text(ASN1_IA5STRING_new());
    if (!name || !text || ASN1_STRING_set(text.get(), value.data(), static_cast<int>(value.size())) != 1) {
      return OpenSslError(absl::StrCat("building the name \"", value, "\""));
    }
    GENERAL_NAME_set0_value(name.get(), type, text.release());  // the name owns the text now
    if (sk_GENERAL_NAME_push(out.get(), name.get()) <= 0) return OpenSslError("adding a name to a list");
    name.release();  // the list owns it now
  }
  return out;
}

absl::StatusOr<X509ExtensionPtr> MakeExtension(int nid, bool critical, void* value) {
  X509ExtensionPtr ext(X509V3_EXT_i2d(nid, critical ? 1 : 0, value));
  if (!ext) return OpenSslError(absl::StrCat("encoding the ", OBJ_nid2sn(nid), " extension"));
  return ext;
}

absl::Status VerifyCertChain(X509* leaf, const std::vector<X509*>& intermediates, const std::vector<X509*>& roots,
                             absl::Time at) {
  X509StorePtr store(X509_STORE_new());
  X509StackPtr untrusted(sk_X509_new_null());
  X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!store || !untrusted || !ctx) return OpenSslError("allocating a certificate verifier");
  for (X509* root : roots) {
    // A root listed twice is not an error of the chain; anything else is ours.
    if (X509_STORE_add_cert(store.get(), root) != 1 &&
        ERR_GET_REASON(ERR_peek_last_error()) != X509_R_CERT_ALREADY_IN_HASH_TABLE) {
      return OpenSslError("adding a root to the trust store");
    }
    ERR_clear_error();
  }
  for (X509* c : intermediates) {
    if (sk_X509_push(untrusted.get(), c) <= 0) return OpenSslError("listing the intermediate certificates");
  }
  if (X509_STORE_CTX_init(ctx.get(), store.get(), leaf, untrusted.get()) != 1) {
    return OpenSslError("X509_STORE_CTX_init");
  }
  X509_STORE_CTX_set_time(ctx.get(), 0, absl::ToTimeT(at));
  absl::Status result = absl::OkStatus();
  if (X509_verify_cert(ctx.get()) != 1) {
    int err = X509_STORE_CTX_get_error(ctx.get());
    result = absl::PermissionDeniedError(
        absl::StrCat("certificate chain does not verify: ", X509_verify_cert_error_string(err)));
  }
  ERR_clear_error();
  return result;
}

}  // namespace meshid
