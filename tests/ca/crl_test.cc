// The CA's CRL: built by ca/crl_builder, read back by common/crl (VerifyCrl, and the
// RevocationIndex that handshakes consult), and checked by an independent implementation, the
// openssl command line (`openssl crl -verify`, `openssl verify -crl_check`).
#include "common/crl.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "ca/crl_builder.h"
#include "common/der.h"
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
using ::testing::UnorderedElementsAre;

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

// The TBSCertList OpenSSL's X509_CRL API makes of the same contents (what BuildCrl used before
// it wrote DER itself): the reference BuildCrl's bytes must equal.
std::string OpensslTbs(X509* issuer, EVP_PKEY* key, const std::vector<RevocationRecord>& revocations,
                       const CrlContents& contents) {
  X509CrlPtr crl(X509_CRL_new());
  Asn1TimePtr this_update(ASN1_TIME_set(nullptr, absl::ToTimeT(contents.this_update)));
  Asn1TimePtr next_update(ASN1_TIME_set(nullptr, absl::ToTimeT(contents.next_update)));
  if (!crl || !this_update || !next_update || X509_CRL_set_version(crl.get(), X509_CRL_VERSION_2) != 1 ||
      X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(issuer)) != 1 ||
      X509_CRL_set1_lastUpdate(crl.get(), this_update.get()) != 1 ||
      X509_CRL_set1_nextUpdate(crl.get(), next_update.get()) != 1) {
    return "";
  }
  for (const RevocationRecord& r : revocations) {
    if (r.issuer_serial_hex != SerialHex(issuer) || r.not_after <= contents.this_update) continue;
    X509RevokedPtr entry(X509_REVOKED_new());
    BIGNUM* raw = nullptr;
    if (!entry || BN_hex2bn(&raw, r.serial_hex.c_str()) == 0) return "";
    BignumPtr bn(raw);
    Asn1IntegerPtr serial(BN_to_ASN1_INTEGER(bn.get(), nullptr));
    Asn1TimePtr when(ASN1_TIME_set(nullptr, absl::ToTimeT(r.revoked_at)));
    if (!serial || !when || X509_REVOKED_set_serialNumber(entry.get(), serial.get()) != 1 ||
        X509_REVOKED_set_revocationDate(entry.get(), when.get()) != 1) {
      return "";
    }
    if (r.reason != RevocationReason::kUnspecified) {
      Asn1EnumeratedPtr code(ASN1_ENUMERATED_new());
      if (!code || ASN1_ENUMERATED_set(code.get(), static_cast<long>(r.reason)) != 1 ||
          X509_REVOKED_add1_ext_i2d(entry.get(), NID_crl_reason, code.get(), 0, 0) != 1) {
        return "";
      }
    }
    if (X509_CRL_add0_revoked(crl.get(), entry.get()) != 1) return "";
    entry.release();  // the CRL owns it now
  }
  Asn1IntegerPtr number(ASN1_INTEGER_new());
  if (X509_CRL_sort(crl.get()) != 1 || !number || ASN1_INTEGER_set_int64(number.get(), contents.number) != 1 ||
      X509_CRL_add1_ext_i2d(crl.get(), NID_crl_number, number.get(), 0, 0) != 1) {
    return "";
  }
  if (const ASN1_OCTET_STRING* ski = X509_get0_subject_key_id(issuer); ski != nullptr) {
    AuthorityKeyIdPtr akid(AUTHORITY_KEYID_new());
    if (!akid || (akid->keyid = ASN1_OCTET_STRING_dup(ski)) == nullptr ||
        X509_CRL_add1_ext_i2d(crl.get(), NID_authority_key_identifier, akid.get(), 0, 0) != 1) {
      return "";
    }
  }
  if (X509_CRL_sign(crl.get(), key, EVP_sha256()) <= 0) return "";
  unsigned char* out = nullptr;
  const int len = i2d_re_X509_CRL_tbs(crl.get(), &out);
  if (len <= 0) return "";
  std::string tbs(reinterpret_cast<char*>(out), static_cast<size_t>(len));
  OPENSSL_free(out);
  return tbs;
}

// The TBSCertList of a DER CRL.
std::string TbsOf(const std::string& crl) {
  der::Reader outer(crl);
  auto list = outer.Next();
  if (!list.ok()) return "";
  der::Reader fields(list->value);
  auto tbs = fields.Next();
  return tbs.ok() ? std::string(tbs->whole) : "";
}

// A CRL of `entries` (each the DER of one revokedCertificates element) as FromCrlDer reads it:
// unsigned (FromCrlDer does not check the signature), with a cRLNumber of 5.
std::string CrlWithEntries(X509* issuer, const std::vector<std::string>& entries) {
  constexpr absl::string_view kAlgorithm("\x30\x0a\x06\x08\x2a\x86\x48\xce\x3d\x04\x03\x02", 12);
  std::string name;
  unsigned char* out = nullptr;
  const int len = i2d_X509_NAME(X509_get_subject_name(issuer), &out);
  if (len <= 0) return "";
  name.assign(reinterpret_cast<char*>(out), static_cast<size_t>(len));
  OPENSSL_free(out);
  std::string revoked;
  for (const std::string& e : entries) revoked += e;
  const std::string crl_number = der::Tlv(
      der::kSequence, absl::StrCat(absl::string_view("\x06\x03\x55\x1d\x14", 5),
                                   der::Tlv(der::kOctetString, der::UnsignedIntegerTlv(std::string(1, '\x05')))));
  const std::string tbs = der::Tlv(
      der::kSequence,
      absl::StrCat(absl::string_view("\x02\x01\x01", 3), kAlgorithm, name, der::TimeTlv(absl::Now() - absl::Hours(1)),
                   der::TimeTlv(absl::Now() + absl::Hours(1)), der::Tlv(der::kSequence, revoked),
                   der::Tlv(der::ContextConstructed(0), der::Tlv(der::kSequence, crl_number))));
  return der::Tlv(der::kSequence,
                  absl::StrCat(tbs, kAlgorithm, der::Tlv(der::kBitString, absl::string_view("\0\x30\x00", 3))));
}

// One revokedCertificates element: SEQUENCE { INTEGER with content `serial`, `rest` }.
std::string Entry(absl::string_view serial, absl::string_view rest =
                                                "\x17\x0d"
                                                "261207010000Z") {
  return der::Tlv(der::kSequence, absl::StrCat(der::Tlv(der::kInteger, serial), rest));
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
  EXPECT_THAT(info->revoked, UnorderedElementsAre(LeafSerial(*revoked_leaf), "7F"));
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

TEST_P(CrlTest, BuildCrlWritesWhatOpensslsCrlApiWrites) {
  const absl::Time now = absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now()));
  auto other = TestCa::Create();
  ASSERT_OK(other.status());
  auto at = [&](const std::string& serial, RevocationReason reason, absl::Time revoked_at, absl::Time not_after) {
    RevocationRecord r = Revoked(serial, ca_->cert(), reason, not_after);
    r.revoked_at = revoked_at;
    return r;
  };
  const absl::Time later = now + absl::Hours(1);
  const std::vector<RevocationRecord> revocations = {
      at("80FF", RevocationReason::kKeyCompromise, now - absl::Minutes(1), later),  // DER adds a 0x00
      at("7F", RevocationReason::kUnspecified, now - absl::Hours(2), later),        // no reasonCode
      at("000A", RevocationReason::kCaCompromise, now, later),                      // leading zeros
      at("0", RevocationReason::kAffiliationChanged, now, later),                   // zero
      at("ABC", RevocationReason::kSuperseded, now, later),                         // odd length
      at("0102030405060708090A0B0C0D0E0F10", RevocationReason::kCessationOfOperation, now, later),
      at("FF", RevocationReason::kPrivilegeWithdrawn,
         absl::FromCivil(absl::CivilSecond(2051, 2, 3, 4, 5, 6), absl::UTCTimeZone()), later),  // GeneralizedTime
      at("0100", RevocationReason::kKeyCompromise,
         absl::FromCivil(absl::CivilSecond(1949, 12, 31, 23, 59, 59), absl::UTCTimeZone()), later),
      at("0A0B0C", RevocationReason::kSuperseded, now, now - absl::Minutes(1)),  // expired: dropped
      Revoked("0D0E0F", other->cert(), RevocationReason::kSuperseded),           // another issuer: dropped
  };
  for (const CrlContents& contents :
       {CrlContents{0, now, now + absl::Hours(24)}, CrlContents{0x8000, now - absl::Seconds(5), now + absl::Hours(24)},
        CrlContents{int64_t{1} << 62, now,
                    absl::FromCivil(absl::CivilSecond(2060, 1, 1, 0, 0, 0), absl::UTCTimeZone())}}) {
    for (size_t n : {size_t{0}, size_t{1}, revocations.size()}) {
      const std::vector<RevocationRecord> some(revocations.begin(), revocations.begin() + n);
      auto der = BuildCrl(ca_->cert(), ca_->key(), some, contents);
      ASSERT_OK(der.status());
      const std::string expected = OpensslTbs(ca_->cert(), ca_->key(), some, contents);
      ASSERT_FALSE(expected.empty());
      EXPECT_EQ(absl::BytesToHexString(TbsOf(*der)), absl::BytesToHexString(expected))
          << n << " records, number " << contents.number;
      auto info = VerifyCrl(*der, ca_->cert(), now);
      ASSERT_OK(info.status());
      EXPECT_EQ(info->number, contents.number);
    }
  }
  EXPECT_THAT(BuildCrl(ca_->cert(), ca_->key(),
                       {at("01", RevocationReason::kKeyCompromise, absl::InfinitePast(), later)}, Contents(1)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("revocations[0].revoked_at")));
  EXPECT_THAT(BuildCrl(ca_->cert(), ca_->key(), {}, CrlContents{1, now, absl::InfiniteFuture()}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("next_update")));
}

TEST_P(CrlTest, VerifyCrlCanSkipTheHexSerials) {
  auto der = BuildCrl(ca_->cert(), ca_->key(),
                      {Revoked("80FF", ca_->cert(), RevocationReason::kKeyCompromise),
                       Revoked("01", ca_->cert(), RevocationReason::kUnspecified)},
                      Contents(9));
  ASSERT_OK(der.status());
  auto both = VerifyCrl(*der, ca_->cert(), absl::Now());
  ASSERT_OK(both.status());
  EXPECT_THAT(both->revoked, ElementsAre("01", "80FF"));
  ASSERT_NE(both->index, nullptr);
  EXPECT_EQ(both->index->size(), 2u);
  auto index_only = VerifyCrl(*der, ca_->cert(), absl::Now(), false, CrlSerials::kIndexOnly);
  ASSERT_OK(index_only.status());
  EXPECT_THAT(index_only->revoked, SizeIs(0));
  ASSERT_NE(index_only->index, nullptr);
  EXPECT_EQ(index_only->index->number(), 9);
  EXPECT_TRUE(index_only->index->IsRevoked(WithSerial(ca_->cert(), "80FF").get()));
  EXPECT_FALSE(index_only->index->IsRevoked(WithSerial(ca_->cert(), "02").get()));
}

TEST_P(CrlTest, RevocationIndexReadsSerialsAsOpensslDoes) {
  // Negative, zero and multi-octet serials: each is listed for the certificate with that serial
  // (whose ASN1_INTEGER OpenSSL made), and OpenSSL's parse of the same CRL lists the same ones.
  struct Case {
    std::string content;  // the INTEGER's DER content octets
    std::string hex;      // the same value as Asn1IntegerHex (BN_bn2hex) writes it
  };
  const std::vector<Case> cases = {
      {std::string("\x00", 1), "0"},
      {"\x7f", "7F"},
      {std::string("\x00\x80", 2), "80"},
      {"\xff", "-01"},
      {"\x80", "-80"},
      {"\xff\x7f", "-81"},
      {std::string("\xff\x00", 2), "-0100"},
      {"\x80\x01", "-7FFF"},
      {std::string("\xfe\x00\x01", 3), "-01FFFF"},
  };
  std::vector<std::string> entries;
  for (const Case& c : cases) entries.push_back(Entry(c.content));
  const std::string crl = CrlWithEntries(ca_->cert(), entries);
  auto index = RevocationIndex::FromCrlDer(crl);
  ASSERT_OK(index.status());
  EXPECT_EQ((*index)->number(), 5);
  EXPECT_EQ((*index)->size(), cases.size());
  for (const Case& c : cases) {
    EXPECT_TRUE((*index)->IsRevoked(WithSerial(ca_->cert(), c.hex).get())) << c.hex;
  }
  EXPECT_FALSE((*index)->IsRevoked(WithSerial(ca_->cert(), "1").get()));
  EXPECT_FALSE((*index)->IsRevoked(WithSerial(ca_->cert(), "-7F").get()));
  const auto* p = reinterpret_cast<const unsigned char*>(crl.data());
  X509CrlPtr parsed(d2i_X509_CRL(nullptr, &p, static_cast<long>(crl.size())));
  ASSERT_NE(parsed, nullptr);
  const STACK_OF(X509_REVOKED)* revoked = X509_CRL_get_REVOKED(parsed.get());
  ASSERT_EQ(sk_X509_REVOKED_num(revoked), static_cast<int>(cases.size()));
  for (int i = 0; i < sk_X509_REVOKED_num(revoked); ++i) {
    EXPECT_EQ(Asn1IntegerHex(X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(revoked, i))), cases[i].hex);
  }
}

TEST_P(CrlTest, RevocationIndexRefusesMalformedEntries) {
  const std::string good = Entry("\x01");
  ASSERT_OK(RevocationIndex::FromCrlDer(CrlWithEntries(ca_->cert(), {good, good})).status());
  const std::string reason_code("\x30\x0c\x30\x0a\x06\x03\x55\x1d\x15\x04\x03\x0a\x01\x01", 14);
  ASSERT_OK(RevocationIndex::FromCrlDer(CrlWithEntries(ca_->cert(), {Entry("\x01", absl::StrCat("\x17\x0d"
                                                                                                "261207010000Z",
                                                                                                reason_code))}))
                .status());
  const std::vector<std::string> malformed = {
      Entry(""),                          // empty INTEGER
      Entry(std::string("\x00\x01", 2)),  // redundant 0x00
      Entry("\xff\x80"),                  // redundant 0xFF
      Entry("\x01", ""),                  // no revocationDate
      Entry("\x01",
            "\x17\x0d"
            "261307010000Z"),  // month 13
      Entry("\x01",
            "\x17\x0d"
            "260230010000Z"),  // 30 February
      Entry("\x01",
            "\x17\x0b"
            "2612070100Z"),  // no seconds
      Entry("\x01",
            "\x04\x0d"
            "261207010000Z"),  // not a Time
      Entry("\x01", absl::StrCat("\x17\x0d"
                                 "261207010000Z",
                                 std::string("\x05\x00", 2))),  // not Extensions
      Entry("\x01", absl::StrCat("\x17\x0d"
                                 "261207010000Z",
                                 reason_code, std::string("\x05\x00", 2))),
      Entry("\x01", absl::StrCat("\x17\x0d"
                                 "261207010000Z",
                                 std::string("\x30\x04\x30\x02\x06\x00", 6))),  // empty OID
      std::string("\x31\x03\x02\x01\x01", 5),                                   // a SET
      std::string("\x30\x83\x00\x00\x03\x02\x01\x01", 8),                       // non-minimal length
      std::string("\x30\x80\x02\x01\x01\x00\x00", 7),                           // indefinite length
  };
  for (size_t i = 0; i < malformed.size(); ++i) {
    const std::string crl = CrlWithEntries(ca_->cert(), {good, malformed[i]});
    EXPECT_THAT(RevocationIndex::FromCrlDer(crl),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a DER-encoded X.509 CRL")))
        << i;
  }
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
