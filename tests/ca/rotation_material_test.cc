// The material of a staged CA rotation (ca/rotation_material.h): a new root and a new
// intermediate under it, checked by an independent implementation (the openssl command line),
// the key generated once with mode 0600 and reused after, a key in a SoftHSM2 token, the
// refusals naming their flag, and the way back to a SigningAuthority that signs SVIDs.
#include "ca/rotation_material.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "ca/cert_issuer.h"
#include "ca/shared_ca.h"
#include "common/files.h"
#include "common/keys.h"
#include "common/spiffe_id.h"
#include "common/x509.h"
#include "pkcs11/token_key.h"
#include "tests/support/dependencies.h"
#include "tests/support/fake_clock.h"
#include "tests/support/softhsm.h"
#include "tests/support/status_matchers.h"
#include "tests/support/subprocess.h"
#include "tests/support/temp_dir.h"

namespace meshid {
namespace {

using ::meshid::testing::RunShell;
using ::meshid::testing::SoftHsm;
using ::meshid::testing::StatusIs;
using ::meshid::testing::TempDir;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kPin[] = "1234";

class RotationMaterialTest : public ::testing::Test {
 protected:
  // No token unless a test sets one up.
  static absl::StatusOr<CaTokenKey> NoToken(const std::string& uri) {
    return absl::NotFoundError(absl::StrCat("no token for ", uri));
  }

  absl::StatusOr<StoredCaMaterial> MakeRoot(const std::string& key_ref) {
    NewCaMaterialOptions options;
    options.kind = kCaRotationRoot;
    options.key_ref = key_ref;
    return MakeRotationMaterial(options, NoToken, clock_, random_);
  }

  absl::StatusOr<StoredCaMaterial> MakeIntermediate(const StoredCaMaterial& root, const std::string& key_ref,
                                                    const OpenTokenKey& open = NoToken) {
    NewCaMaterialOptions options;
    options.kind = kCaRotationIntermediate;
    options.key_ref = key_ref;
    options.root_cert_pem = root.ca_cert_pem;
    options.root_key_ref = root.key_ref;
    return MakeRotationMaterial(options, open, clock_, random_);
  }

  // `openssl verify` of `cert_pem` against `roots_pem`, with `chain_pem` as untrusted
  // intermediates: its output.
  std::string OpensslVerify(const std::string& cert_pem, const std::string& roots_pem,
                            const std::string& chain_pem = "") {
    const std::string cert = dir_.Write("verify-cert.pem", cert_pem);
    const std::string roots = dir_.Write("verify-roots.pem", roots_pem);
    std::string untrusted;
    if (!chain_pem.empty()) untrusted = absl::StrCat(" -untrusted ", dir_.Write("verify-chain.pem", chain_pem));
    auto [code, out] = RunShell(absl::StrCat("openssl verify -CAfile ", roots, untrusted, " ", cert, " 2>&1"));
    return out;
  }

  std::string OpensslText(const std::string& cert_pem) {
    auto [code, out] =
        RunShell(absl::StrCat("openssl x509 -noout -text -in ", dir_.Write("text-cert.pem", cert_pem), " 2>&1"));
    return out;
  }

  static int ModeOf(const std::string& path) {
    struct stat st {};
    return stat(path.c_str(), &st) == 0 ? static_cast<int>(st.st_mode & 07777) : -1;
  }

  // Signs an SVID with `authority` and returns its PEM.
  std::string SignSvid(std::shared_ptr<const SigningAuthority> authority) {
    auto issuer = CertIssuer::Create(std::move(authority), clock_, random_);
    EXPECT_OK(issuer.status());
    if (!issuer.ok()) return "";
    auto key = GenerateKey(KeyAlgorithm::kEcdsaP256);
    auto spki = PublicKeyDer(key->get());
    auto svid = (*issuer)->IssueSvid(*spki, KeyAlgorithm::kEcdsaP256,
                                     *SpiffeId::Parse("spiffe://cluster.local/ns/default/sa/web"), absl::Hours(1));
    EXPECT_OK(svid.status());
    return svid.ok() ? svid->pem : "";
  }

  TempDir dir_;
  // Now, so that `openssl verify` (which uses the real time) accepts what is made.
  meshid::testing::FakeClock clock_{absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now()))};
  OpenSslRandom random_;
};

TEST_F(RotationMaterialTest, ARootWithAGeneratedKeyVerifiesAndLoads) {
  const std::string key_file = dir_.File("root-key.pem");
  auto root = MakeRoot(key_file);
  ASSERT_OK(root.status());
  EXPECT_EQ(root->key_ref, key_file);
  EXPECT_EQ(root->ca_cert_pem, root->cert_chain_pem);
  EXPECT_EQ(root->ca_cert_pem, root->root_cert_pem);
  EXPECT_EQ(ModeOf(key_file), 0600);
  EXPECT_THAT(OpensslVerify(root->ca_cert_pem, root->root_cert_pem), HasSubstr(": OK"));
  const std::string text = OpensslText(root->ca_cert_pem);
  EXPECT_THAT(text, HasSubstr("CA:TRUE"));
  EXPECT_THAT(text, HasSubstr("Certificate Sign, CRL Sign"));
  EXPECT_THAT(text, HasSubstr("URI:spiffe://cluster.local"));
  EXPECT_THAT(text, HasSubstr("Subject: O = cluster.local"));
  EXPECT_THAT(text, HasSubstr("id-ecPublicKey"));
  auto x509 = CertFromPem(root->ca_cert_pem);
  ASSERT_OK(x509.status());
  EXPECT_EQ(NotAfter(x509->get()), clock_.Now() + kDefaultRootLifetime);

  auto loaded = LoadStoredCaMaterial(*root, NoToken, clock_);
  ASSERT_OK(loaded.status());
  EXPECT_EQ((*loaded)->root_bundle_pem, root->root_cert_pem);
  EXPECT_THAT(RootFingerprintsOfPem(root->root_cert_pem),
              ::meshid::testing::IsOkAndHolds(TrustAnchorFingerprint(**loaded)));
  const std::string svid = SignSvid(*loaded);
  EXPECT_THAT(OpensslVerify(svid, root->root_cert_pem), HasSubstr(": OK"));
}

TEST_F(RotationMaterialTest, AnExistingKeyIsUsedNotReplaced) {
  auto key = GenerateKey(KeyAlgorithm::kRsa2048);
  ASSERT_OK(key.status());
  auto pem = PrivateKeyToPem(key->get());
  ASSERT_OK(pem.status());
  const std::string key_file = dir_.Write("existing-key.pem", pem->view());
  auto root = MakeRoot(key_file);
  ASSERT_OK(root.status());
  auto cert = CertFromPem(root->ca_cert_pem);
  ASSERT_OK(cert.status());
  EXPECT_TRUE(SamePublicKey(X509_get0_pubkey(cert->get()), key->get()));
  EXPECT_THAT(ReadFile(key_file), ::meshid::testing::IsOkAndHolds(std::string(pem->view())));

  // A key generated by a first prepare is the one a second uses.
  const std::string generated = dir_.File("generated-key.pem");
  auto first = MakeRoot(generated);
  ASSERT_OK(first.status());
  auto first_text = ReadFile(generated);
  auto second = MakeRoot(generated);
  ASSERT_OK(second.status());
  EXPECT_THAT(ReadFile(generated), ::meshid::testing::IsOkAndHolds(*first_text));
  auto first_cert = CertFromPem(first->ca_cert_pem);
  auto second_cert = CertFromPem(second->ca_cert_pem);
  EXPECT_TRUE(SamePublicKey(X509_get0_pubkey(first_cert->get()), X509_get0_pubkey(second_cert->get())));
}

TEST_F(RotationMaterialTest, ARelativeKeyPathIsRecordedAbsolute) {
  const auto previous = std::filesystem::current_path();
  std::filesystem::current_path(dir_.path());
  auto root = MakeRoot("relative-key.pem");
  std::filesystem::current_path(previous);
  ASSERT_OK(root.status());
  EXPECT_EQ(root->key_ref, dir_.File("relative-key.pem"));
  EXPECT_EQ(CanonicalKeyRef("pkcs11:token=a;object=b"), "pkcs11:token=a;object=b");
}

TEST_F(RotationMaterialTest, AnIntermediateChainsToItsRoot) {
  auto root = MakeRoot(dir_.File("root-key.pem"));
  ASSERT_OK(root.status());
  auto intermediate = MakeIntermediate(*root, dir_.File("intermediate-key.pem"));
  ASSERT_OK(intermediate.status());
  EXPECT_EQ(intermediate->root_cert_pem, root->ca_cert_pem);
  EXPECT_EQ(intermediate->cert_chain_pem, intermediate->ca_cert_pem + root->ca_cert_pem);
  EXPECT_EQ(ModeOf(dir_.File("intermediate-key.pem")), 0600);
  EXPECT_THAT(OpensslVerify(intermediate->ca_cert_pem, root->ca_cert_pem), HasSubstr(": OK"));
  const std::string text = OpensslText(intermediate->ca_cert_pem);
  EXPECT_THAT(text, HasSubstr("CA:TRUE, pathlen:0"));
  EXPECT_THAT(text, HasSubstr("Digital Signature, Certificate Sign, CRL Sign"));
  EXPECT_THAT(text, HasSubstr("X509v3 Authority Key Identifier"));
  EXPECT_THAT(text, HasSubstr("X509v3 Subject Key Identifier"));
  EXPECT_THAT(text, HasSubstr("CN = meshid intermediate CA"));
  auto cert = CertFromPem(intermediate->ca_cert_pem);
  ASSERT_OK(cert.status());
  EXPECT_EQ(NotAfter(cert->get()), clock_.Now() + kDefaultIntermediateLifetime);

  // What it signs verifies through the chain a server hands out.
  auto loaded = LoadStoredCaMaterial(*intermediate, NoToken, clock_);
  ASSERT_OK(loaded.status());
  const std::string svid = SignSvid(*loaded);
  EXPECT_THAT(OpensslVerify(svid, root->root_cert_pem, intermediate->ca_cert_pem), HasSubstr(": OK"));
  EXPECT_THAT(OpensslVerify(svid, root->root_cert_pem), Not(HasSubstr(": OK")));
}

TEST_F(RotationMaterialTest, AnIntermediateDoesNotOutliveItsRoot) {
  NewCaMaterialOptions options;
  options.kind = kCaRotationRoot;
  options.key_ref = dir_.File("root-key.pem");
  options.lifetime = absl::Hours(100);
  auto root = MakeRotationMaterial(options, NoToken, clock_, random_);
  ASSERT_OK(root.status());
  auto intermediate = MakeIntermediate(*root, dir_.File("intermediate-key.pem"));
  ASSERT_OK(intermediate.status());
  auto root_cert = CertFromPem(root->ca_cert_pem);
  auto cert = CertFromPem(intermediate->ca_cert_pem);
  EXPECT_EQ(NotAfter(cert->get()), NotAfter(root_cert->get()));
}

TEST_F(RotationMaterialTest, TheWrongRootKeyIsRefusedAndNoKeyIsWritten) {
  auto root = MakeRoot(dir_.File("root-key.pem"));
  auto other = MakeRoot(dir_.File("other-key.pem"));
  ASSERT_OK(root.status());
  ASSERT_OK(other.status());
  StoredCaMaterial mixed = *root;
  mixed.key_ref = other->key_ref;
  EXPECT_THAT(MakeIntermediate(mixed, dir_.File("intermediate-key.pem")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       absl::StrCat("--root-key: ", other->key_ref, " does not match --root-cert")));
  EXPECT_FALSE(std::filesystem::exists(dir_.File("intermediate-key.pem")));
}

TEST_F(RotationMaterialTest, RefusalsNameTheFlag) {
  auto root = MakeRoot(dir_.File("root-key.pem"));
  ASSERT_OK(root.status());
  EXPECT_THAT(MakeIntermediate(*root, root->key_ref),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--key: ")));
  StoredCaMaterial missing_root_key = *root;
  missing_root_key.key_ref = dir_.File("no-such-key.pem");
  EXPECT_THAT(MakeIntermediate(missing_root_key, dir_.File("i.pem")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("--root-key: ")));
  StoredCaMaterial not_a_root = *root;
  not_a_root.ca_cert_pem = "garbage";
  EXPECT_THAT(MakeIntermediate(not_a_root, dir_.File("i.pem")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--root-cert: ")));
  EXPECT_THAT(MakeRoot(dir_.File("no-such-dir/key.pem")),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("does not exist")));
  const std::string junk = dir_.Write("junk-key.pem", "not a key");
  EXPECT_THAT(MakeRoot(junk), StatusIs(absl::StatusCode::kInvalidArgument,
                                       HasSubstr(absl::StrCat("--key: ", junk, ": not a PEM private key"))));
  EXPECT_THAT(MakeRoot("pkcs11:token=none;object=none"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("--key: no token for")));
  NewCaMaterialOptions leaf;
  leaf.kind = "leaf";
  leaf.key_ref = dir_.File("k.pem");
  EXPECT_THAT(MakeRotationMaterial(leaf, NoToken, clock_, random_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--kind: ")));
  NewCaMaterialOptions no_root;
  no_root.kind = kCaRotationIntermediate;
  no_root.key_ref = dir_.File("k.pem");
  EXPECT_THAT(MakeRotationMaterial(no_root, NoToken, clock_, random_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--root-cert: required")));

  // An expired root signs no intermediate.
  clock_.Advance(kDefaultRootLifetime + absl::Hours(1));
  EXPECT_THAT(MakeIntermediate(*root, dir_.File("late.pem")),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("--root-cert: the root expired")));
}

TEST_F(RotationMaterialTest, LoadingRefusesAKeyThatDoesNotMatch) {
  auto root = MakeRoot(dir_.File("root-key.pem"));
  auto other = MakeRoot(dir_.File("other-key.pem"));
  ASSERT_OK(root.status());
  ASSERT_OK(other.status());
  StoredCaMaterial mixed = *root;
  mixed.key_ref = other->key_ref;
  EXPECT_THAT(LoadStoredCaMaterial(mixed, NoToken, clock_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("private key does not match")));
  mixed.key_ref = dir_.File("gone.pem");
  EXPECT_THAT(LoadStoredCaMaterial(mixed, NoToken, clock_), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(RootFingerprintsOfPem("not a certificate"), StatusIs(absl::StatusCode::kInvalidArgument));
}

class RotationMaterialTokenTest : public RotationMaterialTest {
 protected:
  void SetUp() override {
    MESHID_REQUIRE_DEPENDENCY(SoftHsm::Available(), SoftHsm::kMissing);
    hsm_ = std::make_unique<SoftHsm>(dir_.File("hsm"));
    ASSERT_OK(hsm_->InitToken("meshid-ca", kPin));
    ASSERT_OK(hsm_->GenerateKey("meshid-ca", kPin, "EC:prime256v1", "root", "01"));
  }

  OpenTokenKey Opener() {
    return [this](const std::string& uri) -> absl::StatusOr<CaTokenKey> {
      ++opened_;
      pkcs11::TokenKeyOptions options;
      options.uri = uri;
      options.module_path = SoftHsm::kModule;
      options.pin = SecretString(kPin);
      auto key = pkcs11::TokenKey::Open(std::move(options), clock_);
      if (!key.ok()) return key.status();
      return CaTokenKey(*std::move(key));
    };
  }

  std::unique_ptr<SoftHsm> hsm_;
  int opened_ = 0;
};

TEST_F(RotationMaterialTokenTest, ARootWhoseKeyIsInATokenSignsAnIntermediate) {
  const std::string uri = "pkcs11:token=meshid-ca;object=root";
  NewCaMaterialOptions options;
  options.kind = kCaRotationRoot;
  options.key_ref = uri;
  auto root = MakeRotationMaterial(options, Opener(), clock_, random_);
  ASSERT_OK(root.status());
  EXPECT_EQ(root->key_ref, uri);
  EXPECT_EQ(opened_, 1);
  EXPECT_THAT(OpensslVerify(root->ca_cert_pem, root->root_cert_pem), HasSubstr(": OK"));

  auto loaded = LoadStoredCaMaterial(*root, Opener(), clock_);
  ASSERT_OK(loaded.status());
  EXPECT_NE(pkcs11::TokenKey::Of((*loaded)->key.get()), nullptr);
  EXPECT_THAT(OpensslVerify(SignSvid(*loaded), root->root_cert_pem), HasSubstr(": OK"));

  // The token's root signs an intermediate whose key is a file.
  auto intermediate = MakeIntermediate(*root, dir_.File("intermediate-key.pem"), Opener());
  ASSERT_OK(intermediate.status());
  EXPECT_THAT(OpensslVerify(intermediate->ca_cert_pem, root->root_cert_pem), HasSubstr(": OK"));

  options.key_ref = "pkcs11:token=meshid-ca;object=missing";
  EXPECT_THAT(MakeRotationMaterial(options, Opener(), clock_, random_),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("--key: ")));
}

}  // namespace
}  // namespace meshid
