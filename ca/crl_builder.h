// The CA's certificate revocation list: an X.509 v2 CRL (RFC 5280 section 5) signed by the
// signing key, listing the revoked certificates that key signed and that have not expired.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "ca/authority.h"
#include "common/openssl_ptr.h"
#include "store/records.h"
#include "store/revocation_store.h"

namespace meshid {

struct CrlContents {
  int64_t number = 0;  // cRLNumber: RevocationSnapshot::crl_number (monotonic, shared by replicas)
  absl::Time this_update;
  absl::Time next_update;  // after this_update: when relying parties must have a newer CRL
};

// Builds and signs the CRL of `issuer` (the CA certificate, with its key `key`): of
// `revocations`, the ones whose issuer_serial_hex is the issuer's serial and whose certificate
// is unexpired at this_update, each with its revocation time and, unless unspecified, its
// reasonCode; the CRL extensions cRLNumber and authorityKeyIdentifier (from the issuer's
// subjectKeyIdentifier). SHA-256 signature for EC and RSA keys. DER. InvalidArgument for
// contents that cannot be encoded (a malformed serial, a time outside the years 0000-9999,
// next_update not after this_update) and for a key of another type; Internal when signing fails.
absl::StatusOr<std::string> BuildCrl(X509* issuer, EVP_PKEY* key, absl::Span<const RevocationRecord> revocations,
                                     const CrlContents& contents);

// How far BuildCurrentCrl backdates thisUpdate (as the CA backdates notBefore).
inline constexpr absl::Duration kCrlClockSkew = absl::Minutes(2);

// The CRL of `authority`'s signing certificate as the store has it now: ListRevocations(now),
// numbered with the store's CRL number, thisUpdate `now - kCrlClockSkew`, nextUpdate `now + validity`. What
// `meshid certs crl` prints and the server publishes.
absl::StatusOr<std::string> BuildCurrentCrl(const SigningAuthority& authority, RevocationStore& store, absl::Time now,
                                            absl::Duration validity);

}  // namespace meshid
