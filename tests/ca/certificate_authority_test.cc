#include <gtest/gtest.h>

#include "ca/certificate_service.h"
#include "common/logging.h"
#include "tests/ca/test_ca.h"

namespace meshid {
namespace {

class CertificateAuthorityTest : public ::testing::Test {
 protected:
  CertificateAuthorityTest() {
    authority_ = testing::MakeAuthority(clock_, random_);
    token_key_ = *GenerateKey(KeyAlgorithm::kEcdsaP256);
    std::vector<JwtIssuer> issuers;
    issuers.push_back(JwtIssuer{"iss", *Jwks::FromPublicKey(token_key_.get(), "k"), {"istio-ca"}});
    auto authn = std::make_shared<CompositeAuthenticator>(
        std::make_unique<ClientCertAuthenticator>(authority_, "cluster.local", clock_),
        std::make_unique<JwtAuthenticator>("cluster.local", std::move(issuers), clock_));
    ca_ = std::make_unique<CertificateAuthority>(CertificateServiceOptions{}, std::make_shared<CertIssuer>(authority_, clock_, random_),
                                                 authn, metrics_, MakeNullLogger());
    creds_.authorization = {"Bearer " + *SignJwt({{"iss", "iss"}, {"sub", "system:serviceaccount:default:sleep"}, {"aud", "istio-ca"},
                                                  {"exp", absl::ToUnixSeconds(clock_.Now() + absl::Hours(1))}},
                                                 token_key_.get(), "k")};
    key_ = *GenerateKey(KeyAlgorithm::kEcdsaP256);
    csr_ = *BuildCsrPem(key_.get());
  }

  FakeClock clock_;
  OpenSslRandom random_;
  MetricsRegistry metrics_;
  std::shared_ptr<const SigningAuthority> authority_;
  EvpPkeyPtr token_key_, key_;
  std::unique_ptr<CertificateAuthority> ca_;
  CallerCredentials creds_;
  std::string csr_;
};

TEST_F(CertificateAuthorityTest, IssuesLeafThenRootWithDefaultTtl) {
  auto chain = ca_->Sign(creds_, csr_, 0);
  ASSERT_TRUE(chain.ok()) << chain.status();
  ASSERT_EQ(chain->size(), 2u);
  EXPECT_EQ(chain->back(), authority_->root_bundle_pem);
  auto leaf = *CertFromPem(chain->front());
  EXPECT_EQ(NotAfter(leaf.get()), clock_.Now() + absl::Hours(1));
  EXPECT_EQ(UriSans(leaf.get()), std::vector<std::string>{"spiffe://cluster.local/ns/default/sa/sleep"});
  EXPECT_TRUE(SamePublicKey(X509_get0_pubkey(leaf.get()), key_.get()));
  EXPECT_EQ(ca_->issued_count(), 1);
}

TEST_F(CertificateAuthorityTest, HonoursRequestedTtlAndRefusesAboveMax) {
  auto leaf = *CertFromPem(ca_->Sign(creds_, csr_, 600)->front());
  EXPECT_EQ(NotAfter(leaf.get()), clock_.Now() + absl::Seconds(600));
  auto too_long = ca_->Sign(creds_, csr_, 86401);
  EXPECT_TRUE(absl::IsInvalidArgument(too_long.status()));
  EXPECT_EQ(too_long.status().message(), "requested TTL 86401s is greater than the max allowed TTL 86400s");
  EXPECT_EQ(ca_->issued_count(), 1);
  EXPECT_NE(metrics_.RenderPrometheus().find("citadel_server_csr_sign_err_count{error=\"TTL_ERROR\"} 1"), std::string::npos);
}

TEST_F(CertificateAuthorityTest, RefusalsIssueNothing) {
  EXPECT_TRUE(absl::IsUnauthenticated(ca_->Sign(CallerCredentials{}, csr_, 0).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(ca_->Sign(creds_, "junk", 0).status()));
  clock_.Advance(absl::Hours(3));
  EXPECT_TRUE(absl::IsUnauthenticated(ca_->Sign(creds_, csr_, 0).status())) << "token expired";
  EXPECT_EQ(ca_->issued_count(), 0);
  std::string text = metrics_.RenderPrometheus();
  EXPECT_NE(text.find("citadel_server_authentication_failure_count 2"), std::string::npos) << text;
  EXPECT_NE(text.find("citadel_server_csr_sign_err_count{error=\"CSR_ERROR\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("citadel_server_csr_count 3"), std::string::npos) << text;
}

}  // namespace
}  // namespace meshid
