// Keys in a real SoftHSM2 token (tests/support/softhsm.h): signatures OpenSSL verifies with the
// public key, for EC keys made inside the token and RSA keys imported into it; the EVP_PKEY
// that signs through the token under OpenSSL's own signing functions; concurrent signing over
// the session pool; each refusal (wrong PIN, no PIN, missing object, token or module, a key
// that is not a private key) named; and a token removed under load: UNAVAILABLE, then the same
// key again once the token is back.
#include "pkcs11/token_key.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <atomic>
#include <thread>
#include <vector>

#include "common/keys.h"
#include "common/openssl_ptr.h"
#include "tests/support/dependencies.h"
#include "tests/support/fake_clock.h"
#include "tests/support/poll.h"
#include "tests/support/softhsm.h"
#include "tests/support/status_matchers.h"
#include "tests/support/temp_dir.h"

namespace meshid::pkcs11 {
namespace {

using ::meshid::testing::Eventually;
using ::meshid::testing::IsOkAndHolds;
using ::meshid::testing::SoftHsm;
using ::meshid::testing::StatusIs;
using ::testing::HasSubstr;

constexpr char kPin[] = "1234";

class TokenKeyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MESHID_REQUIRE_DEPENDENCY(SoftHsm::Available(), SoftHsm::kMissing);
    hsm_ = std::make_unique<SoftHsm>(dir_.path());
    ASSERT_OK(hsm_->InitToken("meshid-ca", kPin));
  }

  TokenKeyOptions Options(const std::string& uri) {
    TokenKeyOptions options;
    options.uri = uri;
    options.module_path = SoftHsm::kModule;
    options.pin = SecretString(kPin);
    return options;
  }

  // Checks `signature` over SHA-256(`data`) with the token key's public half.
  static bool Verifies(EVP_PKEY* public_key, const std::string& data, const std::string& signature) {
    EvpMdCtxPtr ctx(EVP_MD_CTX_new());
    return EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, public_key) == 1 &&
           EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
                            reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
  }

  static std::string Sha256(const std::string& data) {
    unsigned char digest[32];
    unsigned int len = 0;
    EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr);
    return std::string(reinterpret_cast<char*>(digest), len);
  }

  meshid::testing::TempDir dir_;
  meshid::testing::FakeClock clock_{absl::FromUnixSeconds(1'800'000'000)};
  std::unique_ptr<SoftHsm> hsm_;
};

TEST_F(TokenKeyTest, AnEcKeyMadeInTheTokenSignsWhatOpensslVerifies) {
  ASSERT_OK(hsm_->GenerateKey("meshid-ca", kPin, "EC:prime256v1", "ca", "01"));
  auto key = TokenKey::Open(Options("pkcs11:token=meshid-ca;object=ca"), clock_);
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_THAT(ClassifyKey((*key)->public_key()), IsOkAndHolds(KeyAlgorithm::kEcdsaP256));
  const std::string data = "to be signed";
  auto signature = (*key)->SignDigest(EVP_sha256(), Sha256(data));
  ASSERT_TRUE(signature.ok()) << signature.status();
  EXPECT_TRUE(Verifies((*key)->public_key(), data, *signature));
  EXPECT_FALSE(Verifies((*key)->public_key(), "something else", *signature));
  EXPECT_OK((*key)->Health());
}

TEST_F(TokenKeyTest, AnImportedRsaKeySignsWithItsPublicHalfFromTheToken) {
  auto rsa = GenerateKey(KeyAlgorithm::kRsa2048);
  ASSERT_TRUE(rsa.ok());
  ASSERT_OK(hsm_->ImportKey("meshid-ca", kPin, rsa->get(), "rsa-ca", "02"));
  auto key = TokenKey::Open(Options("pkcs11:token=meshid-ca;id=%02"), clock_);
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_TRUE(SamePublicKey((*key)->public_key(), rsa->get()));
  const std::string data = "to be signed";
  auto signature = (*key)->SignDigest(EVP_sha256(), Sha256(data));
  ASSERT_TRUE(signature.ok()) << signature.status();
  EXPECT_TRUE(Verifies(rsa->get(), data, *signature));
}

TEST_F(TokenKeyTest, TheEvpPkeySignsThroughTheTokenUnderOpensslsOwnFunctions) {
  auto ec = GenerateKey(KeyAlgorithm::kEcdsaP384);
  ASSERT_TRUE(ec.ok());
  ASSERT_OK(hsm_->ImportKey("meshid-ca", kPin, ec->get(), "ca", "01"));
  auto key = TokenKey::Open(Options("pkcs11:token=meshid-ca;object=ca;type=private"), clock_);
  ASSERT_TRUE(key.ok()) << key.status();
  auto pkey = TokenKey::AsEvpPkey(*key);
  ASSERT_TRUE(pkey.ok()) << pkey.status();
  EXPECT_EQ(TokenKey::Of(pkey->get()), key->get());
  EXPECT_EQ(TokenKey::Of(ec->get()), nullptr);
  EXPECT_THAT(ClassifyKey(pkey->get()), IsOkAndHolds(KeyAlgorithm::kEcdsaP384));

  // EVP_DigestSign, as the CRL and X509_sign use it.
  const std::string data = "a CRL, say";
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  ASSERT_EQ(EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha384(), nullptr, pkey->get()), 1);
  size_t len = 0;
  ASSERT_EQ(EVP_DigestSign(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(data.data()), data.size()),
            1);
  std::string signature(len, '\0');
  ASSERT_EQ(EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()), &len,
                           reinterpret_cast<const unsigned char*>(data.data()), data.size()),
            1);
  signature.resize(len);
  EvpMdCtxPtr verify(EVP_MD_CTX_new());
  ASSERT_EQ(EVP_DigestVerifyInit(verify.get(), nullptr, EVP_sha384(), nullptr, ec->get()), 1);
  EXPECT_EQ(EVP_DigestVerify(verify.get(), reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
                             reinterpret_cast<const unsigned char*>(data.data()), data.size()),
            1);
}

TEST_F(TokenKeyTest, ManyThreadsSignAtOnceOverThePool) {
  ASSERT_OK(hsm_->GenerateKey("meshid-ca", kPin, "EC:prime256v1", "ca", "01"));
  TokenKeyOptions options = Options("pkcs11:token=meshid-ca;object=ca");
  options.sessions = 3;
  auto key = TokenKey::Open(std::move(options), clock_);
  ASSERT_TRUE(key.ok()) << key.status();
  std::atomic<int> verified{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        const std::string data = "message " + std::to_string(t) + "/" + std::to_string(i);
        auto signature = (*key)->SignDigest(EVP_sha256(), Sha256(data));
        if (signature.ok() && Verifies((*key)->public_key(), data, *signature)) ++verified;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(verified.load(), 200);
}

TEST_F(TokenKeyTest, RefusalsNameWhatIsWrong) {
  ASSERT_OK(hsm_->GenerateKey("meshid-ca", kPin, "EC:prime256v1", "ca", "01"));
  TokenKeyOptions wrong_pin = Options("pkcs11:token=meshid-ca;object=ca");
  wrong_pin.pin = SecretString("9999");
  EXPECT_THAT(
      TokenKey::Open(std::move(wrong_pin), clock_),
      StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("the token refused the PIN (CKR_PIN_INCORRECT)")));
  TokenKeyOptions no_pin = Options("pkcs11:token=meshid-ca;object=ca");
  no_pin.pin = SecretString();
  EXPECT_THAT(TokenKey::Open(std::move(no_pin), clock_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no PIN given")));
  EXPECT_THAT(TokenKey::Open(Options("pkcs11:token=meshid-ca;object=missing"), clock_),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("pkcs11:token=meshid-ca;object=missing: no private key in the token matches")));
  EXPECT_THAT(TokenKey::Open(Options("pkcs11:token=other;object=ca"), clock_),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no token matches (tokens present: \"meshid-ca\")")));
  EXPECT_THAT(TokenKey::Open(Options("pkcs11:token=meshid-ca"), clock_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("names no key; add object=")));
  EXPECT_THAT(TokenKey::Open(Options("pkcs11:token=meshid-ca;object=ca;type=public"), clock_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("the CA key is a private key")));
  EXPECT_THAT(TokenKey::Open(Options("pkcs11:object=ca?pin-value=1234"), clock_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("pin-value")));
  TokenKeyOptions no_module = Options("pkcs11:token=meshid-ca;object=ca");
  no_module.module_path = dir_.path() + "/no-such-module.so";
  EXPECT_THAT(TokenKey::Open(std::move(no_module), clock_),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no-such-module.so: no such file")));
  TokenKeyOptions not_a_module = Options("pkcs11:token=meshid-ca;object=ca");
  not_a_module.module_path = dir_.Write("fake.so", "not a shared object");
  EXPECT_THAT(TokenKey::Open(std::move(not_a_module), clock_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("fake.so: cannot be loaded")));
  TokenKeyOptions empty_pin_file = Options("pkcs11:token=meshid-ca;object=ca");
  empty_pin_file.pin = SecretString();
  empty_pin_file.pin_file = dir_.Write("empty-pin", "\n");
  EXPECT_THAT(TokenKey::Open(std::move(empty_pin_file), clock_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty-pin: the PIN file is empty")));
  TokenKeyOptions missing_pin_file = Options("pkcs11:token=meshid-ca;object=ca?pin-source=file:/nonexistent/pin");
  missing_pin_file.pin = SecretString();
  EXPECT_THAT(TokenKey::Open(std::move(missing_pin_file), clock_),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/pin")));
  TokenKeyOptions unnamed_module = Options("pkcs11:token=meshid-ca;object=ca");
  unnamed_module.module_path.clear();
  EXPECT_THAT(TokenKey::Open(std::move(unnamed_module), clock_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no PKCS#11 module")));
}

TEST_F(TokenKeyTest, ThePinAndModuleMayComeFromTheUri) {
  ASSERT_OK(hsm_->GenerateKey("meshid-ca", kPin, "EC:prime256v1", "ca", "01"));
  const std::string pin_file = dir_.Write("pin", "1234\n");
  TokenKeyOptions options;
  options.uri =
      absl::StrCat("pkcs11:token=meshid-ca;object=ca?pin-source=file:", pin_file, "&module-path=", SoftHsm::kModule);
  auto key = TokenKey::Open(std::move(options), clock_);
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_OK((*key)->Health());
}

TEST_F(TokenKeyTest, ATokenRemovedUnderLoadIsUnavailableAndTheSameKeyComesBack) {
  auto ec = GenerateKey(KeyAlgorithm::kEcdsaP256);
  ASSERT_TRUE(ec.ok());
  ASSERT_OK(hsm_->ImportKey("meshid-ca", kPin, ec->get(), "ca", "01"));
  auto key = TokenKey::Open(Options("pkcs11:token=meshid-ca;object=ca"), clock_);
  ASSERT_TRUE(key.ok()) << key.status();
  const std::string digest = Sha256("x");
  ASSERT_TRUE((*key)->SignDigest(EVP_sha256(), digest).ok());

  ASSERT_OK(hsm_->DeleteToken("meshid-ca"));
  auto while_gone = (*key)->SignDigest(EVP_sha256(), digest);
  EXPECT_THAT(while_gone.status(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT((*key)->Health(), StatusIs(absl::StatusCode::kUnavailable));

  ASSERT_OK(hsm_->InitToken("meshid-ca", kPin));
  ASSERT_OK(hsm_->ImportKey("meshid-ca", kPin, ec->get(), "ca", "01"));
  EXPECT_THAT((*key)->Health(), StatusIs(absl::StatusCode::kUnavailable));  // not due yet
  clock_.Advance(absl::Seconds(1));
  EXPECT_OK((*key)->Health());
  auto again = (*key)->SignDigest(EVP_sha256(), digest);
  ASSERT_TRUE(again.ok()) << again.status();
}

TEST_F(TokenKeyTest, SignersUnderLoadSeeOnlySignaturesOrUnavailableWhileTheTokenGoesAndComesBack) {
  auto ec = GenerateKey(KeyAlgorithm::kEcdsaP256);
  ASSERT_TRUE(ec.ok());
  ASSERT_OK(hsm_->ImportKey("meshid-ca", kPin, ec->get(), "ca", "01"));
  TokenKeyOptions options = Options("pkcs11:token=meshid-ca;object=ca");
  options.sessions = 2;
  auto key = TokenKey::Open(std::move(options), clock_);
  ASSERT_TRUE(key.ok()) << key.status();
  const std::string digest = Sha256("under load");
  std::atomic<bool> stop{false};
  std::atomic<int> signed_ok{0}, unavailable{0}, other{0};
  std::vector<std::thread> signers;
  for (int t = 0; t < 4; ++t) {
    signers.emplace_back([&] {
      while (!stop) {
        auto signature = (*key)->SignDigest(EVP_sha256(), digest);
        if (signature.ok()) {
          ++signed_ok;
        } else if (absl::IsUnavailable(signature.status())) {
          ++unavailable;
        } else {
          ++other;
        }
      }
    });
  }
  EXPECT_TRUE(Eventually([&] { return signed_ok > 20; }));
  ASSERT_OK(hsm_->DeleteToken("meshid-ca"));
  EXPECT_TRUE(Eventually([&] { return unavailable > 20; }));
  ASSERT_OK(hsm_->InitToken("meshid-ca", kPin));
  ASSERT_OK(hsm_->ImportKey("meshid-ca", kPin, ec->get(), "ca", "01"));
  const int before = signed_ok;
  clock_.Advance(absl::Seconds(1));  // a reconnect is due
  EXPECT_TRUE(Eventually([&] { return signed_ok > before + 20; }));
  stop = true;
  for (auto& thread : signers) thread.join();
  EXPECT_EQ(other.load(), 0);
}

TEST_F(TokenKeyTest, ATokenThatComesBackWithAnotherKeyUnderTheNameIsRefused) {
  ASSERT_OK(hsm_->GenerateKey("meshid-ca", kPin, "EC:prime256v1", "ca", "01"));
  auto key = TokenKey::Open(Options("pkcs11:token=meshid-ca;object=ca"), clock_);
  ASSERT_TRUE(key.ok()) << key.status();
  ASSERT_OK(hsm_->DeleteToken("meshid-ca"));
  EXPECT_THAT((*key)->Health(), StatusIs(absl::StatusCode::kUnavailable));
  ASSERT_OK(hsm_->InitToken("meshid-ca", kPin));
  ASSERT_OK(hsm_->GenerateKey("meshid-ca", kPin, "EC:prime256v1", "ca", "01"));  // a new key, same name
  clock_.Advance(absl::Seconds(1));
  EXPECT_THAT((*key)->Health(), StatusIs(absl::StatusCode::kUnavailable,
                                         HasSubstr("the token now holds a different key under this name")));
  EXPECT_THAT((*key)->SignDigest(EVP_sha256(), Sha256("x")).status(), StatusIs(absl::StatusCode::kUnavailable));
}

TEST_F(TokenKeyTest, APinRefusedOnReconnectIsNeverTriedAgain) {
  auto ec = GenerateKey(KeyAlgorithm::kEcdsaP256);
  ASSERT_TRUE(ec.ok());
  ASSERT_OK(hsm_->ImportKey("meshid-ca", kPin, ec->get(), "ca", "01"));
  auto key = TokenKey::Open(Options("pkcs11:token=meshid-ca;object=ca"), clock_);
  ASSERT_TRUE(key.ok()) << key.status();
  ASSERT_OK(hsm_->DeleteToken("meshid-ca"));
  EXPECT_THAT((*key)->Health(), StatusIs(absl::StatusCode::kUnavailable));
  ASSERT_OK(hsm_->InitToken("meshid-ca", "another-pin"));  // the PIN we hold is now wrong
  ASSERT_OK(hsm_->ImportKey("meshid-ca", "another-pin", ec->get(), "ca", "01"));
  clock_.Advance(absl::Seconds(1));
  EXPECT_THAT((*key)->Health(), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("not retried")));
  // Even once the PIN would work again, the key does not log in again by itself.
  ASSERT_OK(hsm_->DeleteToken("meshid-ca"));
  ASSERT_OK(hsm_->InitToken("meshid-ca", kPin));
  ASSERT_OK(hsm_->ImportKey("meshid-ca", kPin, ec->get(), "ca", "01"));
  clock_.Advance(absl::Seconds(10));
  EXPECT_THAT((*key)->Health(), StatusIs(absl::StatusCode::kUnavailable, HasSubstr("not retried")));
}

}  // namespace
}  // namespace meshid::pkcs11
