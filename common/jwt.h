// JSON Web Tokens (RFC 7519) signed with JWS compact serialization, and JSON Web Key Sets
// (RFC 7517). Only asymmetric algorithms are supported: RS256/RS384/RS512, PS256, ES256, ES384.
// "none" and every HMAC algorithm are refused, so a public key can never be used as a secret.
//
// All functions are thread-safe; Jwks is immutable after parsing.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/openssl_ptr.h"

namespace meshid {

struct Jwk {
  std::string kid;  // may be empty
  std::string kty;  // "RSA" or "EC"
  std::string alg;  // optional hint from the JWKS ("" if absent)
  std::shared_ptr<EVP_PKEY> key;
};

class Jwks {
 public:
  // Parses {"keys":[...]}. RSA keys need n and e; EC keys need crv (P-256/P-384), x and y.
  // Keys with "use" other than "sig" and keys of unsupported types are skipped; a set without
  // any usable key, malformed JSON or a malformed usable key is InvalidArgument.
  static absl::StatusOr<Jwks> Parse(absl::string_view json);
  // A set holding the public half of `key` under `kid`.
  static absl::StatusOr<Jwks> FromPublicKey(EVP_PKEY* key, std::string kid);

  const std::vector<Jwk>& keys() const { return keys_; }
  // The set as JWKS JSON. Reading the keys' public numbers fails only when memory runs out;
  // the process then aborts.
  std::string ToJson() const;

 private:
  std::vector<Jwk> keys_;
};

// A structurally decoded token; nothing about it has been verified.
struct Jwt {
  nlohmann::json header;
  nlohmann::json payload;
  std::string alg;
  std::string kid;
  std::string signing_input;  // base64url(header) "." base64url(payload)
  std::string signature;      // raw bytes

  std::string issuer() const;
  std::string subject() const;
  std::vector<std::string> audiences() const;  // "aud" as string or array
};

// Splits and decodes a compact JWS. Unauthenticated with the reason on any malformation.
// Tokens above 16 KiB are refused.
absl::StatusOr<Jwt> DecodeJwt(absl::string_view token);

// Verifies the signature with the key selected by the token's kid (or, without a kid, any key
// that fits the algorithm). Refuses alg none/HS*, an algorithm that does not fit the key type,
// an unknown kid and a bad signature; each failure is Unauthenticated with its reason.
absl::Status VerifyJwtSignature(const Jwt& jwt, const Jwks& jwks);

struct JwtClaimChecks {
  std::string issuer;                  // required exact match when non-empty
  std::vector<std::string> audiences;  // token must carry one of these when non-empty
  absl::Time now;
  absl::Duration allowed_skew = absl::Seconds(60);
  bool require_expiry = true;
};
// Checks iss, aud, exp, nbf (and iat not in the future) with the skew allowance.
absl::Status CheckJwtClaims(const Jwt& jwt, const JwtClaimChecks& checks);

// Signs `payload` with `key` (ES256 for P-256, ES384 for P-384, RS256 for RSA), setting the
// header's alg, typ=JWT and kid.
absl::StatusOr<std::string> SignJwt(const nlohmann::json& payload, EVP_PKEY* key, absl::string_view kid);

}  // namespace meshid
