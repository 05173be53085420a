#include "ca/authenticator.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "common/x509.h"

namespace meshid {
namespace {

constexpr size_t kMaxCachedTokens = 100000;
constexpr absl::string_view kBearerPrefix = "Bearer ";

absl::Status Unauthenticated(absl::string_view why) { return absl::UnauthenticatedError(std::string(why)); }

}  // namespace

std::string AuthenticatedCaller::Describe() const {
  if (method == Method::kClientCert) return absl::StrCat("client-cert serial=", client_cert_serial);
  return absl::StrCat("jwt iss=", jwt_issuer, " sub=", jwt_subject);
}

JwtAuthenticator::JwtAuthenticator(std::string trust_domain, std::vector<JwtIssuer> issuers, const Clock& clock,
                                   absl::Duration allowed_skew)
    : trust_domain_(std::move(trust_domain)),
      clock_(clock),
      allowed_skew_(allowed_skew),
      issuers_(std::make_shared<const Issuers>(std::move(issuers))) {}

absl::Status JwtAuthenticator::ReplaceJwks(const std::string& issuer, Jwks jwks) {
  absl::MutexLock lock(&mu_);
  auto next = std::make_shared<Issuers>(*issuers_);
  auto it = std::find_if(next->begin(), next->end(), [&](const JwtIssuer& i) { return i.issuer == issuer; });
  if (it == next->end()) return absl::NotFoundError(absl::StrCat("JWT issuer \"", issuer, "\" is not configured"));
  it->jwks = std::move(jwks);
  issuers_ = std::move(next);
  cache_.clear();
  return absl::OkStatus();
}

absl::StatusOr<std::string> JwtAuthenticator::BearerToken(const std::vector<std::string>& authorization) {
  for (const std::string& value : authorization) {
    if (absl::StartsWith(value, kBearerPrefix)) return value.substr(kBearerPrefix.size());
  }
  return absl::NotFoundError("no \"authorization: Bearer <JWT>\" metadata");
}

absl::StatusOr<JwtAuthenticator::Verified> JwtAuthenticator::Verify(const std::string& token,
                                                                    std::shared_ptr<const Issuers> issuers) const {
  Verified v;
  MESHID_ASSIGN_OR_RETURN(v.jwt, DecodeJwt(token));
  std::string iss = v.jwt.issuer();
  v.issuers = std::move(issuers);
  v.issuer = nullptr;
  for (const JwtIssuer& candidate : *v.issuers) {
    if (candidate.issuer == iss) v.issuer = &candidate;
  }
  if (v.issuer == nullptr) return Unauthenticated(absl::StrCat("JWT issuer \"", iss, "\" is not trusted"));
  MESHID_RETURN_IF_ERROR(VerifyJwtSignature(v.jwt, v.issuer->jwks));

  std::string sub = v.jwt.subject();
  if (sub.empty()) return Unauthenticated("JWT has no \"sub\" claim");
  std::vector<std::string> parts = absl::StrSplit(sub, ':');
  if (parts.size() == 4 && parts[0] == "system" && parts[1] == "serviceaccount") {
    auto id = SpiffeId::ForServiceAccount(trust_domain_, parts[2], parts[3]);
    if (!id.ok()) return Unauthenticated(absl::StrCat("JWT subject \"", sub, "\": ", id.status().message()));
    v.caller.id = *id;
  } else if (absl::StartsWith(sub, "spiffe://")) {
    auto id = SpiffeId::Parse(sub);
    if (!id.ok()) return Unauthenticated(absl::StrCat("JWT subject: ", id.status().message()));
    if (id->trust_domain() != trust_domain_) {
      return Unauthenticated(absl::StrCat("JWT subject ", sub, " is not in trust domain ", trust_domain_));
    }
    v.caller.id = *id;
  } else {
    return Unauthenticated(
        absl::StrCat("JWT subject \"", sub, "\" is neither system:serviceaccount:<namespace>:<name> nor a SPIFFE ID"));
  }
  v.caller.method = AuthenticatedCaller::Method::kJwt;
  v.caller.jwt_issuer = iss;
  v.caller.jwt_subject = sub;
  return v;
}

absl::StatusOr<AuthenticatedCaller> JwtAuthenticator::Authenticate(const CallerCredentials& credentials) const {
  MESHID_ASSIGN_OR_RETURN(std::string token, BearerToken(credentials.authorization));
  std::shared_ptr<const Verified> verified;
  std::shared_ptr<const Issuers> issuers;
  {
    absl::MutexLock lock(&mu_);
    auto it = cache_.find(token);
    if (it != cache_.end()) verified = it->second;
    issuers = issuers_;
  }
  if (verified == nullptr) {
    auto fresh = Verify(token, issuers);
    if (!fresh.ok()) return fresh.status();
    verified = std::make_shared<const Verified>(std::move(*fresh));
    // Claims are checked below before caching so that a token that is not yet valid does not
    // take a slot.
  }
  JwtClaimChecks checks;
  checks.issuer = verified->issuer->issuer;
  checks.audiences = verified->issuer->audiences;
  checks.now = clock_.Now();
  checks.allowed_skew = allowed_skew_;
  if (absl::Status s = CheckJwtClaims(verified->jwt, checks); !s.ok()) {
    absl::MutexLock lock(&mu_);
    cache_.erase(token);
    return s;
  }
  {
    absl::MutexLock lock(&mu_);
    // Verified against keys that were replaced meanwhile: good for this request only.
    if (verified->issuers == issuers_) {
      if (cache_.size() >= kMaxCachedTokens) cache_.clear();
      cache_.emplace(token, verified);
    }
  }
  return verified->caller;
}

ClientCertAuthenticator::ClientCertAuthenticator(std::shared_ptr<const AuthoritySource> authorities,
                                                 std::string trust_domain, const Clock& clock)
    : authorities_(std::move(authorities)), trust_domain_(std::move(trust_domain)), clock_(clock) {}

absl::StatusOr<AuthenticatedCaller> ClientCertAuthenticator::Authenticate(const CallerCredentials& credentials) const {
  if (credentials.peer_cert_pem.empty()) return absl::NotFoundError("no client certificate");
  auto leaf = CertFromPem(credentials.peer_cert_pem);
  if (!leaf.ok()) return Unauthenticated(absl::StrCat("client certificate: ", leaf.status().message()));
  std::vector<X509Ptr> presented;
  for (const std::string& pem : credentials.peer_chain_pems) {
    auto certs = CertsFromPem(pem);
    if (!certs.ok()) continue;  // the chain is only a hint; verification decides
    for (auto& c : *certs) presented.push_back(std::move(c));
  }
  const std::shared_ptr<const AuthoritySnapshot> authority = authorities_->Current();
  std::vector<X509*> untrusted;
  untrusted.reserve(presented.size() + authority->path_certs.size());
  for (const auto& c : presented) untrusted.push_back(c.get());
  untrusted.insert(untrusted.end(), authority->path_certs.begin(), authority->path_certs.end());
  std::vector<X509*> roots;
  for (const auto& r : authority->authority().roots) roots.push_back(r.get());
  if (absl::Status s = VerifyCertChain(leaf->get(), untrusted, roots, clock_.Now()); !s.ok()) {
    return Unauthenticated(absl::StrCat("client certificate is not a valid certificate of this CA: ", s.message()));
  }
  if (IsCa(leaf->get())) return Unauthenticated("client certificate is a CA certificate, not a workload SVID");
  std::vector<std::string> uris = UriSans(leaf->get());
  if (uris.size() != 1) {
    return Unauthenticated(absl::StrCat("client certificate has ", uris.size(), " URI SANs; an SVID has exactly one"));
  }
  auto id = SpiffeId::Parse(uris.front());
  if (!id.ok()) return Unauthenticated(absl::StrCat("client certificate URI SAN: ", id.status().message()));
  if (id->trust_domain() != trust_domain_) {
    return Unauthenticated(
        absl::StrCat("client certificate identity ", uris.front(), " is not in trust domain ", trust_domain_));
  }
  AuthenticatedCaller caller;
  caller.id = *id;
  caller.method = AuthenticatedCaller::Method::kClientCert;
  caller.client_cert_serial = SerialHex(leaf->get());
  return caller;
}

absl::StatusOr<AuthenticatedCaller> CompositeAuthenticator::Authenticate(const CallerCredentials& credentials) const {
  std::vector<std::string> reasons;
  if (!credentials.peer_cert_pem.empty()) {
    auto caller = cert_->Authenticate(credentials);
    if (caller.ok()) return caller;
    reasons.push_back(std::string(caller.status().message()));
  }
  auto caller = jwt_->Authenticate(credentials);
  if (caller.ok()) return caller;
  if (!absl::IsNotFound(caller.status()) || reasons.empty()) reasons.push_back(std::string(caller.status().message()));
  if (credentials.peer_cert_pem.empty() && absl::IsNotFound(caller.status())) {
    return Unauthenticated(
        "request authenticate failure: no credentials (send \"authorization: Bearer <JWT>\" or a client certificate "
        "issued by this CA)");
  }
  return Unauthenticated(absl::StrCat("request authenticate failure: ", absl::StrJoin(reasons, "; ")));
}

}  // namespace meshid
