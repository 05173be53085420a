#include "ca/crl_builder.h"

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/der.h"
#include "common/status_macros.h"
#include "common/x509.h"
#include "store/validation.h"

namespace meshid {
namespace {

// The CRL is written as DER directly (common/der.h) and signed once, as the certificate issuer
// does: OpenSSL's X509_REVOKED objects, X509_CRL_sort and i2d cost about 10 µs per entry (a
// second at 100,000 entries), this about 0.1 µs. The bytes are the ones OpenSSL's X509_CRL API
// produced before (tests/ca/crl_test.cc compares the TBSCertList with it).

// AlgorithmIdentifiers: ecdsa-with-SHA256 (no parameters), sha256WithRSAEncryption (NULL).
constexpr absl::string_view kEcdsaWithSha256("\x30\x0a\x06\x08\x2a\x86\x48\xce\x3d\x04\x03\x02", 12);
constexpr absl::string_view kSha256WithRsa("\x30\x0d\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0b\x05\x00", 15);
// Extension OIDs (RFC 5280): id-ce-cRLNumber, id-ce-authorityKeyIdentifier.
constexpr absl::string_view kOidCrlNumber("\x06\x03\x55\x1d\x14", 5);
constexpr absl::string_view kOidAuthorityKeyId("\x06\x03\x55\x1d\x23", 5);
constexpr char kEnumerated = 0x0a;

int HexDigit(char c) { return c <= '9' ? c - '0' : c - 'A' + 10; }

// The magnitude of a serial that CheckSerialHex accepted, as BN_hex2bn + BN_to_ASN1_INTEGER make
// it: big-endian, no leading zero byte, "\0" for zero.
std::string SerialMagnitude(absl::string_view hex) {
  while (hex.size() > 1 && hex[0] == '0') hex.remove_prefix(1);
  std::string out((hex.size() + 1) / 2, '\0');
  size_t i = 0;
  size_t o = 0;
  if (hex.size() % 2 == 1) out[o++] = static_cast<char>(HexDigit(hex[i++]));
  for (; i < hex.size(); i += 2) out[o++] = static_cast<char>(HexDigit(hex[i]) << 4 | HexDigit(hex[i + 1]));
  return out;
}

// X509_CRL_sort's order (ASN1_STRING_cmp on the serials): shorter magnitudes first, then bytes.
bool SerialLess(absl::string_view a, absl::string_view b) { return a.size() != b.size() ? a.size() < b.size() : a < b; }

struct Entry {
  std::string serial;  // magnitude
  std::string time;    // revocationDate, encoded
  size_t index;        // in `revocations`
};

// revokedCertificate ::= SEQUENCE { userCertificate CertificateSerialNumber, revocationDate Time,
// crlEntryExtensions Extensions OPTIONAL } with at most the reasonCode extension (not critical).
// `body` is scratch space, reused from entry to entry.
void AppendEntry(std::string* out, std::string* body, const Entry& e, RevocationReason reason) {
  body->clear();
  const bool sign_octet = (static_cast<uint8_t>(e.serial[0]) & 0x80) != 0;
  body->push_back(static_cast<char>(der::kInteger));
  body->push_back(static_cast<char>(e.serial.size() + (sign_octet ? 1 : 0)));  // at most 65 octets
  if (sign_octet) body->push_back('\0');
  body->append(e.serial);
  body->append(e.time);
  if (reason != RevocationReason::kUnspecified) {
    // SEQUENCE { SEQUENCE { id-ce-cRLReasons, OCTET STRING { ENUMERATED code } } }
    const char extensions[] = {0x30, 0x0c, 0x30, 0x0a, 0x06,        0x03, 0x55,
                               0x1d, 0x15, 0x04, 0x03, kEnumerated, 0x01, static_cast<char>(reason)};
    body->append(extensions, sizeof(extensions));
  }
  der::AppendTlv(out, der::kSequence, *body);
}

// Extension ::= SEQUENCE { extnID, extnValue OCTET STRING } (not critical).
std::string ExtensionTlv(absl::string_view oid, absl::string_view value) {
  return der::Tlv(der::kSequence, absl::StrCat(oid, der::Tlv(der::kOctetString, value)));
}

absl::StatusOr<std::string> Sign(EVP_PKEY* key, absl::string_view tbs) {
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  size_t len = 0;
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(tbs.data()), tbs.size()) != 1) {
    return OpenSslError("signing the CRL");
  }
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                     reinterpret_cast<const unsigned char*>(tbs.data()), tbs.size()) != 1) {
    return OpenSslError("signing the CRL");
  }
  sig.resize(len);
  return sig;
}

}  // namespace

absl::StatusOr<std::string> BuildCrl(X509* issuer, EVP_PKEY* key, absl::Span<const RevocationRecord> revocations,
                                     const CrlContents& contents) {
  if (contents.number < 0) return absl::InvalidArgumentError("number: must not be negative");
  if (contents.next_update <= contents.this_update) {
    return absl::InvalidArgumentError("next_update: must be after this_update");
  }
  absl::string_view signature_algorithm;
  switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_EC:
      signature_algorithm = kEcdsaWithSha256;
      break;
    case EVP_PKEY_RSA:
      signature_algorithm = kSha256WithRsa;
      break;
    default:
      return absl::InvalidArgumentError("key: a CRL is signed with an ECDSA or RSA key");
  }
  std::string times;
  if (!der::AppendTimeTlv(&times, contents.this_update)) {
    return absl::InvalidArgumentError("this_update: cannot be encoded");
  }
  if (!der::AppendTimeTlv(&times, contents.next_update)) {
    return absl::InvalidArgumentError("next_update: cannot be encoded");
  }

  const std::string issuer_serial = SerialHex(issuer);
  std::vector<Entry> entries;
  entries.reserve(revocations.size());
  for (size_t i = 0; i < revocations.size(); ++i) {
    const RevocationRecord& r = revocations[i];
    if (r.issuer_serial_hex != issuer_serial || r.not_after <= contents.this_update) continue;
    // The field's name is only formatted for an error (this runs for every revoked certificate).
    if (absl::Status s = CheckSerialHex("serial", r.serial_hex); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("revocations[", i, "].", s.message()));
    }
    Entry entry{SerialMagnitude(r.serial_hex), "", i};
    if (!der::AppendTimeTlv(&entry.time, r.revoked_at)) {
      return absl::InvalidArgumentError(absl::StrCat("revocations[", i, "].revoked_at: cannot be encoded"));
    }
    // RFC 5280 5.3.1: the reasonCode unspecified SHOULD be absent.
    if (r.reason != RevocationReason::kUnspecified && RevocationReasonName(r.reason).empty()) {
      return absl::InvalidArgumentError(absl::StrCat("revocations[", i, "].reason: not a CRLReason"));
    }
    entries.push_back(std::move(entry));
  }
  std::stable_sort(entries.begin(), entries.end(),
                   [](const Entry& a, const Entry& b) { return SerialLess(a.serial, b.serial); });

  MESHID_ASSIGN_OR_RETURN(
      std::string issuer_name,
      EncodeDer([&](unsigned char** out) { return i2d_X509_NAME(X509_get_subject_name(issuer), out); },
                "encoding the issuer name"));
  std::string number_bytes;
  for (uint64_t n = static_cast<uint64_t>(contents.number); n > 0; n >>= 8) {
    number_bytes.insert(number_bytes.begin(), static_cast<char>(n & 0xff));
  }
  std::string extensions = ExtensionTlv(kOidCrlNumber, der::UnsignedIntegerTlv(number_bytes));
  // RFC 5280 requires a subjectKeyIdentifier in CA certificates; older roots lack it.
  if (const ASN1_OCTET_STRING* ski = X509_get0_subject_key_id(issuer); ski != nullptr) {
    const absl::string_view key_id(reinterpret_cast<const char*>(ASN1_STRING_get0_data(ski)),
                                   static_cast<size_t>(ASN1_STRING_length(ski)));
    // AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] IMPLICIT OCTET STRING }
    extensions +=
        ExtensionTlv(kOidAuthorityKeyId, der::Tlv(der::kSequence, der::Tlv(der::ContextPrimitive(0), key_id)));
  }

  std::string revoked;
  revoked.reserve(entries.size() * 48);
  std::string scratch;
  for (const Entry& e : entries) AppendEntry(&revoked, &scratch, e, revocations[e.index].reason);

  std::string tbs_body;
  tbs_body.reserve(revoked.size() + issuer_name.size() + 256);
  tbs_body.append("\x02\x01\x01", 3);  // version v2
  absl::StrAppend(&tbs_body, signature_algorithm, issuer_name, times);
  // RFC 5280 5.1.2.6: absent, not empty, when nothing is revoked.
  if (!entries.empty()) der::AppendTlv(&tbs_body, der::kSequence, revoked);
  der::AppendTlv(&tbs_body, der::ContextConstructed(0), der::Tlv(der::kSequence, extensions));
  std::string().swap(revoked);
  std::string tbs;
  tbs.reserve(tbs_body.size() + 8);
  der::AppendTlv(&tbs, der::kSequence, tbs_body);
  std::string().swap(tbs_body);

  MESHID_ASSIGN_OR_RETURN(std::string signature, Sign(key, tbs));
  std::string crl_body = std::move(tbs);
  absl::StrAppend(&crl_body, signature_algorithm);
  der::AppendTlv(&crl_body, der::kBitString, absl::StrCat(absl::string_view("\0", 1), signature));
  std::string crl;
  crl.reserve(crl_body.size() + 8);
  der::AppendTlv(&crl, der::kSequence, crl_body);
  return crl;
}

absl::StatusOr<std::string> BuildCurrentCrl(const SigningAuthority& authority, RevocationStore& store, absl::Time now,
                                            absl::Duration validity) {
  if (validity <= absl::ZeroDuration()) return absl::InvalidArgumentError("validity: must be positive");
  MESHID_ASSIGN_OR_RETURN(RevocationSnapshot snapshot, store.ListRevocations(now));
  // thisUpdate backdated as certificates' notBefore is: a relying party whose clock runs a
  // little behind would otherwise hold a CRL "not yet valid" (OpenSSL, and so Envoy, then refuses
  // every peer).
  return BuildCrl(authority.cert.get(), authority.key.get(), snapshot.revocations,
                  CrlContents{snapshot.crl_number, now - kCrlClockSkew, now + validity});
}

}  // namespace meshid
