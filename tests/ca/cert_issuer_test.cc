#include "ca/cert_issuer.h"

#include <gtest/gtest.h>

#include "common/x509.h"
#include "tests/support/fake_clock.h"
#include "tests/support/signing_authority.h"

namespace meshid {
namespace {

using testing::FakeClock;

class CertIssuerTest : public ::testing::Test {
 protected:
  FakeClock clock_;
  OpenSslRandom random_;
  std::shared_ptr<const SigningAuthority> authority_ = testing::MakeAuthority(clock_, random_);
  std::unique_ptr<CertIssuer> issuer_ = *CertIssuer::Create(authority_, clock_, random_);
  SpiffeId id_ = *SpiffeId::Parse("spiffe://cluster.local/ns/default/sa/sleep");
};

TEST_F(CertIssuerTest, SvidFollowsTheProfile) {
  auto key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
  auto issued = issuer_->IssueSvid(*PublicKeyDer(key.get()), KeyAlgorithm::kEcdsaP256, id_, absl::Hours(1));
  ASSERT_TRUE(issued.ok()) << issued.status();
  X509Ptr parsed = *CertFromPem(issued->pem);
  X509* cert = parsed.get();
  EXPECT_EQ(CertToDer(cert), issued->der);
  EXPECT_EQ(SerialHex(cert), issued->serial_hex);
  EXPECT_EQ(X509_NAME_entry_count(X509_get_subject_name(cert)), 0) << "empty subject";
  EXPECT_EQ(UriSans(cert), std::vector<std::string>{id_.ToString()});
  EXPECT_TRUE(DnsSans(cert).empty());
  int crit = -1;
  void* san = X509_get_ext_d2i(cert, NID_subject_alt_name, &crit, nullptr);
  GENERAL_NAMES_free(static_cast<GENERAL_NAMES*>(san));
  EXPECT_EQ(crit, 1) << "SAN critical";
  EXPECT_EQ(X509_get_key_usage(cert), static_cast<uint32_t>(KU_DIGITAL_SIGNATURE));
  EXPECT_EQ(X509_get_extended_key_usage(cert), static_cast<uint32_t>(XKU_SSL_SERVER | XKU_SSL_CLIENT));
  EXPECT_FALSE(IsCa(cert));
  EXPECT_EQ(X509_EXTENSION_get_critical(X509_get_ext(cert, X509_get_ext_by_NID(cert, NID_basic_constraints, -1))), 1);
  EXPECT_EQ(X509_EXTENSION_get_critical(X509_get_ext(cert, X509_get_ext_by_NID(cert, NID_key_usage, -1))), 1);
  EXPECT_NE(X509_get0_authority_key_id(cert), nullptr);
  EXPECT_EQ(ASN1_STRING_cmp(X509_get0_authority_key_id(cert), X509_get0_subject_key_id(authority_->cert.get())), 0);
  EXPECT_EQ(NotBefore(cert), clock_.Now() - absl::Minutes(2));
  EXPECT_EQ(NotAfter(cert), clock_.Now() + absl::Hours(1));
  EXPECT_GE(issued->serial_hex.size(), 31u) << "127-bit serial";
  EXPECT_TRUE(VerifyCertChain(cert, {}, {authority_->cert.get()}, clock_.Now()).ok());
}

TEST_F(CertIssuerTest, RsaKeysAlsoGetKeyEncipherment) {
  auto key = *GenerateKey(KeyAlgorithm::kRsa2048);
  auto issued = *issuer_->IssueSvid(*PublicKeyDer(key.get()), KeyAlgorithm::kRsa2048, id_, absl::Hours(1));
  EXPECT_EQ(X509_get_key_usage(CertFromDer(issued.der)->get()),
            static_cast<uint32_t>(KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT));
}

TEST_F(CertIssuerTest, RsaAndP384AuthoritiesSignVerifiableCertificates) {
  for (KeyAlgorithm ca_algorithm : {KeyAlgorithm::kRsa2048, KeyAlgorithm::kEcdsaP384}) {
    auto authority = testing::MakeAuthority(clock_, random_, "cluster.local", absl::Hours(10), ca_algorithm);
    auto issuer = *CertIssuer::Create(authority, clock_, random_);
    auto key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
    auto issued = *issuer->IssueSvid(*PublicKeyDer(key.get()), KeyAlgorithm::kEcdsaP256, id_, absl::Hours(1));
    X509Ptr cert = *CertFromDer(issued.der);
    EXPECT_TRUE(VerifyCertChain(cert.get(), {}, {authority->cert.get()}, clock_.Now()).ok())
        << KeyAlgorithmName(ca_algorithm);
    EXPECT_EQ(X509_get_signature_nid(cert.get()),
              ca_algorithm == KeyAlgorithm::kRsa2048 ? NID_sha256WithRSAEncryption : NID_ecdsa_with_SHA384);
  }
}

TEST_F(CertIssuerTest, TimesAfter2049UseGeneralizedTime) {
  clock_.Set(absl::FromCivil(absl::CivilSecond(2049, 12, 31, 23, 0, 0), absl::UTCTimeZone()));
  auto authority = testing::MakeAuthority(clock_, random_, "cluster.local", absl::Hours(24 * 365));
  auto issuer = *CertIssuer::Create(authority, clock_, random_);
  auto key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
  auto issued = *issuer->IssueSvid(*PublicKeyDer(key.get()), KeyAlgorithm::kEcdsaP256, id_, absl::Hours(2));
  X509Ptr cert = *CertFromDer(issued.der);
  EXPECT_EQ(NotAfter(cert.get()), clock_.Now() + absl::Hours(2));
  EXPECT_EQ(ASN1_STRING_type(X509_get0_notAfter(cert.get())), V_ASN1_GENERALIZEDTIME);
  EXPECT_EQ(ASN1_STRING_type(X509_get0_notBefore(cert.get())), V_ASN1_UTCTIME);
}

TEST_F(CertIssuerTest, SerialsAreDistinct) {
  auto key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
  std::set<std::string> serials;
  std::string spki = *PublicKeyDer(key.get());
  for (int i = 0; i < 50; ++i)
    serials.insert(issuer_->IssueSvid(spki, KeyAlgorithm::kEcdsaP256, id_, absl::Hours(1))->serial_hex);
  EXPECT_EQ(serials.size(), 50u);
}

// The serial leads with the issuance time in milliseconds, so serials (the ledger's key) grow
// with time; the 80 bits after it are random (SerialsAreDistinct issues 50 in one millisecond).
TEST_F(CertIssuerTest, SerialsLeadWithTheIssuanceMillisecond) {
  std::string spki = *PublicKeyDer(GenerateKey(KeyAlgorithm::kEcdsaP256)->get());
  auto serial_bytes = [&] {
    auto issued = *issuer_->IssueSvid(spki, KeyAlgorithm::kEcdsaP256, id_, absl::Hours(1));
    X509Ptr cert = *CertFromDer(issued.der);
    BignumPtr bn(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert.get()), nullptr));
    std::string bytes(16, '\0');
    EXPECT_LE(BN_num_bytes(bn.get()), 16);
    BN_bn2binpad(bn.get(), reinterpret_cast<unsigned char*>(bytes.data()), 16);
    return bytes;
  };
  auto leading_millis = [](const std::string& bytes) {
    int64_t ms = 0;
    for (int i = 0; i < 6; ++i) ms = (ms << 8) | static_cast<uint8_t>(bytes[i]);
    return ms;
  };
  clock_.Set(absl::FromUnixMillis(1800000000123));
  std::string first = serial_bytes();
  clock_.Advance(absl::Milliseconds(1));
  std::string second = serial_bytes();
  EXPECT_EQ(leading_millis(first), 1800000000123);
  EXPECT_EQ(leading_millis(second), 1800000000124);
  EXPECT_LT(first, second);
  EXPECT_EQ(static_cast<uint8_t>(first[0]) & 0x80, 0) << "positive";
}

TEST_F(CertIssuerTest, NotAfterClampedToIssuerAndExpiredIssuerRefuses) {
  auto short_lived = testing::MakeAuthority(clock_, random_, "cluster.local", absl::Minutes(30));
  auto issuer = *CertIssuer::Create(short_lived, clock_, random_);
  auto key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
  std::string spki = *PublicKeyDer(key.get());
  auto issued = *issuer->IssueSvid(spki, KeyAlgorithm::kEcdsaP256, id_, absl::Hours(1));
  EXPECT_EQ(NotAfter(CertFromDer(issued.der)->get()), NotAfter(short_lived->cert.get()));
  EXPECT_EQ(issued.not_after, NotAfter(short_lived->cert.get()));
  clock_.Advance(absl::Minutes(31));
  auto refused = issuer->IssueSvid(spki, KeyAlgorithm::kEcdsaP256, id_, absl::Hours(1));
  EXPECT_TRUE(absl::IsFailedPrecondition(refused.status())) << refused.status();
}

TEST_F(CertIssuerTest, CreateRefusesAnAuthorityItCannotSignWith) {
  auto ed25519 = std::make_shared<SigningAuthority>();
  ed25519->cert = CopyCert(authority_->cert.get());
  ed25519->key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  auto refused = CertIssuer::Create(ed25519, clock_, random_);
  EXPECT_TRUE(absl::IsInvalidArgument(refused.status())) << refused.status();
  EXPECT_NE(refused.status().message().find("the CA key is Ed25519"), std::string::npos) << refused.status();

  auto empty = CertIssuer::Create(std::make_shared<SigningAuthority>(), clock_, random_);
  EXPECT_TRUE(absl::IsInvalidArgument(empty.status())) << empty.status();
  EXPECT_EQ(empty.status().message(), "the signing authority has no certificate or key");
}

TEST_F(CertIssuerTest, ServingCertHasDnsAndIpSans) {
  auto key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
  auto issued = *issuer_->IssueServingCert(key.get(), {"localhost", "127.0.0.1", "::1"}, absl::Hours(1));
  X509Ptr cert = *CertFromDer(issued.der);
  EXPECT_EQ(DnsSans(cert.get()), std::vector<std::string>{"localhost"});
  EXPECT_EQ(X509_check_ip_asc(cert.get(), "127.0.0.1", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(cert.get(), "::1", 0), 1);
  EXPECT_EQ(X509_get_extended_key_usage(cert.get()), static_cast<uint32_t>(XKU_SSL_SERVER));
  EXPECT_TRUE(VerifyCertChain(cert.get(), {}, {authority_->cert.get()}, clock_.Now()).ok());
}

TEST(SelfSignedRoot, HasCaProfile) {
  FakeClock clock;
  OpenSslRandom random;
  auto key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
  auto root = *CreateSelfSignedRoot(key.get(), "example.org", absl::Hours(10), clock, random);
  EXPECT_TRUE(IsCa(root.get()));
  EXPECT_TRUE(IsSelfSigned(root.get()));
  EXPECT_EQ(X509_get_key_usage(root.get()), static_cast<uint32_t>(KU_KEY_CERT_SIGN | KU_CRL_SIGN));
  EXPECT_EQ(UriSans(root.get()), std::vector<std::string>{"spiffe://example.org"});
  EXPECT_EQ(NotAfter(root.get()) - NotBefore(root.get()), absl::Hours(10));
}

}  // namespace
}  // namespace meshid
