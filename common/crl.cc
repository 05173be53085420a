#include "common/crl.h"

#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "absl/strings/str_cat.h"
#include "common/pem.h"
#include "common/status_macros.h"
#include "common/x509.h"

namespace meshid {
namespace {

std::string NameText(const X509_NAME* name) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253) < 0) return "?";
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return len > 0 ? std::string(data, static_cast<size_t>(len)) : "";
}

absl::Status Invalid(absl::string_view message) {
  DrainOpenSslErrors();  // what OpenSSL queued is said in `message`
  return absl::InvalidArgumentError(absl::StrCat("CRL: ", message));
}

// The cRLNumber (0 when absent), after refusing what meshid cannot interpret: an unknown
// critical extension (RFC 5280 5.2), and delta CRLs and issuing distribution points (meshid reads
// every CRL as the complete list of its issuer's revocations).
absl::StatusOr<int64_t> CheckExtensions(X509_CRL* crl) {
  int64_t number = 0;
  int critical = -1;
  Asn1IntegerPtr n(static_cast<ASN1_INTEGER*>(X509_CRL_get_ext_d2i(crl, NID_crl_number, &critical, nullptr)));
  if (n) {
    if (ASN1_INTEGER_get_int64(&number, n.get()) != 1 || number < 0) return Invalid("cRLNumber out of range");
  } else if (critical != -1) {
    return Invalid("malformed cRLNumber");
  }
  for (int i = 0; i < X509_CRL_get_ext_count(crl); ++i) {
    X509_EXTENSION* ext = X509_CRL_get_ext(crl, i);
    const int nid = OBJ_obj2nid(X509_EXTENSION_get_object(ext));
    if (nid == NID_delta_crl) return Invalid("a delta CRL (meshid reads complete CRLs only)");
    if (nid == NID_issuing_distribution_point && X509_EXTENSION_get_critical(ext)) {
      return Invalid("an issuing distribution point (meshid reads complete CRLs only)");
    }
    if (X509_EXTENSION_get_critical(ext) && nid != NID_crl_number && nid != NID_authority_key_identifier) {
      return Invalid("an unsupported critical extension");
    }
  }
  return number;
}

// The key of a serial in RevocationIndex: its content octets, with a marker for a negative one.
std::string_view SerialKey(const ASN1_INTEGER* serial, std::string& negative) {
  const std::string_view bytes(reinterpret_cast<const char*>(ASN1_STRING_get0_data(serial)),
                               static_cast<size_t>(ASN1_STRING_length(serial)));
  if (ASN1_STRING_type(serial) != V_ASN1_NEG_INTEGER) return bytes;
  negative = "-";
  negative.append(bytes);
  return negative;
}

}  // namespace

absl::StatusOr<CrlInfo> VerifyCrl(absl::string_view der, X509* issuer, absl::Time now, bool allow_stale) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  X509CrlPtr crl(d2i_X509_CRL(nullptr, &p, static_cast<long>(der.size())));
  if (!crl) return Invalid("not a DER-encoded X.509 CRL");
  if (p != reinterpret_cast<const unsigned char*>(der.data() + der.size())) {
    return Invalid("trailing bytes after the CRL");
  }
  if (X509_CRL_get_version(crl.get()) != X509_CRL_VERSION_2) return Invalid("not a version 2 CRL");
  if (X509_NAME_cmp(X509_CRL_get_issuer(crl.get()), X509_get_subject_name(issuer)) != 0) {
    return Invalid(absl::StrCat("issued by \"", NameText(X509_CRL_get_issuer(crl.get())), "\", not by \"",
                                NameText(X509_get_subject_name(issuer)), "\""));
  }
  EVP_PKEY* issuer_key = X509_get0_pubkey(issuer);
  if (issuer_key == nullptr || X509_CRL_verify(crl.get(), issuer_key) != 1) {
    return Invalid(
        absl::StrCat("bad signature (not signed by the key of \"", NameText(X509_get_subject_name(issuer)), "\")"));
  }
  CrlInfo info;
  info.issuer_serial_hex = SerialHex(issuer);
  info.this_update = Asn1TimeToAbsl(X509_CRL_get0_lastUpdate(crl.get()));
  if (info.this_update == absl::InfinitePast()) return Invalid("malformed thisUpdate");
  const ASN1_TIME* next = X509_CRL_get0_nextUpdate(crl.get());
  info.next_update = next == nullptr ? absl::InfiniteFuture() : Asn1TimeToAbsl(next);
  if (info.next_update == absl::InfinitePast()) return Invalid("malformed nextUpdate");
  if (info.this_update > now) {
    return Invalid(absl::StrCat("not valid yet (thisUpdate ", absl::FormatTime(info.this_update), ")"));
  }
  if (!allow_stale && info.next_update <= now) {
    return Invalid(absl::StrCat("expired at ", absl::FormatTime(info.next_update), " (nextUpdate)"));
  }
  MESHID_ASSIGN_OR_RETURN(info.number, CheckExtensions(crl.get()));
  const STACK_OF(X509_REVOKED)* revoked = X509_CRL_get_REVOKED(crl.get());
  for (int i = 0; i < sk_X509_REVOKED_num(revoked); ++i) {
    std::string serial = Asn1IntegerHex(X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(revoked, i)));
    if (serial.empty()) return Invalid(absl::StrCat("entry ", i, ": malformed serial number"));
    info.revoked.insert(std::move(serial));
  }
  return info;
}

absl::StatusOr<std::shared_ptr<const RevocationIndex>> RevocationIndex::FromCrlDer(absl::string_view der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  X509CrlPtr crl(d2i_X509_CRL(nullptr, &p, static_cast<long>(der.size())));
  if (!crl) return Invalid("not a DER-encoded X.509 CRL");
  if (p != reinterpret_cast<const unsigned char*>(der.data() + der.size())) {
    return Invalid("trailing bytes after the CRL");
  }
  if (X509_CRL_get_version(crl.get()) != X509_CRL_VERSION_2) return Invalid("not a version 2 CRL");
  std::shared_ptr<RevocationIndex> index(new RevocationIndex());
  index->issuer_.reset(X509_NAME_dup(X509_CRL_get_issuer(crl.get())));
  if (!index->issuer_) return Invalid("malformed issuer name");
  index->this_update_ = Asn1TimeToAbsl(X509_CRL_get0_lastUpdate(crl.get()));
  if (index->this_update_ == absl::InfinitePast()) return Invalid("malformed thisUpdate");
  const ASN1_TIME* next = X509_CRL_get0_nextUpdate(crl.get());
  index->next_update_ = next == nullptr ? absl::InfiniteFuture() : Asn1TimeToAbsl(next);
  if (index->next_update_ == absl::InfinitePast()) return Invalid("malformed nextUpdate");
  MESHID_ASSIGN_OR_RETURN(index->number_, CheckExtensions(crl.get()));
  const STACK_OF(X509_REVOKED)* revoked = X509_CRL_get_REVOKED(crl.get());
  index->serials_.reserve(static_cast<size_t>(sk_X509_REVOKED_num(revoked)));
  for (int i = 0; i < sk_X509_REVOKED_num(revoked); ++i) {
    std::string negative;
    index->serials_.emplace(SerialKey(X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(revoked, i)), negative));
  }
  return std::shared_ptr<const RevocationIndex>(std::move(index));
}

bool RevocationIndex::IsRevoked(X509* cert) const {
  std::string negative;
  if (!serials_.contains(SerialKey(X509_get0_serialNumber(cert), negative))) return false;
  return X509_NAME_cmp(X509_get_issuer_name(cert), issuer_.get()) == 0;
}

absl::StatusOr<std::string> CrlDerFromPem(absl::string_view pem) {
  PemParseOptions options;
  options.max_input_bytes = 64 << 20;        // 100,000 revocations are about 5 MB of PEM
  options.allow_text_outside_blocks = true;  // `openssl crl -text` output
  auto blocks = ParsePemBlocks(pem, options);
  if (!blocks.ok()) return absl::InvalidArgumentError(absl::StrCat("CRL: ", blocks.status().message()));
  for (const PemBlock& block : *blocks) {
    if (block.type == "X509 CRL") return block.der;
  }
  return absl::InvalidArgumentError("CRL: no \"X509 CRL\" PEM block");
}

std::string CrlDerToPem(absl::string_view der) { return EncodePem("X509 CRL", der); }

}  // namespace meshid
