#include "ca/csr_validator.h"

#include <gtest/gtest.h>

#include "common/csr.h"
#include "common/pem.h"

namespace meshid {
namespace {

const SpiffeId kCaller = *SpiffeId::Parse("spiffe://cluster.local/ns/default/sa/sleep");

std::string Message(const absl::StatusOr<ValidatedCsr>& r) { return std::string(r.status().message()); }

TEST(ValidateCsr, AcceptsEveryAllowedKeyWithAndWithoutSan) {
  for (KeyAlgorithm a :
       {KeyAlgorithm::kEcdsaP256, KeyAlgorithm::kEcdsaP384, KeyAlgorithm::kRsa2048, KeyAlgorithm::kRsa4096}) {
    auto key = *GenerateKey(a);
    auto plain = ValidateCsr(*BuildCsrPem(key.get()), kCaller);
    ASSERT_TRUE(plain.ok()) << KeyAlgorithmName(a) << ": " << plain.status();
    EXPECT_EQ(plain->algorithm, a);
    EXPECT_EQ(plain->spki_der, *PublicKeyDer(key.get()));
    CsrOptions with_san;
    with_san.uri_sans = {kCaller.ToString()};
    EXPECT_TRUE(ValidateCsr(*BuildCsrPem(key.get(), with_san), kCaller).ok());
  }
}

TEST(ValidateCsr, RefusesWeakAndForeignKeys) {
  EvpPkeyPtr rsa1024(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{1024}));
  auto r = ValidateCsr(*BuildCsrPem(rsa1024.get()), kCaller);
  EXPECT_TRUE(absl::IsInvalidArgument(r.status()));
  EXPECT_NE(Message(r).find("RSA key of 1024 bits is not allowed"), std::string::npos) << r.status();
  EvpPkeyPtr p192(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-192"));
  EXPECT_NE(Message(ValidateCsr(*BuildCsrPem(p192.get()), kCaller)).find("prime192v1"), std::string::npos);
  EvpPkeyPtr ed448(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED448"));
  EXPECT_NE(Message(ValidateCsr(*BuildCsrPem(ed448.get()), kCaller)).find("Ed448 key is not allowed"),
            std::string::npos);
}

TEST(ValidateCsr, RefusesSansOtherThanTheCaller) {
  auto key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
  CsrOptions foreign;
  foreign.uri_sans = {"spiffe://cluster.local/ns/kube-system/sa/admin"};
  EXPECT_NE(
      Message(ValidateCsr(*BuildCsrPem(key.get(), foreign), kCaller))
          .find(
              "asks for URI SAN \"spiffe://cluster.local/ns/kube-system/sa/admin\" but the caller is authenticated as"),
      std::string::npos);
  CsrOptions dns;
  dns.uri_sans = {kCaller.ToString()};
  dns.dns_sans = {"evil.example.com"};
  EXPECT_NE(Message(ValidateCsr(*BuildCsrPem(key.get(), dns), kCaller)).find("asks for a DNS SAN"), std::string::npos);
  CsrOptions twice;
  twice.uri_sans = {kCaller.ToString(), kCaller.ToString()};
  EXPECT_NE(Message(ValidateCsr(*BuildCsrPem(key.get(), twice), kCaller)).find("exactly one"), std::string::npos);
}

TEST(ValidateCsr, RefusesCaRequest) {
  auto key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
  CsrOptions ca;
  ca.request_ca = true;
  EXPECT_NE(Message(ValidateCsr(*BuildCsrPem(key.get(), ca), kCaller)).find("asks for CA:TRUE"), std::string::npos);
}

TEST(ValidateCsr, RefusesBrokenEncodings) {
  auto key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
  std::string good = *BuildCsrPem(key.get());
  auto blocks = *ParsePemBlocks(good);
  std::string der = blocks[0].der;

  struct Case {
    const char* name;
    std::string pem;
    const char* message;
  } cases[] = {
      {"empty", "", "CSR is empty"},
      {"not pem", "hello", "is not valid PEM"},
      {"two csrs", good + good, "must be one PEM block, found 2"},
      {"certificate block", EncodePem("CERTIFICATE", der), "expected \"CERTIFICATE REQUEST\""},
      {"garbage der", EncodePem("CERTIFICATE REQUEST", "garbage"), "not a valid DER PKCS#10"},
      {"trailing der", EncodePem("CERTIFICATE REQUEST", der + "x"), "not a valid DER PKCS#10"},
      {"huge", std::string(40000, 'a'), "larger than the limit"},
  };
  for (const auto& c : cases) {
    auto r = ValidateCsr(c.pem, kCaller);
    ASSERT_FALSE(r.ok()) << c.name;
    EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << c.name;
    EXPECT_NE(Message(r).find(c.message), std::string::npos) << c.name << ": " << r.status();
  }
}

TEST(ValidateCsr, RefusesBrokenSignature) {
  auto key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
  std::string der = (*ParsePemBlocks(*BuildCsrPem(key.get())))[0].der;
  der[der.size() - 5] ^= 0x01;  // inside the signature value
  auto r = ValidateCsr(EncodePem("CERTIFICATE REQUEST", der), kCaller);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Message(r).find("signature does not verify") != std::string::npos ||
              Message(r).find("not a valid DER") != std::string::npos)
      << r.status();
}

}  // namespace
}  // namespace meshid
