#include "ca/authority.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "common/files.h"
#include "tests/ca/test_ca.h"

namespace meshid {
namespace {

// Signs a CA (or, with ca=false, a leaf) certificate for `subject_key` under `issuer`.
X509Ptr SignCert(X509* issuer, EVP_PKEY* issuer_key, EVP_PKEY* subject_key, const char* cn, bool ca,
                 const Clock& clock) {
  X509Ptr cert(X509_new());
  X509_set_version(cert.get(), X509_VERSION_3);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1000 + cn[0]);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(cert.get()), "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(cn), -1, -1, 0);
  X509_set_issuer_name(cert.get(), X509_get_subject_name(issuer));
  ASN1_TIME_set(X509_getm_notBefore(cert.get()), absl::ToTimeT(clock.Now() - absl::Hours(1)));
  ASN1_TIME_set(X509_getm_notAfter(cert.get()), absl::ToTimeT(clock.Now() + absl::Hours(100)));
  X509_set_pubkey(cert.get(), subject_key);
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert.get(), nullptr, nullptr, 0);
  X509_EXTENSION* bc =
      X509V3_EXT_nconf_nid(nullptr, &ctx, NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
  X509_add_ext(cert.get(), bc, -1);
  X509_EXTENSION_free(bc);
  X509_EXTENSION* ski = X509V3_EXT_nconf_nid(nullptr, &ctx, NID_subject_key_identifier, "hash");
  X509_add_ext(cert.get(), ski, -1);
  X509_EXTENSION_free(ski);
  X509_sign(cert.get(), issuer_key, EVP_sha256());
  return cert;
}

class AuthorityTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = testing::TempDir("authority-test"); }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string File(const char* name) { return (std::filesystem::path(dir_) / name).string(); }

  // Writes a plug-in layout: root → intermediate (signing) with Istio's cert-chain convention.
  void WritePlugin() {
    root_key_ = *GenerateKey(KeyAlgorithm::kEcdsaP256);
    root_ = *CreateSelfSignedRoot(root_key_.get(), "cluster.local", absl::Hours(1000), clock_, random_);
    ca_key_ = *GenerateKey(KeyAlgorithm::kEcdsaP256);
    ca_ = SignCert(root_.get(), root_key_.get(), ca_key_.get(), "intermediate", true, clock_);
    ASSERT_TRUE(WriteFileAtomic(File("ca-cert.pem"), CertToPem(ca_.get())).ok());
    ASSERT_TRUE(WriteFileAtomic(File("ca-key.pem"), PrivateKeyToPem(ca_key_.get())->view(), 0600).ok());
    ASSERT_TRUE(WriteFileAtomic(File("cert-chain.pem"), CertToPem(ca_.get()) + CertToPem(root_.get())).ok());
    ASSERT_TRUE(WriteFileAtomic(File("root-cert.pem"), CertToPem(root_.get())).ok());
  }

  std::string LoadPluginError() {
    auto a = LoadPluggedInAuthority(dir_, clock_);
    return a.ok() ? "" : std::string(a.status().message());
  }

  FakeClock clock_{absl::Now()};
  OpenSslRandom random_;
  std::string dir_;
  EvpPkeyPtr root_key_, ca_key_;
  X509Ptr root_, ca_;
};

TEST_F(AuthorityTest, SelfSignedIsCreatedOnceWithPrivateKeyModeAndReused) {
  SelfSignedOptions options;
  options.data_dir = dir_;
  auto first = LoadOrCreateSelfSignedAuthority(options, clock_, random_);
  ASSERT_TRUE(first.ok()) << first.status();
  struct stat st {};
  ASSERT_EQ(stat(File("ca-key.pem").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(*ClassifyKey((*first)->key.get()), KeyAlgorithm::kEcdsaP256);
  auto second = LoadOrCreateSelfSignedAuthority(options, clock_, random_);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(SerialHex((*first)->cert.get()), SerialHex((*second)->cert.get()));
  EXPECT_EQ((*first)->chain_pems.size(), 1u) << "self-signed: the chain is just the root";
  ASSERT_TRUE(WriteTrustBundle(**second, dir_).ok());
  EXPECT_EQ(*ReadFile(File("root-cert.pem")), CertToPem((*first)->cert.get()));
}

TEST_F(AuthorityTest, SelfSignedRsaOptionAndBrokenStateErrors) {
  SelfSignedOptions options;
  options.data_dir = dir_;
  options.key_algorithm = KeyAlgorithm::kRsa2048;
  auto a = LoadOrCreateSelfSignedAuthority(options, clock_, random_);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*ClassifyKey((*a)->key.get()), KeyAlgorithm::kRsa2048);

  chmod(File("ca-key.pem").c_str(), 0644);
  auto readable = LoadOrCreateSelfSignedAuthority(options, clock_, random_);
  EXPECT_NE(std::string(readable.status().message()).find("readable by group or others"), std::string::npos);
  chmod(File("ca-key.pem").c_str(), 0600);

  std::filesystem::remove(File("ca-key.pem"));
  auto no_key = LoadOrCreateSelfSignedAuthority(options, clock_, random_);
  EXPECT_NE(std::string(no_key.status().message()).find("refusing to replace the root"), std::string::npos);

  ASSERT_TRUE(
      WriteFileAtomic(File("ca-key.pem"), PrivateKeyToPem(GenerateKey(KeyAlgorithm::kEcdsaP256)->get())->view(), 0600)
          .ok());
  auto mismatch = LoadOrCreateSelfSignedAuthority(options, clock_, random_);
  EXPECT_NE(std::string(mismatch.status().message()).find("private key does not match"), std::string::npos)
      << mismatch.status();
}

TEST_F(AuthorityTest, PluginLayoutLoadsWithChainInIstioOrder) {
  WritePlugin();
  auto a = LoadPluggedInAuthority(dir_, clock_);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_EQ((*a)->chain_pems.size(), 2u);
  EXPECT_EQ((*a)->chain_pems[0], CertToPem(ca_.get())) << "signing cert right after the leaf";
  EXPECT_EQ((*a)->chain_pems[1], CertToPem(root_.get())) << "root last";
  EXPECT_TRUE((*a)->intermediates.empty());
}

TEST_F(AuthorityTest, PluginErrorsNameTheFile) {
  WritePlugin();
  std::filesystem::remove(File("cert-chain.pem"));
  EXPECT_NE(LoadPluginError().find("incomplete plug-in CA bundle: missing " + File("cert-chain.pem")),
            std::string::npos);

  WritePlugin();
  ASSERT_TRUE(WriteFileAtomic(File("ca-key.pem"), PrivateKeyToPem(root_key_.get())->view(), 0600).ok());
  EXPECT_NE(LoadPluginError().find(File("ca-key.pem") + ": private key does not match"), std::string::npos)
      << LoadPluginError();

  WritePlugin();
  X509Ptr leaf = SignCert(root_.get(), root_key_.get(), ca_key_.get(), "leaf", false, clock_);
  ASSERT_TRUE(WriteFileAtomic(File("ca-cert.pem"), CertToPem(leaf.get())).ok());
  EXPECT_NE(LoadPluginError().find(File("ca-cert.pem") + ": certificate is not a CA"), std::string::npos)
      << LoadPluginError();

  WritePlugin();
  auto other_key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
  auto other_root = *CreateSelfSignedRoot(other_key.get(), "cluster.local", absl::Hours(10), clock_, random_);
  ASSERT_TRUE(WriteFileAtomic(File("root-cert.pem"), CertToPem(other_root.get())).ok());
  EXPECT_NE(LoadPluginError().find("does not chain through"), std::string::npos) << LoadPluginError();

  WritePlugin();
  ASSERT_TRUE(WriteFileAtomic(File("root-cert.pem"), "garbage").ok());
  EXPECT_NE(LoadPluginError().find(File("root-cert.pem")), std::string::npos) << LoadPluginError();
}

}  // namespace
}  // namespace meshid
