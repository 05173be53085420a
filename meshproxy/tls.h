// TLS material of the sidecar: the workload certificate (SDS "default"), the trust bundle
// (SDS "ROOTCA") and the OpenSSL contexts built from both. Everything here is prepared off
// the workers (on the SDS client's threads) and published as an immutable TlsContexts
// snapshot; connections hold a shared_ptr to the snapshot they started with, so a rotation
// changes the certificate for new handshakes only.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/crl.h"
#include "common/openssl_ptr.h"

namespace meshid::meshproxy {

// What `istioctl proxy-config secret` shows per certificate.
struct CertificateInfo {
  std::string serial;     // upper-case hex
  std::string spiffe_id;  // the URI SAN ("" if none)
  absl::Time not_before;
  absl::Time not_after;
};

struct WorkloadCert {
  std::string version;         // SDS version_info
  std::vector<X509Ptr> chain;  // leaf first
  EvpPkeyPtr key;
  std::string spiffe_id;              // the leaf's SPIFFE ID
  std::vector<CertificateInfo> info;  // parallel to chain
};

struct TrustBundle {
  std::string version;
  std::vector<X509Ptr> roots;
  std::vector<CertificateInfo> info;
  // The CRL that came with the roots (ROOTCA's crl), as the handshake checks it; null: none.
  std::shared_ptr<const RevocationIndex> revoked;
};

// Checks an SDS tls_certificate: a PEM chain whose leaf carries exactly one SPIFFE URI SAN,
// and a private key matching the leaf. InvalidArgument says what is wrong (the SDS client
// NACKs with it).
absl::StatusOr<std::shared_ptr<const WorkloadCert>> ParseWorkloadCert(absl::string_view chain_pem,
                                                                      absl::string_view key_pem, std::string version);
// Checks an SDS validation_context: at least one PEM certificate, and a CRL when `crl_pem` is
// not empty. The CRL's signature is not checked here: a proxy trusts its agent's ROOTCA for the
// CRL as it does for the roots (the agent checked it, revocation/receiver.h).
absl::StatusOr<std::shared_ptr<const TrustBundle>> ParseTrustBundle(absl::string_view roots_pem,
                                                                    absl::string_view crl_pem, std::string version);

// The server context (inbound: presents the certificate, requires a client certificate that
// chains to the bundle) and the client context (outbound: presents the certificate, verifies
// the server's chain; the SPIFFE ID is checked by the caller after the handshake). TLS 1.2+.
// Both refuse a peer whose leaf the bundle's CRL lists (X509_V_ERR_CERT_REVOKED).
class TlsContexts {
 public:
  static absl::StatusOr<std::shared_ptr<const TlsContexts>> Create(std::shared_ptr<const WorkloadCert> cert,
                                                                   std::shared_ptr<const TrustBundle> bundle);
  TlsContexts(const TlsContexts&) = delete;
  TlsContexts& operator=(const TlsContexts&) = delete;

  SSL_CTX* server() const { return server_.get(); }
  SSL_CTX* client() const { return client_.get(); }
  const WorkloadCert& cert() const { return *cert_; }
  const TrustBundle& bundle() const { return *bundle_; }

 private:
  TlsContexts() = default;
  SslCtxPtr server_;
  SslCtxPtr client_;
  std::shared_ptr<const WorkloadCert> cert_;
  std::shared_ptr<const TrustBundle> bundle_;
};

// The SPIFFE ID in the verified peer certificate's URI SAN; "" when the peer sent no
// certificate or its certificate has no (or more than one, or an invalid) SPIFFE URI.
std::string PeerSpiffeId(SSL* ssl);
// SHA-256 of the peer certificate's DER in lower-case hex (XFCC's Hash); "" without one.
std::string PeerCertificateHash(SSL* ssl);

}  // namespace meshid::meshproxy
