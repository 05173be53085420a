// Builds and signs certificates under a SigningAuthority: workload X.509-SVIDs (the profile in
// docs/operations.md), the CA's own TLS serving certificate, and self-signed roots. Thread-safe.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ca/authority.h"
#include "common/clock.h"
#include "common/keys.h"
#include "common/openssl_ptr.h"
#include "common/random.h"
#include "common/spiffe_id.h"

namespace meshid {

struct IssuedCertificate {
  std::string der;
  std::string pem;
  std::string serial_hex;
  absl::Time not_before;
  absl::Time not_after;
};

class CertIssuer {
 public:
  // Prepares signing with `authority`'s key (ECDSA P-256/P-384 or RSA) and the DER pieces every
  // certificate shares. InvalidArgument if the key is of another kind, Internal if OpenSSL
  // fails. Backdating notBefore by `clock_skew` tolerates peers whose clocks run slightly
  // behind. `clock` and `random` must outlive the issuer.
  static absl::StatusOr<std::unique_ptr<CertIssuer>> Create(std::shared_ptr<const SigningAuthority> authority,
                                                            const Clock& clock, RandomSource& random,
                                                            absl::Duration clock_skew = absl::Minutes(2));
  CertIssuer(const CertIssuer&) = delete;
  CertIssuer& operator=(const CertIssuer&) = delete;

  // An X.509-SVID for the key in `spki_der` (a DER SubjectPublicKeyInfo, copied into the
  // certificate as is) of kind `key_algorithm`: empty subject, one critical URI SAN `id` (plus `dns_sans`),
  // critical key usage digitalSignature (+keyEncipherment for RSA), EKU serverAuth+clientAuth,
  // critical CA:FALSE, AKI, 127-bit serial (issuance time in ms, then 80 random bits),
  // notAfter = min(now + ttl, issuer chain's notAfter). FailedPrecondition if the signing
  // certificate has expired.
  // Certificates are assembled as DER and signed directly; no X509 object is built, because
  // OpenSSL 3.0's key encoders would cost more than the signature.
  absl::StatusOr<IssuedCertificate> IssueSvid(absl::string_view spki_der, KeyAlgorithm key_algorithm,
                                              const SpiffeId& id, absl::Duration ttl,
                                              const std::vector<std::string>& dns_sans = {}) const;

  // A TLS server certificate for the CA endpoint itself (DNS and IP SANs, EKU serverAuth).
  absl::StatusOr<IssuedCertificate> IssueServingCert(EVP_PKEY* public_key, const std::vector<std::string>& names,
                                                     absl::Duration ttl) const;
  ~CertIssuer();

  const SigningAuthority& authority() const { return *authority_; }
  const std::shared_ptr<const SigningAuthority>& shared_authority() const { return authority_; }
  // The signing certificate's serial, upper-case hex: the ledger's issuer_serial_hex.
  const std::string& signing_serial_hex() const { return signing_serial_hex_; }

 private:
  struct Signer;
  CertIssuer(std::shared_ptr<const SigningAuthority> authority, const Clock& clock, RandomSource& random,
             absl::Duration clock_skew);
  absl::StatusOr<IssuedCertificate> Issue(absl::string_view spki_der, bool rsa_key, absl::string_view san_extension,
                                          bool server_only, absl::Duration ttl) const;

  std::shared_ptr<const SigningAuthority> authority_;
  const Clock& clock_;
  RandomSource& random_;
  absl::Duration clock_skew_;
  absl::Time chain_not_after_;
  std::string signing_serial_hex_;
  std::unique_ptr<Signer> signer_;
  // DER pieces that are the same in every certificate this issuer signs.
  std::string signature_algorithm_;
  std::string issuer_name_;
  std::string ext_basic_constraints_, ext_key_usage_ec_, ext_key_usage_rsa_, ext_eku_svid_, ext_eku_server_,
      ext_authority_key_id_;
};

// A self-signed root: subject O=<trust_domain>, CA:TRUE (critical), keyCertSign+cRLSign
// (critical), SKI, URI SAN spiffe://<trust_domain>, validity [now, now + lifetime).
absl::StatusOr<X509Ptr> CreateSelfSignedRoot(EVP_PKEY* key, const std::string& trust_domain, absl::Duration lifetime,
                                             const Clock& clock, RandomSource& random);

}  // namespace meshid
