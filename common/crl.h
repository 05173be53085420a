// X.509 v2 certificate revocation lists (RFC 5280 section 5) as meshid reads them: a CRL from the
// CA (or pushed to an agent or proxy) is parsed, its signature checked against the issuing CA
// certificate, and reduced to the values a revocation check needs.
#pragma once

#include <cstdint>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/openssl_ptr.h"

namespace meshid {

struct CrlInfo {
  int64_t number = 0;  // cRLNumber (0 when the CRL has none)
  absl::Time this_update;
  absl::Time next_update;         // absl::InfiniteFuture() when absent
  std::string issuer_serial_hex;  // serial of the CA certificate it was verified against
  std::set<std::string> revoked;  // upper-case hex serials
};

// Parses `der` (one DER-encoded CRL) and checks it: version 2, issued by `issuer` (same name,
// signature by its key), and current at `now` (thisUpdate not after it; nextUpdate, when
// present, after it unless `allow_stale`). Errors (InvalidArgument) say what is wrong: "not a
// DER CRL", "issued by CN=..., not by <issuer>", "bad signature", "expired at <nextUpdate>".
absl::StatusOr<CrlInfo> VerifyCrl(absl::string_view der, X509* issuer, absl::Time now, bool allow_stale = false);

// The DER of the first "X509 CRL" block of `pem`; InvalidArgument when there is none.
absl::StatusOr<std::string> CrlDerFromPem(absl::string_view pem);
// One "-----BEGIN X509 CRL-----" block.
std::string CrlDerToPem(absl::string_view der);

}  // namespace meshid
