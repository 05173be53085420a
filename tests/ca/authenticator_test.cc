#include "ca/authenticator.h"

#include <gtest/gtest.h>

#include "ca/cert_issuer.h"
#include "ca/local_issuer.h"
#include "tests/support/fake_clock.h"
#include "tests/support/signing_authority.h"
#include "tests/support/temp_dir.h"

namespace meshid {
namespace {

using testing::FakeClock;

class AuthenticatorTest : public ::testing::Test {
 protected:
  AuthenticatorTest() {
    key_ = *GenerateKey(KeyAlgorithm::kEcdsaP256);
    std::vector<JwtIssuer> issuers;
    issuers.push_back(
        JwtIssuer{"https://kubernetes.default.svc", *Jwks::FromPublicKey(key_.get(), "k1"), {"istio-ca"}});
    jwt_ = std::make_unique<JwtAuthenticator>("cluster.local", std::move(issuers), clock_);
  }

  std::string Token(nlohmann::json overrides = {}) {
    nlohmann::json claims = {{"iss", "https://kubernetes.default.svc"},
                             {"sub", "system:serviceaccount:default:sleep"},
                             {"aud", "istio-ca"},
                             {"exp", absl::ToUnixSeconds(clock_.Now() + absl::Hours(1))}};
    for (auto& [k, v] : overrides.items()) claims[k] = v;
    return *SignJwt(claims, key_.get(), "k1");
  }

  absl::StatusOr<AuthenticatedCaller> Jwt(const std::string& header) {
    CallerCredentials c;
    c.authorization = {header};
    return jwt_->Authenticate(c);
  }

  FakeClock clock_;
  OpenSslRandom random_;
  EvpPkeyPtr key_;
  std::unique_ptr<JwtAuthenticator> jwt_;
};

TEST_F(AuthenticatorTest, MapsServiceAccountSubject) {
  auto caller = Jwt("Bearer " + Token());
  ASSERT_TRUE(caller.ok()) << caller.status();
  EXPECT_EQ(caller->id.ToString(), "spiffe://cluster.local/ns/default/sa/sleep");
  EXPECT_EQ(caller->Describe(), "jwt iss=https://kubernetes.default.svc sub=system:serviceaccount:default:sleep");
}

TEST_F(AuthenticatorTest, AcceptsSpiffeSubjectOfOwnTrustDomainOnly) {
  EXPECT_EQ(Jwt("Bearer " + Token({{"sub", "spiffe://cluster.local/ns/a/sa/b"}}))->id.ToString(),
            "spiffe://cluster.local/ns/a/sa/b");
  auto other = Jwt("Bearer " + Token({{"sub", "spiffe://other.example/ns/a/sa/b"}}));
  EXPECT_NE(std::string(other.status().message()).find("is not in trust domain cluster.local"), std::string::npos);
  auto weird = Jwt("Bearer " + Token({{"sub", "admin"}}));
  EXPECT_NE(std::string(weird.status().message()).find("neither system:serviceaccount"), std::string::npos);
  auto bad_ns = Jwt("Bearer " + Token({{"sub", "system:serviceaccount:../x:sa"}}));
  EXPECT_FALSE(bad_ns.ok());
}

TEST_F(AuthenticatorTest, RequiresBearerPrefixAndTrustedIssuer) {
  EXPECT_TRUE(absl::IsNotFound(Jwt(Token()).status())) << "no Bearer prefix";
  EXPECT_TRUE(absl::IsNotFound(Jwt("bearer " + Token()).status())) << "prefix is case-sensitive, as Istio's";
  auto untrusted = Jwt("Bearer " + Token({{"iss", "https://evil"}}));
  EXPECT_EQ(untrusted.status().message(), "JWT issuer \"https://evil\" is not trusted");
}

TEST_F(AuthenticatorTest, CachedTokensStillExpire) {
  std::string token = Token();
  ASSERT_TRUE(Jwt("Bearer " + token).ok());
  ASSERT_TRUE(Jwt("Bearer " + token).ok());  // from the cache
  clock_.Advance(absl::Hours(1) + absl::Minutes(2));
  auto expired = Jwt("Bearer " + token);
  EXPECT_NE(std::string(expired.status().message()).find("JWT expired at"), std::string::npos) << expired.status();
}

// ca/reloader.h replaces an issuer's keys: tokens of a removed key are refused at once, even
// those verified (and cached) before.
TEST_F(AuthenticatorTest, ReplacedKeysDropCachedTokens) {
  const std::string token = Token();
  ASSERT_TRUE(Jwt("Bearer " + token).ok());
  ASSERT_TRUE(Jwt("Bearer " + token).ok());  // cached
  auto other = *GenerateKey(KeyAlgorithm::kEcdsaP256);
  ASSERT_TRUE(jwt_->ReplaceJwks("https://kubernetes.default.svc", *Jwks::FromPublicKey(other.get(), "k2")).ok());
  EXPECT_FALSE(Jwt("Bearer " + token).ok());
  ASSERT_TRUE(jwt_->ReplaceJwks("https://kubernetes.default.svc", *Jwks::FromPublicKey(key_.get(), "k1")).ok());
  EXPECT_TRUE(Jwt("Bearer " + token).ok());

  auto unknown = jwt_->ReplaceJwks("https://evil", *Jwks::FromPublicKey(other.get(), "k2"));
  EXPECT_TRUE(absl::IsNotFound(unknown)) << unknown;
  EXPECT_EQ(unknown.message(), "JWT issuer \"https://evil\" is not configured");
}

TEST_F(AuthenticatorTest, ClientCertificateOfThisCaRenewsSameIdentity) {
  auto authority = testing::MakeAuthority(clock_, random_);
  auto issuer = *CertIssuer::Create(authority, clock_, random_);
  auto key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
  auto id = *SpiffeId::Parse("spiffe://cluster.local/ns/default/sa/sleep");
  auto svid = *issuer->IssueSvid(*PublicKeyDer(key.get()), KeyAlgorithm::kEcdsaP256, id, absl::Hours(1));
  auto authorities = std::make_shared<const AuthoritySource>(std::move(issuer));
  ClientCertAuthenticator cert_auth(authorities, "cluster.local", clock_);
  CallerCredentials c;
  c.peer_cert_pem = svid.pem;
  auto caller = cert_auth.Authenticate(c);
  ASSERT_TRUE(caller.ok()) << caller.status();
  EXPECT_EQ(caller->id, id);
  EXPECT_EQ(caller->Describe(), "client-cert serial=" + svid.serial_hex);

  // From another CA.
  auto foreign = testing::MakeAuthority(clock_, random_);
  auto foreign_issuer = *CertIssuer::Create(foreign, clock_, random_);
  c.peer_cert_pem =
      foreign_issuer->IssueSvid(*PublicKeyDer(key.get()), KeyAlgorithm::kEcdsaP256, id, absl::Hours(1))->pem;
  EXPECT_NE(std::string(cert_auth.Authenticate(c).status().message()).find("not a valid certificate of this CA"),
            std::string::npos);

  // Expired.
  c.peer_cert_pem = svid.pem;
  clock_.Advance(absl::Hours(2));
  EXPECT_NE(std::string(cert_auth.Authenticate(c).status().message()).find("certificate has expired"),
            std::string::npos);

  // Another trust domain under the same roots.
  ClientCertAuthenticator other_td(authorities, "example.org", clock_);
  clock_.Advance(-absl::Hours(2));
  EXPECT_NE(std::string(other_td.Authenticate(c).status().message()).find("is not in trust domain example.org"),
            std::string::npos);
}

TEST_F(AuthenticatorTest, CompositeTriesCertificateThenToken) {
  auto authority = testing::MakeAuthority(clock_, random_);
  std::vector<JwtIssuer> issuers;
  issuers.push_back(JwtIssuer{"https://kubernetes.default.svc", *Jwks::FromPublicKey(key_.get(), "k1"), {"istio-ca"}});
  auto authorities = std::make_shared<const AuthoritySource>(*CertIssuer::Create(authority, clock_, random_));
  CompositeAuthenticator composite(std::make_unique<ClientCertAuthenticator>(authorities, "cluster.local", clock_),
                                   std::make_unique<JwtAuthenticator>("cluster.local", std::move(issuers), clock_));
  CallerCredentials none;
  auto r = composite.Authenticate(none);
  EXPECT_TRUE(absl::IsUnauthenticated(r.status()));
  EXPECT_NE(std::string(r.status().message()).find("no credentials"), std::string::npos);

  CallerCredentials both;
  both.peer_cert_pem = "garbage";
  both.authorization = {"Bearer " + Token()};
  r = composite.Authenticate(both);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->method, AuthenticatedCaller::Method::kJwt);

  both.authorization = {"Bearer x.y.z"};
  r = composite.Authenticate(both);
  EXPECT_NE(std::string(r.status().message()).find("client certificate"), std::string::npos) << r.status();
  EXPECT_NE(std::string(r.status().message()).find("JWT"), std::string::npos) << r.status();
}

TEST(LocalTokenIssuer, TokensVerifyAgainstItsIssuerConfig) {
  testing::TempDir temp_dir("local-issuer");
  const std::string& dir = temp_dir.path();
  EXPECT_TRUE(absl::IsNotFound(LocalTokenIssuer::Load(dir, /*create=*/false).status()));
  auto issuer = LocalTokenIssuer::Load(dir, /*create=*/true);
  ASSERT_TRUE(issuer.ok()) << issuer.status();
  FakeClock clock;
  auto token = issuer->CreateToken("default", "sleep", {"istio-ca"}, absl::Hours(1), clock);
  ASSERT_TRUE(token.ok());
  std::vector<JwtIssuer> issuers;
  issuers.push_back(*LocalTokenIssuer::Load(dir, false)->AsJwtIssuer({"istio-ca"}));
  JwtAuthenticator auth("cluster.local", std::move(issuers), clock);
  CallerCredentials c;
  c.authorization = {"Bearer " + *token};
  EXPECT_EQ(auth.Authenticate(c)->id.ToString(), "spiffe://cluster.local/ns/default/sa/sleep");
  EXPECT_FALSE(issuer->CreateToken("bad/ns", "sa", {"istio-ca"}, absl::Hours(1), clock).ok());
  EXPECT_FALSE(issuer->CreateToken("ns", "sa", {}, absl::Hours(1), clock).ok());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace meshid
