#include "common/jwt.h"

#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

#include <cstdlib>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/base64.h"
#include "common/keys.h"
#include "common/status_macros.h"

namespace meshid {
namespace {

constexpr size_t kMaxTokenBytes = 16 * 1024;
constexpr size_t kMaxJwksBytes = 1 << 20;

struct AlgInfo {
  absl::string_view name;
  int key_type;             // EVP_PKEY_RSA or EVP_PKEY_EC
  absl::string_view curve;  // for EC
  const EVP_MD* (*md)();
  bool pss;
  size_t ec_coordinate_bytes;
};

const AlgInfo* FindAlg(absl::string_view alg) {
  static const AlgInfo kAlgs[] = {
      {"RS256", EVP_PKEY_RSA, "", EVP_sha256, false, 0},      {"RS384", EVP_PKEY_RSA, "", EVP_sha384, false, 0},
      {"RS512", EVP_PKEY_RSA, "", EVP_sha512, false, 0},      {"PS256", EVP_PKEY_RSA, "", EVP_sha256, true, 0},
      {"ES256", EVP_PKEY_EC, "P-256", EVP_sha256, false, 32}, {"ES384", EVP_PKEY_EC, "P-384", EVP_sha384, false, 48},
  };
  for (const AlgInfo& info : kAlgs) {
    if (info.name == alg) return &info;
  }
  return nullptr;
}

absl::StatusOr<KeyAlgorithm> KeyFits(const AlgInfo& info, EVP_PKEY* key) {
  if (EVP_PKEY_get_base_id(key) != info.key_type) {
    return absl::UnauthenticatedError(
        absl::StrCat("JWT alg ", info.name, " does not fit the ", DescribeKey(key), " key"));
  }
  auto kind = ClassifyKey(key);
  if (!kind.ok()) return absl::UnauthenticatedError(absl::StrCat("JWT key not acceptable: ", kind.status().message()));
  if (info.key_type == EVP_PKEY_EC) {
    bool fits = (info.curve == "P-256" && *kind == KeyAlgorithm::kEcdsaP256) ||
                (info.curve == "P-384" && *kind == KeyAlgorithm::kEcdsaP384);
    if (!fits) {
      return absl::UnauthenticatedError(
          absl::StrCat("JWT alg ", info.name, " does not fit the ", DescribeKey(key), " key"));
    }
  }
  return kind;
}

absl::StatusOr<std::string> BigEndianField(const nlohmann::json& jwk, const char* field) {
  auto it = jwk.find(field);
  if (it == jwk.end() || !it->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat("JWK field \"", field, "\" is missing or not a string"));
  }
  auto bytes = Base64UrlDecode(it->get<std::string>());
  if (!bytes.ok() || bytes->empty()) {
    return absl::InvalidArgumentError(absl::StrCat("JWK field \"", field, "\" is not base64url"));
  }
  return *bytes;
}

absl::StatusOr<BignumPtr> ToBn(absl::string_view bytes) {
  BignumPtr bn(
      BN_bin2bn(reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()), nullptr));
  if (!bn) return OpenSslError("converting a JWK field to a number");
  return bn;
}

absl::StatusOr<EvpPkeyPtr> FromData(const char* type, OSSL_PARAM* params) {
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  EVP_PKEY* key = nullptr;
  if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &key, EVP_PKEY_PUBLIC_KEY, params) != 1) {
    return absl::InvalidArgumentError("JWK does not describe a valid key: " + DrainOpenSslErrors());
  }
  return EvpPkeyPtr(key);
}

absl::StatusOr<EvpPkeyPtr> RsaFromJwk(const nlohmann::json& jwk) {
  MESHID_ASSIGN_OR_RETURN(std::string n, BigEndianField(jwk, "n"));
  MESHID_ASSIGN_OR_RETURN(std::string e, BigEndianField(jwk, "e"));
  MESHID_ASSIGN_OR_RETURN(BignumPtr bn_n, ToBn(n));
  MESHID_ASSIGN_OR_RETURN(BignumPtr bn_e, ToBn(e));
  OsslParamBldPtr bld(OSSL_PARAM_BLD_new());
  if (!bld || OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get()) != 1) {
    return OpenSslError("building the RSA key parameters");
  }
  OsslParamPtr params(OSSL_PARAM_BLD_to_param(bld.get()));
  if (!params) return OpenSslError("building the RSA key parameters");
  return FromData("RSA", params.get());
}

absl::StatusOr<EvpPkeyPtr> EcFromJwk(const nlohmann::json& jwk) {
  auto crv_it = jwk.find("crv");
  if (crv_it == jwk.end() || !crv_it->is_string()) return absl::InvalidArgumentError("EC JWK has no \"crv\"");
  std::string crv = crv_it->get<std::string>();
  size_t size;
  const char* group;
  if (crv == "P-256") {
    size = 32;
    group = "P-256";
  } else if (crv == "P-384") {
    size = 48;
    group = "P-384";
  } else {
    return absl::InvalidArgumentError(absl::StrCat("EC JWK curve \"", crv, "\" is not supported (P-256, P-384)"));
  }
  MESHID_ASSIGN_OR_RETURN(std::string x, BigEndianField(jwk, "x"));
  MESHID_ASSIGN_OR_RETURN(std::string y, BigEndianField(jwk, "y"));
  if (x.size() != size || y.size() != size) {
    return absl::InvalidArgumentError(absl::StrCat("EC JWK coordinates must be ", size, " bytes for ", crv));
  }
  std::string point = absl::StrCat(std::string(1, '\x04'), x, y);
  OsslParamBldPtr bld(OSSL_PARAM_BLD_new());
  if (!bld || OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, 0) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()) != 1) {
    return OpenSslError("building the EC key parameters");
  }
  OsslParamPtr params(OSSL_PARAM_BLD_to_param(bld.get()));
  if (!params) return OpenSslError("building the EC key parameters");
  auto key = FromData("EC", params.get());
  if (!key.ok()) return key;
  // fromdata does not check that the point is on the curve.
  EvpPkeyCtxPtr check(EVP_PKEY_CTX_new_from_pkey(nullptr, key->get(), nullptr));
  if (!check || EVP_PKEY_public_check(check.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError("EC JWK point is not on the curve");
  }
  return key;
}

// Big-endian, left-padded to `size` bytes; empty if `bn` does not fit.
std::string BnToFixed(const BIGNUM* bn, size_t size) {
  std::string out(size, '\0');
  if (BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(size)) < 0) return "";
  return out;
}

// JWS carries ECDSA signatures as fixed-size r||s; OpenSSL wants DER.
absl::StatusOr<std::string> RawEcdsaToDer(absl::string_view raw, size_t coordinate_bytes) {
  if (raw.size() != 2 * coordinate_bytes) {
    return absl::UnauthenticatedError(
        absl::StrCat("JWT ECDSA signature must be ", 2 * coordinate_bytes, " bytes, got ", raw.size()));
  }
  EcdsaSigPtr sig(ECDSA_SIG_new());
  BignumPtr r(
      BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()), static_cast<int>(coordinate_bytes), nullptr));
  BignumPtr s(BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()) + coordinate_bytes,
                        static_cast<int>(coordinate_bytes), nullptr));
  if (!sig || !r || !s || ECDSA_SIG_set0(sig.get(), r.get(), s.get()) != 1) {
    return OpenSslError("building an ECDSA signature");
  }
  r.release();  // the signature owns both numbers now
  s.release();
  return EncodeDer([&](unsigned char** out) { return i2d_ECDSA_SIG(sig.get(), out); }, "encoding an ECDSA signature");
}

absl::StatusOr<std::string> DerEcdsaToRaw(absl::string_view der, size_t coordinate_bytes) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  EcdsaSigPtr sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())));
  if (!sig) return OpenSslError("decoding an ECDSA signature");
  std::string r = BnToFixed(ECDSA_SIG_get0_r(sig.get()), coordinate_bytes);
  std::string s = BnToFixed(ECDSA_SIG_get0_s(sig.get()), coordinate_bytes);
  if (r.empty() || s.empty()) return absl::InternalError("an ECDSA signature value is larger than its curve");
  return r + s;
}

bool VerifyWith(const AlgInfo& info, EVP_PKEY* key, absl::string_view input, absl::string_view signature) {
  std::string der_sig;
  if (info.key_type == EVP_PKEY_EC) {
    auto converted = RawEcdsaToDer(signature, info.ec_coordinate_bytes);
    if (!converted.ok()) return false;
    der_sig = std::move(*converted);
    signature = der_sig;
  }
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;  // owned by ctx
  bool ok = ctx != nullptr && EVP_DigestVerifyInit(ctx.get(), &pctx, info.md(), nullptr, key) == 1;
  if (ok && info.pss) {
    ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
         EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1;
  }
  ok = ok && EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
                              reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1;
  ERR_clear_error();
  return ok;
}

absl::StatusOr<nlohmann::json> DecodeJsonSegment(absl::string_view segment, absl::string_view what) {
  auto bytes = Base64UrlDecode(segment);
  if (!bytes.ok()) return absl::UnauthenticatedError(absl::StrCat("JWT ", what, " is not base64url"));
  nlohmann::json json = nlohmann::json::parse(*bytes, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return absl::UnauthenticatedError(absl::StrCat("JWT ", what, " is not a JSON object"));
  }
  return json;
}

// A public parameter of a key Parse or FromPublicKey accepted (an RSA or EC key, which always
// has it): reading it fails only when memory runs out, and then the process aborts.
BignumPtr PublicNumber(EVP_PKEY* key, const char* name) {
  BIGNUM* raw = nullptr;
  if (EVP_PKEY_get_bn_param(key, name, &raw) != 1 || raw == nullptr) std::abort();
  return BignumPtr(raw);
}

std::string StringClaim(const nlohmann::json& json, const char* name) {
  auto it = json.find(name);
  return it != json.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace

absl::StatusOr<Jwks> Jwks::Parse(absl::string_view text) {
  if (text.size() > kMaxJwksBytes) return absl::InvalidArgumentError("JWKS is larger than 1 MiB");
  nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) return absl::InvalidArgumentError("JWKS is not a JSON object");
  auto keys = json.find("keys");
  if (keys == json.end() || !keys->is_array()) return absl::InvalidArgumentError("JWKS has no \"keys\" array");
  Jwks jwks;
  for (size_t i = 0; i < keys->size(); ++i) {
    const nlohmann::json& entry = (*keys)[i];
    if (!entry.is_object()) return absl::InvalidArgumentError(absl::StrCat("JWKS keys[", i, "] is not an object"));
    std::string use = StringClaim(entry, "use");
    if (!use.empty() && use != "sig") continue;
    Jwk jwk;
    jwk.kty = StringClaim(entry, "kty");
    jwk.kid = StringClaim(entry, "kid");
    jwk.alg = StringClaim(entry, "alg");
    absl::StatusOr<EvpPkeyPtr> key;
    if (jwk.kty == "RSA") {
      key = RsaFromJwk(entry);
    } else if (jwk.kty == "EC") {
      key = EcFromJwk(entry);
    } else {
      continue;
    }
    if (!key.ok()) return absl::InvalidArgumentError(absl::StrCat("JWKS keys[", i, "]: ", key.status().message()));
    jwk.key = std::shared_ptr<EVP_PKEY>(std::move(*key));
    jwks.keys_.push_back(std::move(jwk));
  }
  if (jwks.keys_.empty()) return absl::InvalidArgumentError("JWKS has no usable RSA or EC signing key");
  return jwks;
}

absl::StatusOr<Jwks> Jwks::FromPublicKey(EVP_PKEY* key, std::string kid) {
  MESHID_ASSIGN_OR_RETURN(KeyAlgorithm algorithm, ClassifyKey(key));
  Jwk jwk;
  jwk.kid = std::move(kid);
  jwk.kty = IsRsa(algorithm) ? "RSA" : "EC";
  jwk.alg = IsRsa(algorithm) ? "RS256" : (algorithm == KeyAlgorithm::kEcdsaP256 ? "ES256" : "ES384");
  if (EVP_PKEY_up_ref(key) != 1) return OpenSslError("sharing the public key");
  jwk.key = std::shared_ptr<EVP_PKEY>(EvpPkeyPtr(key));
  Jwks jwks;
  jwks.keys_.push_back(std::move(jwk));
  return jwks;
}

std::string Jwks::ToJson() const {
  nlohmann::json keys = nlohmann::json::array();
  for (const Jwk& jwk : keys_) {
    nlohmann::json entry = {{"kty", jwk.kty}, {"use", "sig"}};
    if (!jwk.kid.empty()) entry["kid"] = jwk.kid;
    if (!jwk.alg.empty()) entry["alg"] = jwk.alg;
    EVP_PKEY* key = jwk.key.get();
    if (jwk.kty == "RSA") {
      BignumPtr n = PublicNumber(key, OSSL_PKEY_PARAM_RSA_N);
      BignumPtr e = PublicNumber(key, OSSL_PKEY_PARAM_RSA_E);
      entry["n"] = Base64UrlEncode(BnToFixed(n.get(), BN_num_bytes(n.get())));
      entry["e"] = Base64UrlEncode(BnToFixed(e.get(), BN_num_bytes(e.get())));
    } else {
      size_t size = EVP_PKEY_get_bits(key) == 384 ? 48 : 32;
      BignumPtr x = PublicNumber(key, OSSL_PKEY_PARAM_EC_PUB_X);
      BignumPtr y = PublicNumber(key, OSSL_PKEY_PARAM_EC_PUB_Y);
      entry["crv"] = size == 48 ? "P-384" : "P-256";
      entry["x"] = Base64UrlEncode(BnToFixed(x.get(), size));
      entry["y"] = Base64UrlEncode(BnToFixed(y.get(), size));
    }
    keys.push_back(std::move(entry));
  }
  return nlohmann::json{{"keys", keys}}.dump();
}

std::string Jwt::issuer() const { return StringClaim(payload, "iss"); }
std::string Jwt::subject() const { return StringClaim(payload, "sub"); }
std::vector<std::string> Jwt::audiences() const {
  std::vector<std::string> out;
  auto it = payload.find("aud");
  if (it == payload.end()) return out;
  if (it->is_string()) out.push_back(it->get<std::string>());
  if (it->is_array()) {
    for (const auto& a : *it) {
      if (a.is_string()) out.push_back(a.get<std::string>());
    }
  }
  return out;
}

absl::StatusOr<Jwt> DecodeJwt(absl::string_view token) {
  if (token.empty()) return absl::UnauthenticatedError("JWT is empty");
  if (token.size() > kMaxTokenBytes) return absl::UnauthenticatedError("JWT is larger than 16 KiB");
  std::vector<absl::string_view> parts = absl::StrSplit(token, '.');
  if (parts.size() != 3) {
    return absl::UnauthenticatedError(absl::StrCat("JWT must have 3 dot-separated parts, found ", parts.size()));
  }
  Jwt jwt;
  MESHID_ASSIGN_OR_RETURN(jwt.header, DecodeJsonSegment(parts[0], "header"));
  MESHID_ASSIGN_OR_RETURN(jwt.payload, DecodeJsonSegment(parts[1], "payload"));
  auto signature = Base64UrlDecode(parts[2]);
  if (!signature.ok()) return absl::UnauthenticatedError("JWT signature is not base64url");
  jwt.signature = std::move(*signature);
  jwt.alg = StringClaim(jwt.header, "alg");
  jwt.kid = StringClaim(jwt.header, "kid");
  if (jwt.header.contains("crit")) return absl::UnauthenticatedError("JWT header has unsupported \"crit\" parameters");
  jwt.signing_input = absl::StrCat(parts[0], ".", parts[1]);
  return jwt;
}

absl::Status VerifyJwtSignature(const Jwt& jwt, const Jwks& jwks) {
  if (jwt.alg.empty()) return absl::UnauthenticatedError("JWT header has no \"alg\"");
  const AlgInfo* info = FindAlg(jwt.alg);
  if (info == nullptr) {
    return absl::UnauthenticatedError(
        absl::StrCat("JWT alg \"", jwt.alg, "\" is not allowed (want RS256, RS384, RS512, PS256, ES256 or ES384)"));
  }
  bool kid_found = false;
  absl::Status last_fit_error = absl::OkStatus();
  for (const Jwk& jwk : jwks.keys()) {
    if (!jwt.kid.empty() && jwk.kid != jwt.kid) continue;
    kid_found = true;
    if (auto fits = KeyFits(*info, jwk.key.get()); !fits.ok()) {
      last_fit_error = fits.status();
      continue;
    }
    if (!jwk.alg.empty() && jwk.alg != jwt.alg) {
      last_fit_error =
          absl::UnauthenticatedError(absl::StrCat("JWT alg ", jwt.alg, " does not match the key's alg ", jwk.alg));
      continue;
    }
    if (VerifyWith(*info, jwk.key.get(), jwt.signing_input, jwt.signature)) return absl::OkStatus();
    if (!jwt.kid.empty()) return absl::UnauthenticatedError("JWT signature is invalid");
  }
  if (!jwt.kid.empty() && !kid_found) {
    return absl::UnauthenticatedError(absl::StrCat("JWT kid \"", jwt.kid, "\" is not in the issuer's key set"));
  }
  if (!last_fit_error.ok()) return last_fit_error;
  return absl::UnauthenticatedError("JWT signature is invalid");
}

absl::Status CheckJwtClaims(const Jwt& jwt, const JwtClaimChecks& checks) {
  if (!checks.issuer.empty() && jwt.issuer() != checks.issuer) {
    return absl::UnauthenticatedError(absl::StrCat("JWT issuer \"", jwt.issuer(), "\" is not \"", checks.issuer, "\""));
  }
  auto numeric = [&](const char* name) -> absl::StatusOr<std::optional<absl::Time>> {
    auto it = jwt.payload.find(name);
    if (it == jwt.payload.end()) return std::optional<absl::Time>();
    if (!it->is_number()) return absl::UnauthenticatedError(absl::StrCat("JWT claim \"", name, "\" is not a number"));
    return std::optional<absl::Time>(absl::FromUnixSeconds(static_cast<int64_t>(it->get<double>())));
  };
  MESHID_ASSIGN_OR_RETURN(auto exp, numeric("exp"));
  MESHID_ASSIGN_OR_RETURN(auto nbf, numeric("nbf"));
  MESHID_ASSIGN_OR_RETURN(auto iat, numeric("iat"));
  if (!exp.has_value() && checks.require_expiry) return absl::UnauthenticatedError("JWT has no \"exp\" claim");
  if (exp.has_value() && checks.now >= *exp + checks.allowed_skew) {
    return absl::UnauthenticatedError(
        absl::StrCat("JWT expired at ", absl::FormatTime(absl::RFC3339_sec, *exp, absl::UTCTimeZone())));
  }
  if (nbf.has_value() && checks.now + checks.allowed_skew < *nbf) {
    return absl::UnauthenticatedError(
        absl::StrCat("JWT is not valid before ", absl::FormatTime(absl::RFC3339_sec, *nbf, absl::UTCTimeZone())));
  }
  if (iat.has_value() && checks.now + checks.allowed_skew < *iat) {
    return absl::UnauthenticatedError("JWT was issued in the future (\"iat\")");
  }
  if (!checks.audiences.empty()) {
    std::vector<std::string> token_audiences = jwt.audiences();
    bool match = false;
    for (const std::string& a : token_audiences) {
      for (const std::string& want : checks.audiences) match = match || a == want;
    }
    if (!match) {
      return absl::UnauthenticatedError(absl::StrCat("JWT audience [", absl::StrJoin(token_audiences, ","),
                                                     "] has none of the accepted audiences [",
                                                     absl::StrJoin(checks.audiences, ","), "]"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> SignJwt(const nlohmann::json& payload, EVP_PKEY* key, absl::string_view kid) {
  MESHID_ASSIGN_OR_RETURN(KeyAlgorithm algorithm, ClassifyKey(key));
  std::string alg = IsRsa(algorithm) ? "RS256" : (algorithm == KeyAlgorithm::kEcdsaP256 ? "ES256" : "ES384");
  const AlgInfo* info = FindAlg(alg);
  nlohmann::json header = {{"alg", alg}, {"typ", "JWT"}};
  if (!kid.empty()) header["kid"] = std::string(kid);
  std::string input = absl::StrCat(Base64UrlEncode(header.dump()), ".", Base64UrlEncode(payload.dump()));
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  size_t len = 0;
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, info->md(), nullptr, key) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()), input.size()) !=
          1) {
    return absl::InternalError("JWT signing failed: " + DrainOpenSslErrors());
  }
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                     reinterpret_cast<const unsigned char*>(input.data()), input.size()) != 1) {
    return absl::InternalError("JWT signing failed: " + DrainOpenSslErrors());
  }
  sig.resize(len);
  if (info->key_type == EVP_PKEY_EC) {
    MESHID_ASSIGN_OR_RETURN(sig, DerEcdsaToRaw(sig, info->ec_coordinate_bytes));
  }
  return absl::StrCat(input, ".", Base64UrlEncode(sig));
}

}  // namespace meshid
