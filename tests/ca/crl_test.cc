// The CA's CRL: built by ca/crl_builder, read back by common/crl, and checked by an independent
// implementation, the openssl command line (`openssl crl -verify`, `openssl verify -crl_check`).
#include "common/crl.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

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
