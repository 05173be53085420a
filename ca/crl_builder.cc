#include "ca/crl_builder.h"

#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/x509.h"
#include "store/validation.h"

namespace meshid {
namespace {

absl::StatusOr<Asn1TimePtr> Asn1Time(absl::Time t, absl::string_view field) {
  Asn1TimePtr out(ASN1_TIME_set(nullptr, absl::ToTimeT(t)));
  if (!out) return absl::InvalidArgumentError(absl::StrCat(field, ": cannot be encoded"));
  return out;
}

absl::StatusOr<Asn1IntegerPtr> SerialInteger(const std::string& serial_hex, absl::string_view field) {
  MESHID_RETURN_IF_ERROR(CheckSerialHex(field, serial_hex));
  BIGNUM* raw = nullptr;
  if (BN_hex2bn(&raw, serial_hex.c_str()) == 0) return OpenSslError(absl::StrCat("decoding ", field));
  BignumPtr bn(raw);
  Asn1IntegerPtr out(BN_to_ASN1_INTEGER(bn.get(), nullptr));
  if (!out) return OpenSslError(absl::StrCat("encoding ", field));
  return out;
}

absl::Status AddRevoked(X509_CRL* crl, const RevocationRecord& r, size_t index) {
  X509RevokedPtr entry(X509_REVOKED_new());
  if (!entry) return OpenSslError("allocating a CRL entry");
  MESHID_ASSIGN_OR_RETURN(auto serial, SerialInteger(r.serial_hex, absl::StrCat("revocations[", index, "].serial")));
  MESHID_ASSIGN_OR_RETURN(auto when, Asn1Time(r.revoked_at, absl::StrCat("revocations[", index, "].revoked_at")));
  if (X509_REVOKED_set_serialNumber(entry.get(), serial.get()) != 1 ||
      X509_REVOKED_set_revocationDate(entry.get(), when.get()) != 1) {
    return OpenSslError("filling a CRL entry");
  }
  // RFC 5280 5.3.1: the reasonCode unspecified SHOULD be absent.
  if (r.reason != RevocationReason::kUnspecified) {
    if (RevocationReasonName(r.reason).empty()) {
      return absl::InvalidArgumentError(absl::StrCat("revocations[", index, "].reason: not a CRLReason"));
    }
    Asn1EnumeratedPtr code(ASN1_ENUMERATED_new());
    if (!code || ASN1_ENUMERATED_set(code.get(), static_cast<long>(r.reason)) != 1 ||
        X509_REVOKED_add1_ext_i2d(entry.get(), NID_crl_reason, code.get(), 0, 0) != 1) {
      return OpenSslError("adding a reasonCode");
    }
  }
  if (X509_CRL_add0_revoked(crl, entry.get()) != 1) return OpenSslError("adding a CRL entry");
  entry.release();  // owned by the CRL now
  return absl::OkStatus();
}

absl::Status AddAuthorityKeyId(X509_CRL* crl, X509* issuer) {
  const ASN1_OCTET_STRING* ski = X509_get0_subject_key_id(issuer);
  if (ski == nullptr) return absl::OkStatus();  // RFC 5280 requires one in CA certificates; older roots lack it
  AuthorityKeyIdPtr akid(AUTHORITY_KEYID_new());
  if (!akid) return OpenSslError("allocating the authorityKeyIdentifier");
  akid->keyid = ASN1_OCTET_STRING_dup(ski);
  if (akid->keyid == nullptr || X509_CRL_add1_ext_i2d(crl, NID_authority_key_identifier, akid.get(), 0, 0) != 1) {
    return OpenSslError("adding the authorityKeyIdentifier");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> BuildCrl(X509* issuer, EVP_PKEY* key, absl::Span<const RevocationRecord> revocations,
                                     const CrlContents& contents) {
  if (contents.number < 0) return absl::InvalidArgumentError("number: must not be negative");
  if (contents.next_update <= contents.this_update) {
    return absl::InvalidArgumentError("next_update: must be after this_update");
  }
  X509CrlPtr crl(X509_CRL_new());
  if (!crl) return OpenSslError("allocating a CRL");
  MESHID_ASSIGN_OR_RETURN(auto this_update, Asn1Time(contents.this_update, "this_update"));
  MESHID_ASSIGN_OR_RETURN(auto next_update, Asn1Time(contents.next_update, "next_update"));
  if (X509_CRL_set_version(crl.get(), X509_CRL_VERSION_2) != 1 ||
      X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(issuer)) != 1 ||
      X509_CRL_set1_lastUpdate(crl.get(), this_update.get()) != 1 ||
      X509_CRL_set1_nextUpdate(crl.get(), next_update.get()) != 1) {
    return OpenSslError("filling the CRL");
  }
  const std::string issuer_serial = SerialHex(issuer);
  for (size_t i = 0; i < revocations.size(); ++i) {
    const RevocationRecord& r = revocations[i];
    if (r.issuer_serial_hex != issuer_serial || r.not_after <= contents.this_update) continue;
    MESHID_RETURN_IF_ERROR(AddRevoked(crl.get(), r, i));
  }
  if (X509_CRL_sort(crl.get()) != 1) return OpenSslError("sorting the CRL entries");
  Asn1IntegerPtr number(ASN1_INTEGER_new());
  if (!number || ASN1_INTEGER_set_int64(number.get(), contents.number) != 1 ||
      X509_CRL_add1_ext_i2d(crl.get(), NID_crl_number, number.get(), 0, 0) != 1) {
    return OpenSslError("adding the cRLNumber");
  }
  MESHID_RETURN_IF_ERROR(AddAuthorityKeyId(crl.get(), issuer));
  if (X509_CRL_sign(crl.get(), key, EVP_sha256()) <= 0) return OpenSslError("signing the CRL");
  return EncodeDer([&](unsigned char** out) { return i2d_X509_CRL(crl.get(), out); }, "encoding the CRL");
}

absl::StatusOr<std::string> BuildCurrentCrl(const SigningAuthority& authority, RevocationStore& store, absl::Time now,
                                            absl::Duration validity) {
  if (validity <= absl::ZeroDuration()) return absl::InvalidArgumentError("validity: must be positive");
  MESHID_ASSIGN_OR_RETURN(RevocationSnapshot snapshot, store.ListRevocations(now));
  return BuildCrl(authority.cert.get(), authority.key.get(), snapshot.revocations,
                  CrlContents{snapshot.crl_number, now, now + validity});
}

}  // namespace meshid
