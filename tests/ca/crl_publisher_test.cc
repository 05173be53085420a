// The server's CRL publisher on a real SQLite store: the first CRL at start, a new one when a
// revocation moves the CRL number, none when nothing moved, a re-signed one at half validity,
// the PEM file beside the data, and the metrics. RunOne() drives it; no thread, no sleeps.
#include "ca/crl_publisher.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_format.h"
#include "ca/cert_issuer.h"
#include "ca/crl_builder.h"
#include "common/crl.h"
#include "common/files.h"
#include "common/random.h"
#include "common/x509.h"
#include "sql/store.h"
#include "tests/support/databases.h"
#include "tests/support/fake_clock.h"
#include "tests/support/status_matchers.h"
#include "tests/support/temp_dir.h"

namespace meshid {
namespace {

using ::meshid::testing::Backend;
using ::meshid::testing::FakeClock;
using ::meshid::testing::StatusIs;
using ::meshid::testing::TempDir;
using ::meshid::testing::TestDatabase;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

class CrlPublisherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = TestDatabase::Create(Backend::kSqlite);
    ASSERT_NE(db_, nullptr);
    auto store = OpenStore(db_->url(), clock_, MakeNullLogger());
    ASSERT_OK(store.status());
    store_ = *std::move(store);
    SelfSignedOptions options;
    options.data_dir = dir_.path();
    auto authority = LoadOrCreateSelfSignedAuthority(options, clock_, random_);
    ASSERT_OK(authority.status());
    authority_ = *authority;
    authorities_ = std::make_shared<AuthoritySource>(*CertIssuer::Create(authority_, clock_, random_));
  }

  // A certificate of the ledger signed by the authority, valid for 10 hours from now.
  std::string Issue(int n) {
    IssuanceRecord r;
    r.serial_hex = absl::StrFormat("%X", 0x5000 + n);  // BN_bn2hex form, as the CA records serials
    r.spiffe_id = "spiffe://cluster.local/ns/default/sa/web";
    r.not_before = clock_.Now();
    r.not_after = clock_.Now() + absl::Hours(10);
    r.public_key_sha256 = std::string(64, 'a');
    r.issuer_serial_hex = SerialHex(authority_->cert.get());
    r.auth_method = "jwt";
    r.issued_at = clock_.Now();
    EXPECT_OK(store_->RecordIssuances({r}));
    return r.serial_hex;
  }

  CrlPublisherOptions Options() {
    CrlPublisherOptions options;
    options.validity = absl::Hours(24);
    options.output_file = dir_.path() + "/crl.pem";
    return options;
  }

  FakeClock clock_;
  OpenSslRandom random_;
  TempDir dir_;
  std::unique_ptr<TestDatabase> db_;
  std::unique_ptr<Store> store_;
  std::shared_ptr<const SigningAuthority> authority_;
  std::shared_ptr<AuthoritySource> authorities_;
  MetricsRegistry metrics_;
};

TEST_F(CrlPublisherTest, PublishesAtStartAndOnEveryRevocation) {
  auto publisher = CrlPublisher::Create(authorities_, *store_, clock_, metrics_, MakeNullLogger(), Options());
  ASSERT_OK(publisher.status());
  auto first = (*publisher)->current();
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(first->number, *store_->CrlNumber());
  // thisUpdate backdated by the clock skew the CA allows, nextUpdate a validity after now.
  EXPECT_EQ(first->this_update, clock_.Now() - kCrlClockSkew);
  EXPECT_EQ(first->next_update - first->this_update, absl::Hours(24) + kCrlClockSkew);
  auto info = VerifyCrl(first->der, authority_->cert.get(), clock_.Now());
  ASSERT_OK(info.status());
  EXPECT_THAT(info->revoked, IsEmpty());

  const std::string serial = Issue(1);
  Issue(2);
  clock_.Advance(absl::Seconds(30));
  EXPECT_EQ(*(*publisher)->RunOne(), false) << "nothing revoked yet";
  ASSERT_OK(store_->Revoke({serial}, {RevocationReason::kKeyCompromise, "ops@host", clock_.Now()}).status());
  EXPECT_EQ(*(*publisher)->RunOne(), true);
  auto second = (*publisher)->current();
  EXPECT_EQ(second->number, first->number + 1);
  info = VerifyCrl(second->der, authority_->cert.get(), clock_.Now());
  ASSERT_OK(info.status());
  EXPECT_THAT(info->revoked, ElementsAre(serial));

  // The file beside the data is the same CRL, in PEM.
  auto pem = ReadFile(dir_.path() + "/crl.pem");
  ASSERT_OK(pem.status());
  EXPECT_EQ(*CrlDerFromPem(*pem), second->der);
  EXPECT_EQ(*(*publisher)->RunOne(), false);

  EXPECT_THAT(metrics_.RenderPrometheus(), HasSubstr(absl::StrCat("meshid_ca_crl_number ", second->number)));
  EXPECT_THAT(metrics_.RenderPrometheus(), HasSubstr("meshid_ca_crl_entries 1"));
  EXPECT_THAT(metrics_.RenderPrometheus(), HasSubstr("meshid_ca_crl_builds_total 2"));
}

TEST_F(CrlPublisherTest, ResignsAtHalfValidityAndDropsExpiredEntries) {
  const std::string serial = Issue(1);
  ASSERT_OK(store_->Revoke({serial}, {RevocationReason::kSuperseded, "ops@host", clock_.Now()}).status());
  auto publisher = CrlPublisher::Create(authorities_, *store_, clock_, metrics_, MakeNullLogger(), Options());
  ASSERT_OK(publisher.status());
  auto first = (*publisher)->current();
  EXPECT_THAT(VerifyCrl(first->der, authority_->cert.get(), clock_.Now())->revoked, ElementsAre(serial));

  clock_.Advance(absl::Hours(11));  // the certificate (10 h) expired; the CRL is not half through yet
  EXPECT_EQ(*(*publisher)->RunOne(), false);
  clock_.Advance(absl::Hours(1));  // 12 h: half of 24 h
  EXPECT_EQ(*(*publisher)->RunOne(), true);
  auto second = (*publisher)->current();
  EXPECT_EQ(second->number, first->number) << "same revocations, same number";
  EXPECT_EQ(second->this_update, clock_.Now() - kCrlClockSkew);
  EXPECT_THAT(VerifyCrl(second->der, authority_->cert.get(), clock_.Now())->revoked, IsEmpty());
}

// A reload of the signing material (ca/reloader.h): the next poll signs with the new certificate,
// under the same number, and says which material signed it.
TEST_F(CrlPublisherTest, SignsAgainWhenTheSigningMaterialIsReplaced) {
  auto publisher = CrlPublisher::Create(authorities_, *store_, clock_, metrics_, MakeNullLogger(), Options());
  ASSERT_OK(publisher.status());
  auto first = (*publisher)->current();
  EXPECT_EQ(first->signer, authority_);
  EXPECT_EQ(*(*publisher)->RunOne(), false);

  TempDir other_dir;
  SelfSignedOptions options;
  options.data_dir = other_dir.path();
  auto next = LoadOrCreateSelfSignedAuthority(options, clock_, random_);
  ASSERT_OK(next.status());
  authorities_->Replace(*CertIssuer::Create(*next, clock_, random_));
  EXPECT_EQ(*(*publisher)->RunOne(), true);
  auto second = (*publisher)->current();
  EXPECT_EQ(second->signer, *next);
  EXPECT_EQ(second->number, first->number);
  EXPECT_OK(VerifyCrl(second->der, (*next)->cert.get(), clock_.Now()).status());
  EXPECT_FALSE(VerifyCrl(second->der, authority_->cert.get(), clock_.Now()).ok());
  EXPECT_EQ(*(*publisher)->RunOne(), false) << "signed once per replacement";
}

TEST_F(CrlPublisherTest, BadOptionsAreRefused) {
  CrlPublisherOptions options = Options();
  options.validity = absl::Seconds(30);
  EXPECT_THAT(CrlPublisher::Create(authorities_, *store_, clock_, metrics_, MakeNullLogger(), options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("validity")));
  options = Options();
  options.output_file = dir_.path() + "/no/such/dir/crl.pem";
  EXPECT_THAT(CrlPublisher::Create(authorities_, *store_, clock_, metrics_, MakeNullLogger(), options),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("no/such/dir")));
}

}  // namespace
}  // namespace meshid
