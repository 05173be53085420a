// The CA's current signing material as an immutable snapshot that is swapped whole when the
// plug-in `cacerts` files are reloaded (ca/reloader.h). Every consumer (the CSR API's signer,
// the client-certificate authenticator, the CRL publisher) takes one snapshot per request and
// uses it to the end, so a request never mixes a certificate signed by one key with the chain of
// another, and a reload never fails a request in flight.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "ca/authority.h"
#include "ca/cert_issuer.h"

namespace meshid {

struct AuthoritySnapshot {
  std::shared_ptr<const CertIssuer> issuer;  // never null; signs with authority()
  // The material `issuer` signs with: signing certificate and key, chain, trust bundle.
  const SigningAuthority& authority() const { return issuer->authority(); }
  // Certificates that may lie between a client certificate this CA issued and a root of
  // authority(): the signing certificate and intermediates of authority(), then those of the
  // authorities it replaced (at most AuthoritySource::kRetainedAuthorities), so that a workload
  // holding a certificate from before a rotation can still renew with it. They only help build
  // the path: whether it is trusted is decided by authority().roots alone, so once an old root
  // leaves root-cert.pem its certificates stop authenticating.
  std::vector<X509*> path_certs;
  // The replaced authorities path_certs points into, newest first.
  std::vector<std::shared_ptr<const SigningAuthority>> retired;
  uint64_t generation = 0;  // 0 for the first, one more on every Replace
};

// Thread-safe. Current() copies a shared_ptr under a reader lock: no file I/O or parsing on the
// issuance path.
class AuthoritySource {
 public:
  static constexpr size_t kRetainedAuthorities = 4;

  // `issuer` must not be null.
  explicit AuthoritySource(std::shared_ptr<const CertIssuer> issuer);
  AuthoritySource(const AuthoritySource&) = delete;
  AuthoritySource& operator=(const AuthoritySource&) = delete;

  // The snapshot in force (never null).
  std::shared_ptr<const AuthoritySnapshot> Current() const;

  // Publishes `issuer` (not null) as the new signing material; the one it replaces joins the
  // retired authorities. Requests holding the previous snapshot finish with it.
  void Replace(std::shared_ptr<const CertIssuer> issuer);

 private:
  mutable absl::Mutex mu_;
  std::shared_ptr<const AuthoritySnapshot> current_ ABSL_GUARDED_BY(mu_);
};

}  // namespace meshid
