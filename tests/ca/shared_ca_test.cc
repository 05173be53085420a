// Replicas that are one CA (ca/shared_ca.h) on a real SQLite store: the first server records its
// trust anchors and token key, later ones agree or are refused with a message that says what to
// do; a rotation (sets sharing a root) moves the record along.
#include "ca/shared_ca.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/keys.h"
#include "common/random.h"
#include "common/sha256.h"
#include "common/x509.h"
#include "sql/store.h"
#include "tests/support/databases.h"
#include "tests/support/fake_clock.h"
#include "tests/support/signing_authority.h"
#include "tests/support/status_matchers.h"

namespace meshid {
namespace {

using ::meshid::testing::Backend;
using ::meshid::testing::FakeClock;
using ::meshid::testing::MakeAuthority;
using ::meshid::testing::StatusIs;
using ::meshid::testing::TestDatabase;
using ::testing::AllOf;
using ::testing::HasSubstr;

class SharedCaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = TestDatabase::Create(Backend::kSqlite);
    ASSERT_NE(db_, nullptr);
    auto store = OpenStore(db_->url(), clock_, MakeNullLogger());
    ASSERT_OK(store.status());
    store_ = *std::move(store);
  }

  // This server's trust anchors: the roots of `authorities`.
  SharedCaCheck Roots(std::initializer_list<const SigningAuthority*> authorities, std::string source,
                      bool replace = false) {
    SigningAuthority bundle;
    for (const SigningAuthority* a : authorities) bundle.roots.push_back(CopyCert(a->cert.get()));
    return SharedCaCheck{kCaMaterialSigningCa, TrustAnchorFingerprint(bundle), std::move(source), replace};
  }

  absl::Status Agree(const SharedCaCheck& check) { return AgreeWithStoredCa(*store_, check, clock_, MakeNullLogger()); }

  std::string Recorded(absl::string_view kind) {
    auto record = store_->GetCaMaterial(kind);
    return record.ok() && record->has_value() ? (*record)->fingerprint : "(none)";
  }

  FakeClock clock_{absl::FromUnixSeconds(1'800'000'000)};
  OpenSslRandom random_;
  std::unique_ptr<TestDatabase> db_;
  std::unique_ptr<Store> store_;
  std::shared_ptr<const SigningAuthority> root_a_ = MakeAuthority(clock_, random_);
  std::shared_ptr<const SigningAuthority> root_b_ = MakeAuthority(clock_, random_);
};

TEST_F(SharedCaTest, TheFingerprintIsTheSortedSetOfRootHashes) {
  const std::string a = "sha256:" + Sha256Hex(CertToDer(root_a_->cert.get()));
  const std::string b = "sha256:" + Sha256Hex(CertToDer(root_b_->cert.get()));
  EXPECT_EQ(Roots({root_a_.get()}, "").fingerprint, a);
  const std::string both = std::min(a, b) + "," + std::max(a, b);
  EXPECT_EQ(Roots({root_a_.get(), root_b_.get()}, "").fingerprint, both);
  EXPECT_EQ(Roots({root_b_.get(), root_a_.get(), root_b_.get()}, "").fingerprint, both) << "order and repeats";
}

TEST_F(SharedCaTest, ReplicasWithTheSameRootsAgree) {
  ASSERT_OK(Agree(Roots({root_a_.get()}, "plug-in CA in /etc/cacerts")));
  EXPECT_EQ(Recorded(kCaMaterialSigningCa), Roots({root_a_.get()}, "").fingerprint);
  EXPECT_OK(Agree(Roots({root_a_.get()}, "plug-in CA in /srv/cacerts")));
}

TEST_F(SharedCaTest, AReplicaWithItsOwnRootIsRefusedSayingWhatToDo) {
  ASSERT_OK(Agree(Roots({root_a_.get()}, "self-signed root in /var/lib/a")));
  const SharedCaCheck other = Roots({root_b_.get()}, "self-signed root in /var/lib/b");
  EXPECT_THAT(Agree(other),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("shares no root"), HasSubstr(other.fingerprint), HasSubstr("/var/lib/b"),
                             HasSubstr(Recorded(kCaMaterialSigningCa)), HasSubstr("/var/lib/a"),
                             HasSubstr("--cacerts-dir"), HasSubstr("--replace-store-ca"))));
  EXPECT_EQ(Recorded(kCaMaterialSigningCa), Roots({root_a_.get()}, "").fingerprint) << "the record stays";
}

TEST_F(SharedCaTest, ARotationThroughASharedRootMovesTheRecordAlong) {
  ASSERT_OK(Agree(Roots({root_a_.get()}, "phase 1")));
  ASSERT_OK(Agree(Roots({root_a_.get(), root_b_.get()}, "phase 2: old and new")));
  EXPECT_EQ(Recorded(kCaMaterialSigningCa), Roots({root_a_.get(), root_b_.get()}, "").fingerprint);
  ASSERT_OK(Agree(Roots({root_b_.get()}, "phase 3: new")));
  EXPECT_EQ(Recorded(kCaMaterialSigningCa), Roots({root_b_.get()}, "").fingerprint);
  // A replica left behind on the old root alone no longer agrees.
  EXPECT_THAT(Agree(Roots({root_a_.get()}, "left behind")), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(SharedCaTest, ReplacingOnPurposeRecordsTheNewRoot) {
  ASSERT_OK(Agree(Roots({root_a_.get()}, "old")));
  ASSERT_OK(Agree(Roots({root_b_.get()}, "new", /*replace=*/true)));
  EXPECT_EQ(Recorded(kCaMaterialSigningCa), Roots({root_b_.get()}, "").fingerprint);
}

TEST_F(SharedCaTest, TheLocalTokenKeyMustBeTheSameKey) {
  auto key_a = GenerateKey(KeyAlgorithm::kEcdsaP256);
  auto key_b = GenerateKey(KeyAlgorithm::kEcdsaP256);
  ASSERT_OK(key_a.status());
  ASSERT_OK(key_b.status());
  const SharedCaCheck a{kCaMaterialLocalTokenKey, *PublicKeyFingerprint(key_a->get()), "/a/token-signing-key.pem"};
  const SharedCaCheck b{kCaMaterialLocalTokenKey, *PublicKeyFingerprint(key_b->get()), "/b/token-signing-key.pem"};
  ASSERT_OK(Agree(a));
  EXPECT_OK(Agree(a));
  EXPECT_THAT(Agree(b), StatusIs(absl::StatusCode::kFailedPrecondition,
                                 AllOf(HasSubstr("local token key"), HasSubstr("/a/token-signing-key.pem"),
                                       HasSubstr("/b/token-signing-key.pem"), HasSubstr("--no-local-token-issuer"))));
  EXPECT_EQ(Recorded(kCaMaterialLocalTokenKey), a.fingerprint);
  // The token key does not disturb the CA's record, nor the other way round.
  ASSERT_OK(Agree(Roots({root_a_.get()}, "a")));
  EXPECT_EQ(Recorded(kCaMaterialLocalTokenKey), a.fingerprint);
}

TEST_F(SharedCaTest, NothingIsCreatedWhereTheStoreAlreadyHasMaterial) {
  // Nothing recorded: the first server creates its root.
  EXPECT_OK(RefuseToCreateWhatTheStoreHas(*store_, kCaMaterialSigningCa, "/b/ca-key.pem", false));
  ASSERT_OK(Agree(Roots({root_a_.get()}, "self-signed root in /a")));
  EXPECT_THAT(RefuseToCreateWhatTheStoreHas(*store_, kCaMaterialSigningCa, "/b/ca-key.pem", false),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("/b/ca-key.pem does not exist"), HasSubstr("self-signed root in /a"),
                             HasSubstr("ca-cert.pem and ca-key.pem"))));
  EXPECT_OK(RefuseToCreateWhatTheStoreHas(*store_, kCaMaterialSigningCa, "/b/ca-key.pem", /*replace=*/true));
  // Kinds are separate.
  EXPECT_OK(RefuseToCreateWhatTheStoreHas(*store_, kCaMaterialLocalTokenKey, "/b/token-signing-key.pem", false));
}

}  // namespace
}  // namespace meshid
