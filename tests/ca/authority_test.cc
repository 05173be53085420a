#include "ca/authority.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "ca/cert_issuer.h"
#include "common/files.h"
#include "common/keys.h"
#include "common/random.h"
#include "common/x509.h"
#include "tests/support/certs.h"
#include "tests/support/fake_clock.h"
#include "tests/support/temp_dir.h"

namespace meshid {
namespace {

using testing::FakeClock;

// A CA (or, with ca=false, a leaf) certificate for `subject_key` under `issuer`.
X509Ptr SignCert(X509* issuer, EVP_PKEY* issuer_key, EVP_PKEY* subject_key, const char* cn, bool ca,
                 const Clock& clock) {
  testing::CertificateSpec spec;
  spec.ca = ca;
  spec.common_name = cn;
  spec.not_before = clock.Now() - absl::Hours(1);
  spec.not_after = clock.Now() + absl::Hours(100);
  auto cert = testing::SignCertificate(spec, subject_key, issuer, issuer_key);
  EXPECT_TRUE(cert.ok()) << cert.status();
  return cert.ok() ? *std::move(cert) : nullptr;
}

class AuthorityTest : public ::testing::Test {
 protected:
  std::string File(const char* name) { return temp_dir_.File(name); }

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
  testing::TempDir temp_dir_{"authority-test"};
  std::string dir_ = temp_dir_.path();
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
