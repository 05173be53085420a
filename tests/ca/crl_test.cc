// The CA's CRL: built by ca/crl_builder, read back by common/crl (VerifyCrl, and the
// RevocationIndex that handshakes consult), and checked by an independent implementation, the
// openssl command line (`openssl crl -verify`, `openssl verify -crl_check`).
#include "common/crl.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/x509.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "ca/crl_builder.h"
#include "common/files.h"
#include "common/x509.h"
#include "tests/support/certs.h"
#include "tests/support/status_matchers.h"
#include "tests/support/subprocess.h"
#include "tests/support/temp_dir.h"

namespace meshid {
namespace {

using ::meshid::testing::RunShell;
using ::meshid::testing::StatusIs;
using ::meshid::testing::TempDir;
using ::meshid::testing::TestCa;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::SizeIs;

RevocationRecord Revoked(const std::string& serial, X509* issuer, RevocationReason reason,
                         absl::Time not_after = absl::Now() + absl::Hours(1)) {
  return RevocationRecord{serial,
                          "spiffe://cluster.local/ns/default/sa/web",
                          SerialHex(issuer),
                          not_after,
                          reason,
                          "ops@host",
                          absl::Now() - absl::Minutes(1)};
}

std::string LeafSerial(const testing::CertAndKeyPem& leaf) { return SerialHex(CertFromPem(leaf.cert)->get()); }

CrlContents Contents(int64_t number) {
  return CrlContents{number, absl::Now() - absl::Seconds(5), absl::Now() + absl::Hours(24)};
}

// A copy of `cert` with serial `hex` (its signature no longer matches; RevocationIndex only reads
// the serial and the issuer name).
X509Ptr WithSerial(X509* cert, const std::string& hex) {
  X509Ptr copy(X509_dup(cert));
  BIGNUM* bn = nullptr;
  EXPECT_GT(BN_hex2bn(&bn, hex.c_str()), 0);
  BignumPtr owned(bn);
  Asn1IntegerPtr serial(BN_to_ASN1_INTEGER(owned.get(), nullptr));
  EXPECT_TRUE(copy && serial && X509_set_serialNumber(copy.get(), serial.get()) == 1);
  return copy;
}

// A copy of `cert` naming `issuer` as its issuer.
X509Ptr WithIssuerName(X509* cert, X509* issuer) {
  X509Ptr copy(X509_dup(cert));
  EXPECT_TRUE(copy && X509_set_issuer_name(copy.get(), X509_get_subject_name(issuer)) == 1);
  return copy;
}

// A CRL made with OpenSSL directly, for the shapes BuildCrl never makes: version 1 (no version
// field, no extensions) or version 2 without nextUpdate and cRLNumber. Lists serial 0x2A.
std::string HandMadeCrl(X509* issuer, EVP_PKEY* key, bool version2) {
  X509CrlPtr crl(X509_CRL_new());
  Asn1TimePtr this_update(ASN1_TIME_set(nullptr, absl::ToTimeT(absl::Now() - absl::Minutes(1))));
  X509RevokedPtr entry(X509_REVOKED_new());
  Asn1IntegerPtr serial(ASN1_INTEGER_new());
  if (!crl || !this_update || !entry || !serial) return "";
  if (version2) {
    EXPECT_EQ(X509_CRL_set_version(crl.get(), X509_CRL_VERSION_2), 1);
  }
  EXPECT_EQ(X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(issuer)), 1);
  EXPECT_EQ(X509_CRL_set1_lastUpdate(crl.get(), this_update.get()), 1);
  EXPECT_EQ(ASN1_INTEGER_set(serial.get(), 0x2A), 1);
  EXPECT_EQ(X509_REVOKED_set_serialNumber(entry.get(), serial.get()), 1);
  EXPECT_EQ(X509_REVOKED_set_revocationDate(entry.get(), this_update.get()), 1);
  EXPECT_EQ(X509_CRL_add0_revoked(crl.get(), entry.get()), 1);
  entry.release();  // the CRL owns it now
  EXPECT_GT(X509_CRL_sign(crl.get(), key, EVP_sha256()), 0);
  unsigned char* out = nullptr;
  const int len = i2d_X509_CRL(crl.get(), &out);
  if (len <= 0) return "";
  std::string der(reinterpret_cast<char*>(out), static_cast<size_t>(len));
  OPENSSL_free(out);
  return der;
}

class CrlTest : public ::testing::TestWithParam<KeyAlgorithm> {
 protected:
  void SetUp() override {
    TestCa::Options options;
    options.algorithm = GetParam();
    auto ca = TestCa::Create(options);
    ASSERT_OK(ca.status());
    ca_.emplace(*std::move(ca));
  }
  std::string Write(const std::string& name, const std::string& content) {
    std::string path = dir_.path() + "/" + name;
    EXPECT_OK(WriteFileAtomic(path, content, 0600));
    return path;
  }
  std::optional<TestCa> ca_;
  TempDir dir_;
};

INSTANTIATE_TEST_SUITE_P(Keys, CrlTest, ::testing::Values(KeyAlgorithm::kEcdsaP256, KeyAlgorithm::kRsa2048),
                         [](const auto& info) { return info.param == KeyAlgorithm::kEcdsaP256 ? "p256" : "rsa2048"; });

TEST_P(CrlTest, OpensslAcceptsTheCrlAndRefusesTheRevokedLeaf) {
  auto revoked_leaf = ca_->Leaf({"spiffe://cluster.local/ns/default/sa/web"});
  auto good_leaf = ca_->Leaf({"spiffe://cluster.local/ns/default/sa/db"});
  ASSERT_OK(revoked_leaf.status());
  ASSERT_OK(good_leaf.status());
  auto other = TestCa::Create();
  ASSERT_OK(other.status());
  const std::vector<RevocationRecord> revocations = {
      Revoked(LeafSerial(*revoked_leaf), ca_->cert(), RevocationReason::kKeyCompromise),
      // Expired: dropped from the CRL.
      Revoked("0A0B0C", ca_->cert(), RevocationReason::kSuperseded, absl::Now() - absl::Minutes(1)),
      // Signed by another CA certificate: its CRL, not this one.
      Revoked("0D0E0F", other->cert(), RevocationReason::kSuperseded),
      Revoked("7F", ca_->cert(), RevocationReason::kUnspecified),
  };
  auto der = BuildCrl(ca_->cert(), ca_->key(), revocations, Contents(42));
  ASSERT_OK(der.status());

  const std::string crl = Write("crl.pem", CrlDerToPem(*der));
  const std::string ca = Write("ca.pem", ca_->cert_pem());
  const std::string revoked = Write("revoked.pem", revoked_leaf->cert);
  const std::string good = Write("good.pem", good_leaf->cert);

  auto [verify_code, verify_out] = RunShell(absl::StrCat("openssl crl -in ", crl, " -CAfile ", ca, " -noout 2>&1"));
  EXPECT_EQ(verify_code, 0) << verify_out;
  EXPECT_THAT(verify_out, HasSubstr("verify OK"));
  auto [text_code, text] = RunShell(absl::StrCat("openssl crl -in ", crl, " -noout -text 2>&1"));
  ASSERT_EQ(text_code, 0) << text;
  EXPECT_THAT(text, HasSubstr("Version 2"));
  EXPECT_THAT(text, HasSubstr("X509v3 CRL Number: \n                42"));
  EXPECT_THAT(text, HasSubstr("X509v3 Authority Key Identifier"));
  EXPECT_THAT(text, HasSubstr("Key Compromise"));
  EXPECT_THAT(text, HasSubstr(absl::StrCat("Serial Number: ", LeafSerial(*revoked_leaf))));
  EXPECT_THAT(text, HasSubstr("Serial Number: 7F"));
  EXPECT_THAT(text, Not(HasSubstr("0A0B0C")));
  EXPECT_THAT(text, Not(HasSubstr("0D0E0F")));
  EXPECT_THAT(text, Not(HasSubstr("Unspecified")));  // RFC 5280: absent rather than unspecified

  auto [revoked_code, revoked_out] =
      RunShell(absl::StrCat("openssl verify -crl_check -CAfile ", ca, " -CRLfile ", crl, " ", revoked, " 2>&1"));
  EXPECT_NE(revoked_code, 0);
  EXPECT_THAT(revoked_out, HasSubstr("certificate revoked"));
  auto [good_code, good_out] =
      RunShell(absl::StrCat("openssl verify -crl_check -CAfile ", ca, " -CRLfile ", crl, " ", good, " 2>&1"));
  EXPECT_EQ(good_code, 0) << good_out;

  // And meshid's own reader agrees.
  auto info = VerifyCrl(*der, ca_->cert(), absl::Now());
  ASSERT_OK(info.status());
  EXPECT_EQ(info->number, 42);
  EXPECT_EQ(info->issuer_serial_hex, SerialHex(ca_->cert()));
  EXPECT_THAT(info->revoked, ElementsAre(LeafSerial(*revoked_leaf), "7F"));
  auto from_pem = CrlDerFromPem(text + CrlDerToPem(*der));
  ASSERT_OK(from_pem.status());
  EXPECT_EQ(*from_pem, *der);
}

TEST_P(CrlTest, ReaderRefusesCrlsItMustNotTrust) {
  auto der =
      BuildCrl(ca_->cert(), ca_->key(), {Revoked("01", ca_->cert(), RevocationReason::kKeyCompromise)}, Contents(7));
  ASSERT_OK(der.status());
  TestCa::Options another_name;
  another_name.organization = "another CA";
  auto other = TestCa::Create(another_name);
  ASSERT_OK(other.status());
  EXPECT_THAT(VerifyCrl(*der, other->cert(), absl::Now()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("issued by")));

  // The same name, another key: a forged CRL.
  TestCa::Options same_name;
  same_name.algorithm = GetParam();
  auto impostor = TestCa::Create(same_name);
  ASSERT_OK(impostor.status());
  auto forged = BuildCrl(impostor->cert(), impostor->key(), {}, Contents(8));
  ASSERT_OK(forged.status());
  EXPECT_THAT(VerifyCrl(*forged, ca_->cert(), absl::Now()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bad signature")));

  std::string tampered = *der;
  tampered[tampered.size() / 2] ^= 0x01;
  EXPECT_THAT(VerifyCrl(tampered, ca_->cert(), absl::Now()), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(VerifyCrl(*der + "x", ca_->cert(), absl::Now()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("trailing bytes")));
  EXPECT_THAT(VerifyCrl("not a crl", ca_->cert(), absl::Now()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a DER-encoded X.509 CRL")));
  EXPECT_THAT(VerifyCrl("", ca_->cert(), absl::Now()), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(VerifyCrl(der->substr(0, der->size() - 3), ca_->cert(), absl::Now()),
              StatusIs(absl::StatusCode::kInvalidArgument));

  const absl::Time later = absl::Now() + absl::Hours(25);
  EXPECT_THAT(VerifyCrl(*der, ca_->cert(), later), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expired")));
  EXPECT_OK(VerifyCrl(*der, ca_->cert(), later, /*allow_stale=*/true).status());
  EXPECT_THAT(VerifyCrl(*der, ca_->cert(), absl::Now() - absl::Hours(1)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not valid yet")));
  EXPECT_THAT(CrlDerFromPem(ca_->cert_pem()), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("X509 CRL")));
}

TEST_P(CrlTest, BadContentsAreRefusedNamingTheField) {
  const absl::Time now = absl::Now();
  EXPECT_THAT(BuildCrl(ca_->cert(), ca_->key(), {}, CrlContents{1, now, now}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("next_update")));
  EXPECT_THAT(BuildCrl(ca_->cert(), ca_->key(), {}, Contents(-1)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("number")));
  EXPECT_THAT(BuildCrl(ca_->cert(), ca_->key(),
                       {Revoked("01", ca_->cert(), RevocationReason::kKeyCompromise),
                        Revoked("zz", ca_->cert(), RevocationReason::kKeyCompromise)},
                       Contents(1)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("revocations[1].serial")));
  EXPECT_THAT(
      BuildCrl(ca_->cert(), ca_->key(), {Revoked("01", ca_->cert(), static_cast<RevocationReason>(6))}, Contents(1)),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("revocations[0].reason")));
}

TEST_P(CrlTest, RevocationIndexListsTheRevokedSerialsOfItsIssuer) {
  auto revoked_pem = ca_->Leaf({"spiffe://cluster.local/ns/default/sa/web"});
  auto good_pem = ca_->Leaf({"spiffe://cluster.local/ns/default/sa/db"});
  ASSERT_OK(revoked_pem.status());
  ASSERT_OK(good_pem.status());
  auto revoked = CertFromPem(revoked_pem->cert);
  auto good = CertFromPem(good_pem->cert);
  ASSERT_OK(revoked.status());
  ASSERT_OK(good.status());
  TestCa::Options another_name;
  another_name.organization = "another CA";
  auto other = TestCa::Create(another_name);
  ASSERT_OK(other.status());
  auto foreign_pem = other->Leaf({"spiffe://other.example/ns/default/sa/web"});
  ASSERT_OK(foreign_pem.status());
  auto foreign = CertFromPem(foreign_pem->cert);
  ASSERT_OK(foreign.status());

  const CrlContents contents = Contents(42);
  // The foreign certificate's serial is listed too, as if this CA had issued that serial.
  auto der = BuildCrl(ca_->cert(), ca_->key(),
                      {Revoked(SerialHex(revoked->get()), ca_->cert(), RevocationReason::kKeyCompromise),
                       Revoked(SerialHex(foreign->get()), ca_->cert(), RevocationReason::kKeyCompromise),
                       Revoked("80FF", ca_->cert(), RevocationReason::kKeyCompromise)},
                      contents);
  ASSERT_OK(der.status());
  auto index = RevocationIndex::FromCrlDer(*der);
  ASSERT_OK(index.status());
  EXPECT_EQ((*index)->number(), 42);
  EXPECT_EQ((*index)->size(), 3u);
  EXPECT_EQ((*index)->this_update(), absl::FromUnixSeconds(absl::ToUnixSeconds(contents.this_update)));
  EXPECT_EQ((*index)->next_update(), absl::FromUnixSeconds(absl::ToUnixSeconds(contents.next_update)));

  EXPECT_TRUE((*index)->IsRevoked(revoked->get()));
  EXPECT_FALSE((*index)->IsRevoked(good->get()));
  // A listed serial on a certificate of another issuer name is not this CRL's business...
  EXPECT_FALSE((*index)->IsRevoked(foreign->get()));
  // ...and the issuer name is what tells them apart.
  EXPECT_TRUE((*index)->IsRevoked(WithIssuerName(foreign->get(), ca_->cert()).get()));
  // A serial with the high bit set (DER prepends a zero byte) matches the certificate's.
  EXPECT_TRUE((*index)->IsRevoked(WithSerial(good->get(), "80FF").get()));
  EXPECT_FALSE((*index)->IsRevoked(WithSerial(good->get(), "80FE").get()));
  EXPECT_FALSE((*index)->IsRevoked(WithSerial(good->get(), "FF").get()));
}

TEST_P(CrlTest, RevocationIndexRefusesWhatIsNotAVersion2Crl) {
  auto der = BuildCrl(ca_->cert(), ca_->key(), {}, Contents(7));
  ASSERT_OK(der.status());
  EXPECT_THAT(RevocationIndex::FromCrlDer("garbage"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("CRL: not a DER-encoded X.509 CRL")));
  EXPECT_THAT(RevocationIndex::FromCrlDer(""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("CRL: not a DER-encoded X.509 CRL")));
  EXPECT_THAT(RevocationIndex::FromCrlDer(der->substr(0, der->size() - 1)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("CRL: not a DER-encoded X.509 CRL")));
  EXPECT_THAT(RevocationIndex::FromCrlDer(*der + std::string(1, '\0')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("CRL: trailing bytes after the CRL")));
  EXPECT_THAT(RevocationIndex::FromCrlDer(ca_->cert_pem()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a DER-encoded")));

  const std::string v1 = HandMadeCrl(ca_->cert(), ca_->key(), /*version2=*/false);
  ASSERT_FALSE(v1.empty());
  EXPECT_THAT(RevocationIndex::FromCrlDer(v1),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("CRL: not a version 2 CRL")));
  EXPECT_THAT(VerifyCrl(v1, ca_->cert(), absl::Now()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a version 2 CRL")));

  // Version 2 without the optional parts: no cRLNumber reads as 0, no nextUpdate as never.
  const std::string bare = HandMadeCrl(ca_->cert(), ca_->key(), /*version2=*/true);
  auto index = RevocationIndex::FromCrlDer(bare);
  ASSERT_OK(index.status());
  EXPECT_EQ((*index)->number(), 0);
  EXPECT_EQ((*index)->size(), 1u);
  EXPECT_EQ((*index)->next_update(), absl::InfiniteFuture());
  EXPECT_TRUE((*index)->IsRevoked(WithSerial(ca_->cert(), "2A").get()));
}

// The other direction: a CRL made by `openssl ca -gencrl` reads as the same revocations.
TEST(CrlInteropTest, ReadsACrlMadeByOpenssl) {
  TempDir dir;
  const std::string d = dir.path();
  const std::string script = absl::StrCat(
      "cd ", d, " && openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>&1 && ",
      "openssl req -x509 -new -key ca.key -subj '/O=openssl CA' -days 2 -addext subjectKeyIdentifier=hash -out ca.pem "
      "2>&1 && echo 11 > crlnumber && ",
      "printf 'R\\t491231235959Z\\t261207010000Z,keyCompromise\\t1A2B\\tunknown\\t/O=a\\n' > index.txt && ",
      "printf 'R\\t491231235959Z\\t261207010000Z\\t0C\\tunknown\\t/O=b\\n' >> index.txt && ",
      "printf '[ca]\\ndefault_ca=d\\n[d]\\ndatabase=index.txt\\ncrlnumber=crlnumber\\ndefault_md=sha256\\n",
      "default_crl_days=1\\n' > ca.cnf && ",
      "openssl ca -config ca.cnf -gencrl -keyfile ca.key -cert ca.pem -out crl.pem 2>&1");
  auto [code, out] = RunShell(script);
  ASSERT_EQ(code, 0) << out;
  auto pem = ReadFile(d + "/crl.pem");
  ASSERT_OK(pem.status());
  auto der = CrlDerFromPem(*pem);
  ASSERT_OK(der.status());
  auto issuer_pem = ReadFile(d + "/ca.pem");
  ASSERT_OK(issuer_pem.status());
  auto issuer = CertFromPem(*issuer_pem);
  ASSERT_OK(issuer.status());
  auto info = VerifyCrl(*der, issuer->get(), absl::Now());
  ASSERT_OK(info.status());
  EXPECT_EQ(info->number, 0x11);
  EXPECT_THAT(info->revoked, ElementsAre("0C", "1A2B"));
  EXPECT_LT(info->next_update, absl::Now() + absl::Hours(25));
}

// 100,000 revocations (the worst case) still make one CRL that both readers accept.
TEST(CrlScaleTest, OneHundredThousandRevocations) {
  auto ca = TestCa::Create();
  ASSERT_OK(ca.status());
  std::vector<RevocationRecord> revocations;
  revocations.reserve(100'000);
  for (int i = 0; i < 100'000; ++i) {
    revocations.push_back(Revoked(absl::StrFormat("01A2%028X", i), ca->cert(), RevocationReason::kSuperseded));
  }
  auto der = BuildCrl(ca->cert(), ca->key(), revocations, Contents(100'001));
  ASSERT_OK(der.status());
  auto info = VerifyCrl(*der, ca->cert(), absl::Now());
  ASSERT_OK(info.status());
  EXPECT_THAT(info->revoked, SizeIs(100'000));
  EXPECT_TRUE(info->revoked.contains(absl::StrFormat("01A2%028X", 99'999)));
  // The index a TLS handshake consults, over the same CRL.
  auto index = RevocationIndex::FromCrlDer(*der);
  ASSERT_OK(index.status());
  EXPECT_EQ((*index)->size(), 100'000u);
  EXPECT_EQ((*index)->number(), 100'001);
  auto leaf_pem = ca->Leaf({"spiffe://cluster.local/ns/default/sa/web"});
  ASSERT_OK(leaf_pem.status());
  auto leaf = CertFromPem(leaf_pem->cert);
  ASSERT_OK(leaf.status());
  EXPECT_FALSE((*index)->IsRevoked(leaf->get()));
  for (int i : {0, 1, 50'000, 99'999}) {
    EXPECT_TRUE((*index)->IsRevoked(WithSerial(leaf->get(), absl::StrFormat("01A2%028X", i)).get())) << i;
  }
  EXPECT_FALSE((*index)->IsRevoked(WithSerial(leaf->get(), absl::StrFormat("01A2%028X", 100'000)).get()));
  TempDir dir;
  ASSERT_OK(WriteFileAtomic(dir.path() + "/crl.der", *der, 0600));
  ASSERT_OK(WriteFileAtomic(dir.path() + "/ca.pem", ca->cert_pem(), 0600));
  auto [code, out] = RunShell(
      absl::StrCat("openssl crl -inform DER -in ", dir.path(), "/crl.der -CAfile ", dir.path(), "/ca.pem -noout 2>&1"));
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("verify OK"));
}

}  // namespace
}  // namespace meshid
