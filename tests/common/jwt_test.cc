#include "common/jwt.h"

#include <gtest/gtest.h>
#include <openssl/hmac.h>

#include "common/base64.h"
#include "common/keys.h"

namespace meshid {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

nlohmann::json Claims(int64_t exp_offset = 3600) {
  return {{"iss", "issuer-a"},
          {"sub", "system:serviceaccount:ns:sa"},
          {"aud", "istio-ca"},
          {"iat", absl::ToUnixSeconds(kNow)},
          {"exp", absl::ToUnixSeconds(kNow) + exp_offset}};
}

JwtClaimChecks Checks() {
  JwtClaimChecks c;
  c.issuer = "issuer-a";
  c.audiences = {"istio-ca"};
  c.now = kNow;
  return c;
}

absl::Status VerifyToken(const std::string& token, const Jwks& jwks) {
  auto jwt = DecodeJwt(token);
  if (!jwt.ok()) return jwt.status();
  if (auto s = VerifyJwtSignature(*jwt, jwks); !s.ok()) return s;
  return CheckJwtClaims(*jwt, Checks());
}

std::string Message(const absl::Status& s) { return std::string(s.message()); }

class JwtTest : public ::testing::Test {
 protected:
  EvpPkeyPtr ec_ = *GenerateKey(KeyAlgorithm::kEcdsaP256);
  EvpPkeyPtr ec384_ = *GenerateKey(KeyAlgorithm::kEcdsaP384);
  EvpPkeyPtr rsa_ = *GenerateKey(KeyAlgorithm::kRsa2048);
};

TEST_F(JwtTest, Es256Es384AndRs256RoundTrip) {
  for (EVP_PKEY* key : {ec_.get(), ec384_.get(), rsa_.get()}) {
    auto token = SignJwt(Claims(), key, "k1");
    ASSERT_TRUE(token.ok()) << token.status();
    auto jwks = Jwks::FromPublicKey(key, "k1");
    ASSERT_TRUE(jwks.ok());
    EXPECT_TRUE(VerifyToken(*token, *jwks).ok()) << VerifyToken(*token, *jwks);
    // Through JSON and back, as a JWKS file would carry it.
    auto reparsed = Jwks::Parse(jwks->ToJson());
    ASSERT_TRUE(reparsed.ok()) << reparsed.status();
    EXPECT_TRUE(VerifyToken(*token, *reparsed).ok());
  }
}

TEST_F(JwtTest, TokenWithoutKidMatchesAnyFittingKey) {
  auto token = SignJwt(Claims(), ec_.get(), "");
  Jwks jwks = *Jwks::Parse(Jwks::FromPublicKey(rsa_.get(), "r")->ToJson());
  EXPECT_FALSE(VerifyToken(*token, jwks).ok());
  EXPECT_TRUE(VerifyToken(*token, *Jwks::FromPublicKey(ec_.get(), "e")).ok());
}

TEST_F(JwtTest, RefusesAlgNone) {
  std::string token = Base64UrlEncode(R"({"alg":"none","typ":"JWT"})") + "." + Base64UrlEncode(Claims().dump()) + ".";
  auto s = VerifyToken(token, *Jwks::FromPublicKey(ec_.get(), ""));
  EXPECT_TRUE(absl::IsUnauthenticated(s));
  EXPECT_NE(Message(s).find("alg \"none\" is not allowed"), std::string::npos) << s;
}

TEST_F(JwtTest, RefusesHs256WithThePublicKeyAsSecret) {
  std::string header = Base64UrlEncode(R"({"alg":"HS256","typ":"JWT","kid":"k1"})");
  std::string input = header + "." + Base64UrlEncode(Claims().dump());
  std::string jwks_json = Jwks::FromPublicKey(rsa_.get(), "k1")->ToJson();
  unsigned char mac[32];
  unsigned int len = 0;
  HMAC(EVP_sha256(), jwks_json.data(), static_cast<int>(jwks_json.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &len);
  std::string token = input + "." + Base64UrlEncode(std::string(reinterpret_cast<char*>(mac), len));
  auto s = VerifyToken(token, *Jwks::Parse(jwks_json));
  EXPECT_NE(Message(s).find("alg \"HS256\" is not allowed"), std::string::npos) << s;
}

TEST_F(JwtTest, RefusesAlgorithmThatDoesNotFitTheKey) {
  // Signed with EC, header claims RS256 by re-labelling: the key (EC) does not fit RS256.
  auto token = *SignJwt(Claims(), ec_.get(), "k1");
  std::string forged = Base64UrlEncode(R"({"alg":"RS256","kid":"k1"})") + token.substr(token.find('.'));
  auto s = VerifyToken(forged, *Jwks::FromPublicKey(ec_.get(), "k1"));
  EXPECT_NE(Message(s).find("does not fit"), std::string::npos) << s;
  // ES384 label on a P-256 key.
  forged = Base64UrlEncode(R"({"alg":"ES384","kid":"k1"})") + token.substr(token.find('.'));
  s = VerifyToken(forged, *Jwks::FromPublicKey(ec_.get(), "k1"));
  EXPECT_NE(Message(s).find("does not fit"), std::string::npos) << s;
}

TEST_F(JwtTest, RefusesUnknownKidAndBadSignature) {
  auto token = *SignJwt(Claims(), ec_.get(), "other");
  auto s = VerifyToken(token, *Jwks::FromPublicKey(ec_.get(), "k1"));
  EXPECT_NE(Message(s).find("kid \"other\" is not in the issuer's key set"), std::string::npos) << s;

  token = *SignJwt(Claims(), ec_.get(), "k1");
  EvpPkeyPtr other = *GenerateKey(KeyAlgorithm::kEcdsaP256);
  s = VerifyToken(token, *Jwks::FromPublicKey(other.get(), "k1"));
  EXPECT_EQ(Message(s), "JWT signature is invalid");

  // Payload swapped after signing.
  nlohmann::json evil = Claims();
  evil["sub"] = "system:serviceaccount:kube-system:admin";
  std::string tampered =
      token.substr(0, token.find('.') + 1) + Base64UrlEncode(evil.dump()) + token.substr(token.rfind('.'));
  s = VerifyToken(tampered, *Jwks::FromPublicKey(ec_.get(), "k1"));
  EXPECT_EQ(Message(s), "JWT signature is invalid");
}

TEST_F(JwtTest, ChecksExpiryNotBeforeWithSkew) {
  Jwks jwks = *Jwks::FromPublicKey(ec_.get(), "k");
  EXPECT_TRUE(VerifyToken(*SignJwt(Claims(-30), ec_.get(), "k"), jwks).ok()) << "within the 60s skew";
  auto s = VerifyToken(*SignJwt(Claims(-61), ec_.get(), "k"), jwks);
  EXPECT_NE(Message(s).find("JWT expired at"), std::string::npos) << s;
  nlohmann::json future = Claims();
  future["nbf"] = absl::ToUnixSeconds(kNow) + 120;
  s = VerifyToken(*SignJwt(future, ec_.get(), "k"), jwks);
  EXPECT_NE(Message(s).find("not valid before"), std::string::npos) << s;
  nlohmann::json no_exp = Claims();
  no_exp.erase("exp");
  s = VerifyToken(*SignJwt(no_exp, ec_.get(), "k"), jwks);
  EXPECT_EQ(Message(s), "JWT has no \"exp\" claim");
}

TEST_F(JwtTest, ChecksIssuerAndAudience) {
  Jwks jwks = *Jwks::FromPublicKey(ec_.get(), "k");
  nlohmann::json c = Claims();
  c["aud"] = nlohmann::json::array({"other", "api"});
  auto s = VerifyToken(*SignJwt(c, ec_.get(), "k"), jwks);
  EXPECT_NE(Message(s).find("has none of the accepted audiences [istio-ca]"), std::string::npos) << s;
  c["aud"] = nlohmann::json::array({"other", "istio-ca"});
  EXPECT_TRUE(VerifyToken(*SignJwt(c, ec_.get(), "k"), jwks).ok());
  c["iss"] = "issuer-b";
  s = VerifyToken(*SignJwt(c, ec_.get(), "k"), jwks);
  EXPECT_NE(Message(s).find("issuer \"issuer-b\""), std::string::npos) << s;
}

TEST(JwtDecode, RejectsMalformedTokens) {
  const char* bad[] = {"",          "a", "a.b", "a.b.c.d", "!!.e30.", "e30.!!.", "W10.e30.",  // header is an array
                       "e30.e30.!!"};
  for (const char* token : bad) EXPECT_FALSE(DecodeJwt(token).ok()) << token;
  EXPECT_FALSE(DecodeJwt(std::string(17000, 'a')).ok());
  std::string crit = Base64UrlEncode(R"({"alg":"ES256","crit":["exp"]})") + ".e30.";
  EXPECT_FALSE(DecodeJwt(crit).ok());
}

TEST(Jwks, RejectsMalformedSets) {
  EXPECT_FALSE(Jwks::Parse("not json").ok());
  EXPECT_FALSE(Jwks::Parse("{}").ok());
  EXPECT_FALSE(Jwks::Parse(R"({"keys":[]})").ok());
  EXPECT_FALSE(Jwks::Parse(R"({"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]})").ok());
  EXPECT_FALSE(Jwks::Parse(R"({"keys":[{"kty":"EC","crv":"P-521","x":"AA","y":"AA"}]})").ok());
  EXPECT_FALSE(Jwks::Parse(R"({"keys":[{"kty":"RSA","n":"!!","e":"AQAB"}]})").ok());
  // A point not on the curve.
  std::string zeros = Base64UrlEncode(std::string(32, '\0'));
  EXPECT_FALSE(
      Jwks::Parse(R"({"keys":[{"kty":"EC","crv":"P-256","x":")" + zeros + R"(","y":")" + zeros + R"("}]})").ok());
  // Encryption keys and unknown types are skipped, not errors, when a signing key remains.
  auto key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
  nlohmann::json set = nlohmann::json::parse(Jwks::FromPublicKey(key.get(), "k")->ToJson());
  set["keys"].push_back({{"kty", "oct"}, {"k", "AAAA"}});
  set["keys"].push_back({{"kty", "RSA"}, {"use", "enc"}, {"n", "AQAB"}, {"e", "AQAB"}});
  auto parsed = Jwks::Parse(set.dump());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->keys().size(), 1u);
}

}  // namespace
}  // namespace meshid
