#include "meshproxy/tls.h"

#include "absl/strings/str_cat.h"
#include "common/keys.h"
#include "common/sha256.h"
#include "common/spiffe_id.h"
#include "common/x509.h"

namespace meshid::meshproxy {
namespace {

CertificateInfo Describe(X509* cert) {
  CertificateInfo info;
  info.serial = SerialHex(cert);
  auto uris = UriSans(cert);
  if (uris.size() == 1) info.spiffe_id = uris[0];
  info.not_before = NotBefore(cert);
  info.not_after = NotAfter(cert);
  return info;
}

// Common settings: TLS 1.2+, our certificate chain and key, the bundle as trust store.
absl::StatusOr<SslCtxPtr> NewContext(const SSL_METHOD* method, const WorkloadCert& cert, const TrustBundle& bundle) {
  SslCtxPtr ctx(SSL_CTX_new(method));
  if (!ctx) return OpenSslError("SSL_CTX_new");
  if (SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION) != 1) return OpenSslError("requiring TLS 1.2");
  if (SSL_CTX_use_certificate(ctx.get(), cert.chain[0].get()) != 1) return OpenSslError("SSL_CTX_use_certificate");
  for (size_t i = 1; i < cert.chain.size(); ++i) {
    if (SSL_CTX_add1_chain_cert(ctx.get(), cert.chain[i].get()) != 1) return OpenSslError("SSL_CTX_add1_chain_cert");
  }
  if (SSL_CTX_use_PrivateKey(ctx.get(), cert.key.get()) != 1) return OpenSslError("SSL_CTX_use_PrivateKey");
  if (SSL_CTX_check_private_key(ctx.get()) != 1) {
    return OpenSslError("checking that the private key matches the certificate");
  }
  SSL_CTX_set_app_data(ctx.get(), const_cast<RevocationIndex*>(bundle.revoked.get()));  // read-only
  X509_STORE* store = SSL_CTX_get_cert_store(ctx.get());
  for (const auto& root : bundle.roots) {
    if (X509_STORE_add_cert(store, root.get()) != 1) {
      // A root listed twice is harmless.
      DrainOpenSslErrors();
    }
  }
  return ctx;
}

// After OpenSSL's own checks: the leaf must not be on the bundle's CRL, which the context
// carries as its app data (the TlsContexts owning both outlives every connection using it).
int VerifyNotRevoked(int preverify_ok, X509_STORE_CTX* store) {
  if (preverify_ok != 1 || X509_STORE_CTX_get_error_depth(store) != 0) return preverify_ok;
  auto* ssl = static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  const auto* revoked = static_cast<const RevocationIndex*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  X509* leaf = X509_STORE_CTX_get_current_cert(store);
  if (revoked != nullptr && leaf != nullptr && revoked->IsRevoked(leaf)) {
    X509_STORE_CTX_set_error(store, X509_V_ERR_CERT_REVOKED);
    return 0;
  }
  return 1;
}

}  // namespace

absl::StatusOr<std::shared_ptr<const WorkloadCert>> ParseWorkloadCert(absl::string_view chain_pem,
                                                                      absl::string_view key_pem, std::string version) {
  auto cert = std::make_shared<WorkloadCert>();
  cert->version = std::move(version);
  auto chain = CertsFromPem(chain_pem, "certificate_chain");
  if (!chain.ok()) return absl::InvalidArgumentError(chain.status().message());
  cert->chain = std::move(*chain);
  auto key = PrivateKeyFromPem(key_pem);
  if (!key.ok()) return absl::InvalidArgumentError(absl::StrCat("private_key: ", key.status().message()));
  cert->key = std::move(*key);
  X509* leaf = cert->chain[0].get();
  if (X509_check_private_key(leaf, cert->key.get()) != 1) {
    DrainOpenSslErrors();
    return absl::InvalidArgumentError("the private key does not match the leaf certificate");
  }
  auto uris = UriSans(leaf);
  if (uris.size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("the leaf certificate has ", uris.size(), " URI SANs; a workload certificate has one SPIFFE ID"));
  }
  auto id = SpiffeId::Parse(uris[0]);
  if (!id.ok()) return absl::InvalidArgumentError(absl::StrCat("the leaf's URI SAN: ", id.status().message()));
  cert->spiffe_id = id->ToString();
  for (const auto& c : cert->chain) cert->info.push_back(Describe(c.get()));
  return std::shared_ptr<const WorkloadCert>(std::move(cert));
}

absl::StatusOr<std::shared_ptr<const TrustBundle>> ParseTrustBundle(absl::string_view roots_pem,
                                                                    absl::string_view crl_pem, std::string version) {
  auto bundle = std::make_shared<TrustBundle>();
  if (!crl_pem.empty()) {
    auto der = CrlDerFromPem(crl_pem);
    if (!der.ok()) return absl::InvalidArgumentError(absl::StrCat("crl: ", der.status().message()));
    auto index = RevocationIndex::FromCrlDer(*der);
    if (!index.ok()) return absl::InvalidArgumentError(absl::StrCat("crl: ", index.status().message()));
    bundle->revoked = *std::move(index);
  }
  bundle->version = std::move(version);
  auto roots = CertsFromPem(roots_pem, "trusted_ca");
  if (!roots.ok()) return absl::InvalidArgumentError(roots.status().message());
  bundle->roots = std::move(*roots);
  for (const auto& c : bundle->roots) bundle->info.push_back(Describe(c.get()));
  return std::shared_ptr<const TrustBundle>(std::move(bundle));
}

absl::StatusOr<std::shared_ptr<const TlsContexts>> TlsContexts::Create(std::shared_ptr<const WorkloadCert> cert,
                                                                       std::shared_ptr<const TrustBundle> bundle) {
  std::shared_ptr<TlsContexts> t(new TlsContexts());
  t->cert_ = std::move(cert);
  t->bundle_ = std::move(bundle);
  auto server = NewContext(TLS_server_method(), *t->cert_, *t->bundle_);
  if (!server.ok()) return server.status();
  t->server_ = *std::move(server);
  // Istio's inbound TLS chain: require_client_certificate.
  SSL_CTX_set_verify(t->server_.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, VerifyNotRevoked);
  static constexpr unsigned char kSessionContext[] = "meshid-inbound";
  if (SSL_CTX_set_session_id_context(t->server_.get(), kSessionContext, sizeof(kSessionContext) - 1) != 1) {
    return OpenSslError("setting the session id context");
  }
  // Mesh clients do not resume: no tickets to mint per handshake.
  if (SSL_CTX_set_num_tickets(t->server_.get(), 0) != 1) return OpenSslError("turning session tickets off");
  auto client = NewContext(TLS_client_method(), *t->cert_, *t->bundle_);
  if (!client.ok()) return client.status();
  t->client_ = *std::move(client);
  SSL_CTX_set_verify(t->client_.get(), SSL_VERIFY_PEER, VerifyNotRevoked);
  SSL_CTX_set_session_cache_mode(t->client_.get(), SSL_SESS_CACHE_OFF);  // returns the previous mode
  return std::shared_ptr<const TlsContexts>(std::move(t));
}

std::string PeerSpiffeId(SSL* ssl) {
  X509* peer = SSL_get0_peer_certificate(ssl);
  if (peer == nullptr) return "";
  auto uris = UriSans(peer);
  if (uris.size() != 1) return "";
  auto id = SpiffeId::Parse(uris[0]);
  return id.ok() ? id->ToString() : "";
}

std::string PeerCertificateHash(SSL* ssl) {
  X509* peer = SSL_get0_peer_certificate(ssl);
  if (peer == nullptr) return "";
  return Sha256Hex(CertToDer(peer));
}

}  // namespace meshid::meshproxy
