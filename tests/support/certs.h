// Test certificates: CAs, SVID-shaped leaves and the broken variants tests need (expired, not
// yet valid, from a foreign CA, with no or several URI SANs), built with plain OpenSSL and
// independent of ca/, so that what meshid issues and accepts is checked against certificates
// it did not make. Every OpenSSL call is checked; a failure is a status naming the step.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/keys.h"
#include "common/openssl_ptr.h"

namespace meshid::testing {

// What a test certificate says.
struct CertificateSpec {
  // A CA: basicConstraints CA:TRUE, keyUsage keyCertSign and cRLSign. Otherwise a leaf:
  // CA:FALSE, keyUsage digitalSignature (and keyEncipherment for RSA keys), extendedKeyUsage
  // serverAuth and clientAuth, and the URI SANs below.
  bool ca = false;
  std::string organization;  // subject O=, when not empty
  std::string common_name;   // subject CN=, when not empty
  // Leaves only, as one critical subjectAltName; an SVID has exactly one.
  std::vector<std::string> uri_sans;
  absl::Time not_before = absl::Now() - absl::Minutes(5);
  absl::Time not_after = absl::Now() + absl::Hours(1);
};

// A certificate for `subject_key` as `spec` says, with a random 16-byte serial. With `issuer`
// null it is self-signed; otherwise it carries `issuer`'s subject as its issuer, an authority
// key identifier, and is signed by `issuer_key`.
absl::StatusOr<X509Ptr> SignCertificate(const CertificateSpec& spec, EVP_PKEY* subject_key, X509* issuer = nullptr,
                                        EVP_PKEY* issuer_key = nullptr);

// A certificate and its private key, both PEM.
struct CertAndKeyPem {
  std::string cert;
  std::string key;
};

// A CA that signs test certificates. Move-only; const methods may be called from any thread.
class TestCa {
 public:
  struct Options {
    std::string organization = "test CA";
    absl::Time not_before = absl::Now() - absl::Hours(1);
    absl::Time not_after = absl::Now() + absl::Hours(24);
    KeyAlgorithm algorithm = KeyAlgorithm::kEcdsaP256;
  };

  // A new self-signed CA (a "foreign" mesh, or the root of a fake CA).
  static absl::StatusOr<TestCa> Create(const Options& options);
  static absl::StatusOr<TestCa> Create() { return Create(Options{}); }
  // The CA of a `meshid server` data directory: root-cert.pem signed by ca-key.pem.
  static absl::StatusOr<TestCa> FromDataDir(const std::string& dir);

  // A certificate for `subject_key` signed by this CA.
  absl::StatusOr<X509Ptr> Sign(const CertificateSpec& spec, EVP_PKEY* subject_key) const;
  // A leaf for a new P-256 key with `uri_sans` as its URI SANs, valid [not_before, not_after).
  absl::StatusOr<CertAndKeyPem> Leaf(std::vector<std::string> uri_sans,
                                     absl::Time not_before = absl::Now() - absl::Minutes(5),
                                     absl::Time not_after = absl::Now() + absl::Hours(1)) const;

  // A version 2 CRL (DER) of this CA numbered `number`, listing the serials of `revoked`, valid
  // for a day from now.
  absl::StatusOr<std::string> Crl(const std::vector<X509*>& revoked, int64_t number) const;

  X509* cert() const { return cert_.get(); }
  EVP_PKEY* key() const { return key_.get(); }
  const std::string& cert_pem() const { return cert_pem_; }

 private:
  TestCa(EvpPkeyPtr key, X509Ptr cert, std::string cert_pem);

  EvpPkeyPtr key_;
  X509Ptr cert_;
  std::string cert_pem_;
};

// A certificate and key written as <dir>/<name>.crt and <dir>/<name>.key (mode 0600), for
// curl, openssl s_client and the sidecar.
struct CertFiles {
  std::string cert;
  std::string key;
};
absl::StatusOr<CertFiles> WriteCertFiles(const std::string& dir, const std::string& name, const CertAndKeyPem& pem);

}  // namespace meshid::testing
