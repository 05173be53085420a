#include "common/crl.h"

#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <iterator>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/der.h"
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

// The same key from an INTEGER's DER content octets, as OpenSSL's c2i_ASN1_INTEGER turns them
// into an ASN1_INTEGER: the magnitude without the sign octet, a negative value's two's
// complement undone. False for what OpenSSL refuses: no octets, or a redundant leading 0x00/0xFF.
bool IntegerKey(std::string_view content, std::string& negative, std::string_view* key) {
  if (content.empty()) return false;
  const auto octet = [&](size_t i) { return static_cast<uint8_t>(content[i]); };
  const bool is_negative = (octet(0) & 0x80) != 0;
  if (!is_negative) {
    if (content.size() > 1 && octet(0) == 0) {
      if ((octet(1) & 0x80) == 0) return false;
      content.remove_prefix(1);
    }
    *key = content;
    return true;
  }
  if (content.size() > 1 && octet(0) == 0xff) {
    // 0xFF leads a minimal encoding only when the rest is all zero (-256, -65536, ...).
    bool rest_zero = true;
    for (size_t i = 1; i < content.size(); ++i) rest_zero = rest_zero && octet(i) == 0;
    if (!rest_zero) {
      if ((octet(1) & 0x80) != 0) return false;
      content.remove_prefix(1);
    }
  }
  negative.assign(content.size() + 1, '-');
  unsigned carry = 1;  // -x = ~x + 1
  for (size_t i = content.size(); i-- > 0;) {
    carry += static_cast<uint8_t>(~static_cast<uint8_t>(content[i]));
    negative[i + 1] = static_cast<char>(carry & 0xff);
    carry >>= 8;
  }
  *key = negative;
  return true;
}

// BN_bn2hex of the serial a key stands for (what Asn1IntegerHex returns): upper-case hex of the
// magnitude, "0" for zero, "-" first for a negative one.
std::string KeyHex(std::string_view key) {
  std::string out;
  if (!key.empty() && key[0] == '-') {
    out = "-";
    key.remove_prefix(1);
  }
  if (key == std::string_view("\0", 1)) return out + "0";
  constexpr char kDigits[] = "0123456789ABCDEF";
  out.reserve(out.size() + key.size() * 2);
  for (char c : key) {
    out.push_back(kDigits[static_cast<uint8_t>(c) >> 4]);
    out.push_back(kDigits[static_cast<uint8_t>(c) & 0x0f]);
  }
  return out;
}

int Digits(absl::string_view s, size_t pos) { return (s[pos] - '0') * 10 + (s[pos + 1] - '0'); }

// RFC 5280's forms of Time (4.1.2.5): "YYMMDDHHMMSSZ" as UTCTime, "YYYYMMDDHHMMSSZ" as
// GeneralizedTime, each field in range. Stricter than OpenSSL, which also reads fractions and
// offsets.
bool IsRfc5280Time(const der::Element& e) {
  const size_t year_digits = e.tag == der::kUtcTime ? 2 : e.tag == der::kGeneralizedTime ? 4 : 0;
  const absl::string_view v = e.value;
  if (year_digits == 0 || v.size() != year_digits + 11 || v.back() != 'Z') return false;
  for (size_t i = 0; i + 1 < v.size(); ++i) {
    if (v[i] < '0' || v[i] > '9') return false;
  }
  int year = Digits(v, 0);
  year = year_digits == 2 ? (year < 50 ? 2000 + year : 1900 + year) : year * 100 + Digits(v, 2);
  const int month = Digits(v, year_digits);
  const int day = Digits(v, year_digits + 2);
  if (month < 1 || month > 12 || day < 1 || Digits(v, year_digits + 4) > 23 || Digits(v, year_digits + 6) > 59 ||
      Digits(v, year_digits + 8) > 59) {
    return false;
  }
  constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  return day <= kDays[month - 1] + (month == 2 && leap ? 1 : 0);
}

// An OBJECT IDENTIFIER's content as OpenSSL's c2i_ASN1_OBJECT accepts it.
bool IsOid(absl::string_view v) {
  if (v.empty() || (static_cast<uint8_t>(v.back()) & 0x80) != 0) return false;
  for (size_t i = 0; i < v.size(); ++i) {
    if (static_cast<uint8_t>(v[i]) == 0x80 && (i == 0 || (static_cast<uint8_t>(v[i - 1]) & 0x80) == 0)) return false;
  }
  return true;
}

// Extensions ::= SEQUENCE OF SEQUENCE { extnID OID, critical BOOLEAN OPTIONAL, extnValue OCTET
// STRING }. Only their form is checked: meshid reads no CRL entry extension.
bool IsExtensions(absl::string_view v) {
  der::Reader extensions(v);
  while (!extensions.empty()) {
    auto ext = extensions.Next();
    if (!ext.ok() || ext->tag != der::kSequence) return false;
    der::Reader fields(ext->value);
    auto oid = fields.Next();
    if (!oid.ok() || oid->tag != der::kOid || !IsOid(oid->value)) return false;
    auto field = fields.Next();
    if (field.ok() && field->tag == der::kBoolean) {
      if (field->value.size() != 1) return false;
      field = fields.Next();
    }
    if (!field.ok() || field->tag != der::kOctetString || !fields.empty()) return false;
  }
  return true;
}

// Calls add(key) with the key of each entry's serial in `revoked` (the content of
// revokedCertificates): SEQUENCE { userCertificate INTEGER, revocationDate Time,
// crlEntryExtensions Extensions OPTIONAL }. Strict DER; anything else is refused.
template <typename Add>
absl::Status ReadRevoked(absl::string_view revoked, Add add) {
  der::Reader entries(revoked);
  std::string negative;
  for (size_t i = 0; !entries.empty(); ++i) {
    auto entry = entries.Next();
    bool ok = entry.ok() && entry->tag == der::kSequence;
    if (ok) {
      der::Reader fields(entry->value);
      auto serial = fields.Next();
      std::string_view key;
      ok = serial.ok() && serial->tag == der::kInteger &&
           IntegerKey(std::string_view(serial->value.data(), serial->value.size()), negative, &key);
      if (ok) {
        auto date = fields.Next();
        ok = date.ok() && IsRfc5280Time(*date);
      }
      if (ok && !fields.empty()) {
        auto extensions = fields.Next();
        ok = extensions.ok() && extensions->tag == der::kSequence && IsExtensions(extensions->value) && fields.empty();
      }
      if (ok) add(key);
    }
    if (!ok) return Invalid(absl::StrCat("not a DER-encoded X.509 CRL (revokedCertificates entry ", i, ")"));
  }
  return absl::OkStatus();
}

// A CRL split where the work is: OpenSSL parses everything but the revoked certificates (a CRL
// re-assembled without them), ReadRevoked those.
struct SplitCrl {
  X509CrlPtr fields;  // the CRL without revokedCertificates (its signature does not match)
  // Both AlgorithmIdentifiers' DER: in the TBSCertList, and the one the signature is under.
  absl::string_view signed_algorithm;
  absl::string_view signature_algorithm;
  absl::string_view tbs;      // the TBSCertList as signed
  absl::string_view revoked;  // revokedCertificates' content ("" when absent)
};

bool IsTimeTag(uint8_t tag) { return tag == der::kUtcTime || tag == der::kGeneralizedTime; }

absl::StatusOr<SplitCrl> SplitCrlDer(absl::string_view der) {
  const absl::Status not_der = Invalid("not a DER-encoded X.509 CRL");
  der::Reader outer(der);
  auto crl = outer.Next();
  if (!crl.ok() || crl->tag != der::kSequence) return not_der;
  if (!outer.empty()) return Invalid("trailing bytes after the CRL");
  der::Reader crl_fields(crl->value);
  auto tbs = crl_fields.Next();
  if (!tbs.ok() || tbs->tag != der::kSequence) return not_der;
  // TBSCertList ::= SEQUENCE { version INTEGER OPTIONAL, signature, issuer, thisUpdate,
  // nextUpdate OPTIONAL, revokedCertificates SEQUENCE OF OPTIONAL, [0] crlExtensions OPTIONAL }.
  // Only where revokedCertificates is matters here: OpenSSL checks the rest.
  std::vector<der::Element> fields;
  der::Reader tbs_fields(tbs->value);
  while (!tbs_fields.empty()) {
    auto field = tbs_fields.Next();
    if (!field.ok() || fields.size() == 7) return not_der;
    fields.push_back(*field);
  }
  size_t i = !fields.empty() && fields[0].tag == der::kInteger ? 1 : 0;
  if (i + 2 >= fields.size()) return not_der;
  SplitCrl out;
  out.signed_algorithm = fields[i].whole;
  i += 2;  // signature, issuer
  if (!IsTimeTag(fields[i].tag)) return not_der;
  ++i;
  if (i < fields.size() && IsTimeTag(fields[i].tag)) ++i;
  out.tbs = tbs->whole;
  std::string tbs_without;
  if (i < fields.size() && fields[i].tag == der::kSequence) {
    out.revoked = fields[i].value;
    const absl::string_view before(tbs->value.data(), static_cast<size_t>(fields[i].whole.data() - tbs->value.data()));
    const absl::string_view after = tbs->value.substr(before.size() + fields[i].whole.size());
    tbs_without = der::Tlv(der::kSequence, absl::StrCat(before, after));
  } else {
    tbs_without = std::string(tbs->whole);
  }
  const absl::string_view signature_part = crl->value.substr(tbs->whole.size());
  auto algorithm = crl_fields.Next();
  if (!algorithm.ok()) return not_der;
  out.signature_algorithm = algorithm->whole;
  const std::string without = der::Tlv(der::kSequence, absl::StrCat(tbs_without, signature_part));
  const auto* p = reinterpret_cast<const unsigned char*>(without.data());
  out.fields.reset(d2i_X509_CRL(nullptr, &p, static_cast<long>(without.size())));
  if (!out.fields || p != reinterpret_cast<const unsigned char*>(without.data() + without.size())) return not_der;
  return out;
}

// X509_CRL_verify over the TBSCertList as received (`fields` lacks the revoked certificates,
// so its own encoding would not match the signature).
bool SignatureVerifies(const SplitCrl& crl, EVP_PKEY* key) {
  const ASN1_BIT_STRING* signature = nullptr;
  const X509_ALGOR* algorithm = nullptr;
  X509_CRL_get0_signature(crl.fields.get(), &signature, &algorithm);
  if (crl.signed_algorithm != crl.signature_algorithm) return false;  // as X509_CRL_verify
  // An ANY holding a SEQUENCE re-encodes as its bytes, unchanged. Neither object is allocated by
  // OpenSSL; they point at `crl.tbs` for this call.
  ASN1_STRING tbs{};
  tbs.type = V_ASN1_SEQUENCE;
  tbs.length = static_cast<int>(crl.tbs.size());
  tbs.data = reinterpret_cast<unsigned char*>(const_cast<char*>(crl.tbs.data()));
  ASN1_TYPE any{};
  any.type = V_ASN1_SEQUENCE;
  any.value.sequence = &tbs;
  return ASN1_item_verify(ASN1_ITEM_rptr(ASN1_ANY), algorithm, signature, &any, key) == 1;
}

}  // namespace

absl::StatusOr<CrlInfo> VerifyCrl(absl::string_view der, X509* issuer, absl::Time now, bool allow_stale,
                                  CrlSerials serials) {
  MESHID_ASSIGN_OR_RETURN(SplitCrl crl, SplitCrlDer(der));
  if (X509_CRL_get_version(crl.fields.get()) != X509_CRL_VERSION_2) return Invalid("not a version 2 CRL");
  if (X509_NAME_cmp(X509_CRL_get_issuer(crl.fields.get()), X509_get_subject_name(issuer)) != 0) {
    return Invalid(absl::StrCat("issued by \"", NameText(X509_CRL_get_issuer(crl.fields.get())), "\", not by \"",
                                NameText(X509_get_subject_name(issuer)), "\""));
  }
  EVP_PKEY* issuer_key = X509_get0_pubkey(issuer);
  if (issuer_key == nullptr || !SignatureVerifies(crl, issuer_key)) {
    return Invalid(
        absl::StrCat("bad signature (not signed by the key of \"", NameText(X509_get_subject_name(issuer)), "\")"));
  }
  CrlInfo info;
  info.issuer_serial_hex = SerialHex(issuer);
  info.this_update = Asn1TimeToAbsl(X509_CRL_get0_lastUpdate(crl.fields.get()));
  if (info.this_update == absl::InfinitePast()) return Invalid("malformed thisUpdate");
  const ASN1_TIME* next = X509_CRL_get0_nextUpdate(crl.fields.get());
  info.next_update = next == nullptr ? absl::InfiniteFuture() : Asn1TimeToAbsl(next);
  if (info.next_update == absl::InfinitePast()) return Invalid("malformed nextUpdate");
  if (info.this_update > now) {
    return Invalid(absl::StrCat("not valid yet (thisUpdate ", absl::FormatTime(info.this_update), ")"));
  }
  if (!allow_stale && info.next_update <= now) {
    return Invalid(absl::StrCat("expired at ", absl::FormatTime(info.next_update), " (nextUpdate)"));
  }
  MESHID_ASSIGN_OR_RETURN(auto index, RevocationIndex::Build(crl.fields.get(), crl.revoked));
  info.number = index->number();
  if (serials == CrlSerials::kHexAndIndex) {
    // Sorted first: a std::set built from a sorted range appends instead of searching.
    std::vector<std::string> hex;
    hex.reserve(index->serials_.size());
    for (const std::string& key : index->serials_) hex.push_back(KeyHex(key));
    std::sort(hex.begin(), hex.end());
    info.revoked = std::set<std::string>(std::make_move_iterator(hex.begin()), std::make_move_iterator(hex.end()));
  }
  info.index = std::move(index);
  return info;
}

absl::StatusOr<std::shared_ptr<const RevocationIndex>> RevocationIndex::FromCrlDer(absl::string_view der) {
  MESHID_ASSIGN_OR_RETURN(SplitCrl crl, SplitCrlDer(der));
  if (X509_CRL_get_version(crl.fields.get()) != X509_CRL_VERSION_2) return Invalid("not a version 2 CRL");
  MESHID_ASSIGN_OR_RETURN(auto index, Build(crl.fields.get(), crl.revoked));
  return std::shared_ptr<const RevocationIndex>(std::move(index));
}

absl::StatusOr<std::shared_ptr<RevocationIndex>> RevocationIndex::Build(X509_CRL* fields, absl::string_view revoked) {
  std::shared_ptr<RevocationIndex> index(new RevocationIndex());
  index->issuer_.reset(X509_NAME_dup(X509_CRL_get_issuer(fields)));
  if (!index->issuer_) return Invalid("malformed issuer name");
  index->this_update_ = Asn1TimeToAbsl(X509_CRL_get0_lastUpdate(fields));
  if (index->this_update_ == absl::InfinitePast()) return Invalid("malformed thisUpdate");
  const ASN1_TIME* next = X509_CRL_get0_nextUpdate(fields);
  index->next_update_ = next == nullptr ? absl::InfiniteFuture() : Asn1TimeToAbsl(next);
  if (index->next_update_ == absl::InfinitePast()) return Invalid("malformed nextUpdate");
  MESHID_ASSIGN_OR_RETURN(index->number_, CheckExtensions(fields));
  index->serials_.reserve(revoked.size() / 32);  // a 16-byte serial with a reasonCode takes about 50 bytes
  MESHID_RETURN_IF_ERROR(ReadRevoked(revoked, [&](std::string_view key) { index->serials_.emplace(key); }));
  return index;
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
  for (PemBlock& block : *blocks) {
    if (block.type == "X509 CRL") return std::move(block.der);
  }
  return absl::InvalidArgumentError("CRL: no \"X509 CRL\" PEM block");
}

std::string CrlDerToPem(absl::string_view der) { return EncodePem("X509 CRL", der); }

}  // namespace meshid
