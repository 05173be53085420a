#include "common/keys.h"

#include <gtest/gtest.h>

namespace meshid {
namespace {

TEST(Keys, GeneratesClassifiesAndRoundTrips) {
  for (KeyAlgorithm a : {KeyAlgorithm::kEcdsaP256, KeyAlgorithm::kEcdsaP384, KeyAlgorithm::kRsa2048}) {
    auto key = GenerateKey(a);
    ASSERT_TRUE(key.ok());
    EXPECT_EQ(*ClassifyKey(key->get()), a);
    auto pem = PrivateKeyToPem(key->get());
    ASSERT_TRUE(pem.ok());
    auto back = PrivateKeyFromPem(pem->view());
    ASSERT_TRUE(back.ok());
    EXPECT_TRUE(SamePublicKey(key->get(), back->get()));
    EXPECT_EQ(PublicKeySha256Hex(key->get())->size(), 64u);
  }
}

TEST(Keys, RefusesWeakOrForeignKeys) {
  EvpPkeyPtr rsa1024(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{1024}));
  EXPECT_EQ(ClassifyKey(rsa1024.get()).status().message(),
            "RSA key of 1024 bits is not allowed (RSA keys must have 2048 to 4096 bits)");
  EvpPkeyPtr p192(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-192"));
  EXPECT_NE(std::string(ClassifyKey(p192.get()).status().message()).find("prime192v1"), std::string::npos);
  EvpPkeyPtr ed448(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED448"));
  EXPECT_NE(std::string(ClassifyKey(ed448.get()).status().message()).find("Ed448 key is not allowed"),
            std::string::npos);
  EXPECT_FALSE(ParseKeyAlgorithm("dsa-1024").ok());
  EXPECT_FALSE(PrivateKeyFromPem("not a key").ok());
}

}  // namespace
}  // namespace meshid
