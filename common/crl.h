// X.509 v2 certificate revocation lists (RFC 5280 section 5) as meshid reads them: a CRL from the
// CA (or pushed to an agent or proxy) is parsed, its signature checked against the issuing CA
// certificate, and reduced to the values a revocation check needs.
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <unordered_set>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/openssl_ptr.h"

namespace meshid {

class RevocationIndex;

struct CrlInfo {
  int64_t number = 0;  // cRLNumber (0 when the CRL has none)
  absl::Time this_update;
  absl::Time next_update;                        // absl::InfiniteFuture() when absent
  std::string issuer_serial_hex;                 // serial of the CA certificate it was verified against
  std::set<std::string> revoked;                 // upper-case hex serials (empty with CrlSerials::kIndexOnly)
  std::shared_ptr<const RevocationIndex> index;  // the same serials, for IsRevoked; never null
};

// What VerifyCrl returns of the revoked serials. A caller that only needs the index (the agent)
// saves building 100,000 hex strings.
enum class CrlSerials { kHexAndIndex, kIndexOnly };

// Parses `der` (one DER-encoded CRL) and checks it: version 2, issued by `issuer` (same name,
// signature by its key), and current at `now` (thisUpdate not after it; nextUpdate, when
// present, after it unless `allow_stale`), and complete (no delta CRL, no critical issuing
// distribution point, no other unknown critical extension). Errors (InvalidArgument) say what is
// wrong: "not a DER CRL", "issued by CN=..., not by <issuer>", "bad signature", "expired at
// <nextUpdate>". The CRL is parsed once; `index` is what RevocationIndex::FromCrlDer would build.
absl::StatusOr<CrlInfo> VerifyCrl(absl::string_view der, X509* issuer, absl::Time now, bool allow_stale = false,
                                  CrlSerials serials = CrlSerials::kHexAndIndex);

// The revoked serials of one CRL, for the check every TLS handshake makes: is this certificate's
// issuer the CRL's issuer, and is its serial listed? A hash lookup of the serial's bytes and one
// name comparison (well under a microsecond at 100,000 entries), where OpenSSL's own CRL check
// would verify the CRL's signature again on every handshake. Build it from a CRL whose signature
// was checked (VerifyCrl) by whoever vouches for it: the agent checks what the server pushes, a
// proxy trusts its agent's ROOTCA for the CRL as it does for the roots. Immutable, thread-safe.
class RevocationIndex {
 public:
  // Parses `der` (a version 2, complete CRL) without checking its signature. InvalidArgument as
  // VerifyCrl. The revoked certificates are read by meshid's own strict DER reader (OpenSSL's
  // d2i_X509_CRL spends about 1 µs per entry on them); the rest of the CRL by OpenSSL.
  static absl::StatusOr<std::shared_ptr<const RevocationIndex>> FromCrlDer(absl::string_view der);

  // Whether `cert` was issued by this CRL's issuer (same name) and its serial is listed.
  bool IsRevoked(X509* cert) const;

  int64_t number() const { return number_; }  // cRLNumber (0 when absent)
  size_t size() const { return serials_.size(); }
  absl::Time this_update() const { return this_update_; }
  absl::Time next_update() const { return next_update_; }  // InfiniteFuture() when absent

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  friend absl::StatusOr<CrlInfo> VerifyCrl(absl::string_view, X509*, absl::Time, bool, CrlSerials);
  RevocationIndex() = default;
  // From the CRL without its revokedCertificates (`fields`, parsed by OpenSSL) and the content of
  // that SEQUENCE as it appears in the CRL ("" when absent).
  static absl::StatusOr<std::shared_ptr<RevocationIndex>> Build(X509_CRL* fields, absl::string_view revoked);
  X509NamePtr issuer_;
  // The serial as OpenSSL's ASN1_INTEGER holds it: the magnitude's big-endian octets, without
  // DER's leading 0x00 ("\0" for zero), "-" first for a negative one (transparent: looked up by
  // string_view).
  std::unordered_set<std::string, Hash, std::equal_to<>> serials_;
  int64_t number_ = 0;
  absl::Time this_update_;
  absl::Time next_update_;
};

// The DER of the first "X509 CRL" block of `pem`; InvalidArgument when there is none.
absl::StatusOr<std::string> CrlDerFromPem(absl::string_view pem);
// One "-----BEGIN X509 CRL-----" block.
std::string CrlDerToPem(absl::string_view der);

}  // namespace meshid
