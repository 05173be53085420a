// Caller authentication for the CSR API. The identity of a certificate is decided here, from
// what the caller proved, never from the CSR.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "ca/authority_source.h"
#include "common/clock.h"
#include "common/jwt.h"
#include "common/spiffe_id.h"

namespace meshid {

// What the transport knows about a call.
struct CallerCredentials {
  std::vector<std::string> authorization;    // every "authorization" metadata value
  std::string peer_cert_pem;                 // the TLS client certificate, if any
  std::vector<std::string> peer_chain_pems;  // the rest of the client's chain, if sent
};

struct AuthenticatedCaller {
  enum class Method { kJwt, kClientCert };
  SpiffeId id;
  Method method = Method::kJwt;
  std::string jwt_issuer;
  std::string jwt_subject;
  std::string client_cert_serial;
  // "jwt iss=<issuer> sub=<subject>" or "client-cert serial=<hex>", for logs and the ledger.
  std::string Describe() const;
};

class CallerAuthenticator {
 public:
  virtual ~CallerAuthenticator() = default;
  // Unauthenticated (with the reason) when the caller proved no acceptable identity.
  // Thread-safe.
  virtual absl::StatusOr<AuthenticatedCaller> Authenticate(const CallerCredentials& credentials) const = 0;
};

struct JwtIssuer {
  std::string issuer;  // exact "iss"
  Jwks jwks;
  std::vector<std::string> audiences;  // accepted "aud" values (Istio default: istio-ca)
};

// Verifies `authorization: Bearer <JWT>` against the configured issuers and maps the subject to
// a SPIFFE ID: `system:serviceaccount:<ns>:<sa>` → spiffe://<td>/ns/<ns>/sa/<sa>, or a subject
// that is itself a SPIFFE ID of this trust domain. Verified tokens are cached by value until
// they expire, so a workload renewing with the same token costs one hash lookup; claims (exp,
// nbf) are re-checked on every use. An issuer's keys can be replaced while serving
// (ReplaceJwks, from ca/reloader.h); the cache is dropped then, so a token signed by a key that
// was removed is refused by the next request.
class JwtAuthenticator final : public CallerAuthenticator {
 public:
  JwtAuthenticator(std::string trust_domain, std::vector<JwtIssuer> issuers, const Clock& clock,
                   absl::Duration allowed_skew = absl::Seconds(60));
  absl::StatusOr<AuthenticatedCaller> Authenticate(const CallerCredentials& credentials) const override;

  // Puts `jwks` in place of the keys of the configured issuer `issuer` and forgets every
  // verified token. NotFound if no issuer of that name was configured. Thread-safe; requests
  // already verifying finish with the keys they started with, and their result is not cached.
  absl::Status ReplaceJwks(const std::string& issuer, Jwks jwks);

  // Extracts the token from the first "Bearer " authorization value; NotFound if none.
  static absl::StatusOr<std::string> BearerToken(const std::vector<std::string>& authorization);

 private:
  using Issuers = std::vector<JwtIssuer>;
  struct Verified {
    Jwt jwt;
    std::shared_ptr<const Issuers> issuers;  // keeps `issuer` alive
    const JwtIssuer* issuer;
    AuthenticatedCaller caller;
  };
  absl::StatusOr<Verified> Verify(const std::string& token, std::shared_ptr<const Issuers> issuers) const;

  std::string trust_domain_;
  const Clock& clock_;
  absl::Duration allowed_skew_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const Issuers> issuers_ ABSL_GUARDED_BY(mu_);
  // Tokens verified against issuers_ as it is now.
  mutable absl::flat_hash_map<std::string, std::shared_ptr<const Verified>> cache_ ABSL_GUARDED_BY(mu_);
};

// Authenticates a renewal by a client certificate that this CA issued: the chain must verify to
// the roots of the CA's current authority now (AuthoritySnapshot: a certificate of a replaced
// signing certificate is accepted while its root is still in the bundle), the leaf must be a
// non-CA SVID with exactly one URI SAN in this trust domain. The new certificate keeps that
// identity. `authorities` is read on every call.
class ClientCertAuthenticator final : public CallerAuthenticator {
 public:
  ClientCertAuthenticator(std::shared_ptr<const AuthoritySource> authorities, std::string trust_domain,
                          const Clock& clock);
  absl::StatusOr<AuthenticatedCaller> Authenticate(const CallerCredentials& credentials) const override;

 private:
  std::shared_ptr<const AuthoritySource> authorities_;
  std::string trust_domain_;
  const Clock& clock_;
};

// Istio's order: a client certificate first, then a bearer token; the first success wins. With
// neither, or when both fail, Unauthenticated says why.
class CompositeAuthenticator final : public CallerAuthenticator {
 public:
  CompositeAuthenticator(std::unique_ptr<CallerAuthenticator> cert, std::unique_ptr<CallerAuthenticator> jwt)
      : cert_(std::move(cert)), jwt_(std::move(jwt)) {}
  absl::StatusOr<AuthenticatedCaller> Authenticate(const CallerCredentials& credentials) const override;

 private:
  std::unique_ptr<CallerAuthenticator> cert_;
  std::unique_ptr<CallerAuthenticator> jwt_;
};

}  // namespace meshid
