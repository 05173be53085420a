// The steps of a staged CA rotation as pure decisions (ca/rotation_plan.h): every transition,
// each step run twice (already), every refusal with its message saying what to run next, who
// holds back activation (an offline agent does, a disconnected proxy does not, a row without a
// trust bundle cannot validate), and the wait for certificates signed before activation.
#include "ca/rotation_plan.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "ca/rotation_material.h"
#include "tests/support/certs.h"
#include "tests/support/status_matchers.h"

namespace meshid {
namespace {

using ::meshid::testing::StatusIs;
using ::meshid::testing::TestCa;
using ::testing::AllOf;
using ::testing::HasSubstr;

const absl::Time kT0 = absl::FromUnixSeconds(1'800'000'000);

class RotationPlanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto old_root = TestCa::Create();
    auto new_root = TestCa::Create();
    ASSERT_OK(old_root.status());
    ASSERT_OK(new_root.status());
    old_root_pem_ = old_root->cert_pem();
    new_root_pem_ = new_root->cert_pem();
    old_fingerprint_ = *RootFingerprintsOfPem(old_root_pem_);
    new_fingerprint_ = *RootFingerprintsOfPem(new_root_pem_);
  }

  // A record in `phase`, rotating from the old root to the new one.
  CaRotationRecord Record(CaRotationPhase phase, const std::string& kind = kCaRotationRoot) const {
    CaRotationRecord r;
    r.rotation = 3;
    r.kind = kind;
    r.from = StoredCaMaterial{old_root_pem_, old_root_pem_, old_root_pem_, "/ca/old-key.pem"};
    r.to = StoredCaMaterial{new_root_pem_, new_root_pem_, new_root_pem_, "/ca/new-key.pem"};
    r.actor = "alice";
    r.phase = phase;
    r.prepared_at = kT0;
    if (phase >= CaRotationPhase::kPublished) r.published_at = kT0 + absl::Hours(1);
    if (phase >= CaRotationPhase::kActive) r.activated_at = kT0 + absl::Hours(2);
    if (phase >= CaRotationPhase::kRetired) r.retired_at = kT0 + absl::Hours(3);
    return r;
  }

  static PolicyStatusRow Row(const std::string& agent, const std::string& proxy, const std::string& bundle,
                             bool connected = true) {
    PolicyStatusRow row;
    row.agent_id = agent;
    row.proxy_id = proxy;
    row.trust_bundle = bundle;
    row.connected = connected;
    return row;
  }

  std::string Both() const {
    return old_fingerprint_ < new_fingerprint_ ? absl::StrCat(old_fingerprint_, ",", new_fingerprint_)
                                               : absl::StrCat(new_fingerprint_, ",", old_fingerprint_);
  }

  std::string old_root_pem_, new_root_pem_, old_fingerprint_, new_fingerprint_;
};

TEST_F(RotationPlanTest, TheFirstPrepareStartsRotationOneFromEachServersOwnFiles) {
  auto step = PlanPrepare(std::nullopt, kCaRotationRoot, "/ca/new-key.pem", kT0, "alice");
  ASSERT_OK(step.status());
  EXPECT_FALSE(step->already);
  EXPECT_EQ(step->record.rotation, 1);
  EXPECT_EQ(step->record.phase, CaRotationPhase::kPrepared);
  EXPECT_EQ(step->record.kind, kCaRotationRoot);
  EXPECT_TRUE(step->record.from.empty());
  EXPECT_EQ(step->record.to.key_ref, "/ca/new-key.pem");
  EXPECT_EQ(step->record.actor, "alice");
  EXPECT_EQ(step->record.prepared_at, kT0);
  EXPECT_EQ(step->record.published_at, absl::InfinitePast());
}

TEST_F(RotationPlanTest, PrepareAfterARetiredRotationStartsTheNextFromItsMaterial) {
  const CaRotationRecord retired = Record(CaRotationPhase::kRetired);
  auto step = PlanPrepare(retired, kCaRotationIntermediate, "/ca/int-key.pem", kT0 + absl::Hours(5), "bob");
  ASSERT_OK(step.status());
  EXPECT_FALSE(step->already);
  EXPECT_EQ(step->record.rotation, 4);
  EXPECT_EQ(step->record.from, retired.to);
  EXPECT_EQ(step->record.kind, kCaRotationIntermediate);
  EXPECT_EQ(step->record.to.key_ref, "/ca/int-key.pem");
  EXPECT_FALSE(step->record.forced);
  EXPECT_EQ(step->record.prepared_at, kT0 + absl::Hours(5));
}

TEST_F(RotationPlanTest, PrepareAgainWithTheSameKindAndKeyIsAlready) {
  const CaRotationRecord prepared = Record(CaRotationPhase::kPrepared);
  auto step = PlanPrepare(prepared, kCaRotationRoot, "/ca/new-key.pem", kT0 + absl::Hours(1), "bob");
  ASSERT_OK(step.status());
  EXPECT_TRUE(step->already);
  EXPECT_EQ(step->record, prepared);
}

TEST_F(RotationPlanTest, PrepareRefusesAnotherKeyOrKindWhileOneIsPrepared) {
  const CaRotationRecord prepared = Record(CaRotationPhase::kPrepared);
  EXPECT_THAT(PlanPrepare(prepared, kCaRotationRoot, "/ca/other-key.pem", kT0, "bob"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("rotation 3 is prepared"), HasSubstr("--key /ca/new-key.pem"),
                             HasSubstr("meshid ca rotate publish"))));
  EXPECT_THAT(PlanPrepare(prepared, kCaRotationIntermediate, "/ca/new-key.pem", kT0, "bob"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("--kind root")));
}

TEST_F(RotationPlanTest, PrepareRefusesWhileARotationIsPublishedOrActive) {
  EXPECT_THAT(PlanPrepare(Record(CaRotationPhase::kPublished), kCaRotationRoot, "/k", kT0, "bob"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("rotation 3 is published"), HasSubstr("meshid ca rotate activate"),
                             HasSubstr("before preparing another"))));
  EXPECT_THAT(PlanPrepare(Record(CaRotationPhase::kActive), kCaRotationRoot, "/k", kT0, "bob"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("rotation 3 is active"),
                             HasSubstr("finish it with `meshid ca rotate retire` before preparing another"))));
}

TEST_F(RotationPlanTest, PrepareRefusesABadKindOrNoKey) {
  EXPECT_THAT(PlanPrepare(std::nullopt, "leaf", "/k", kT0, "a"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--kind")));
  EXPECT_THAT(PlanPrepare(std::nullopt, kCaRotationRoot, "", kT0, "a"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--key")));
}

TEST_F(RotationPlanTest, PublishMovesPreparedToPublishedOnce) {
  auto step = PlanPublish(Record(CaRotationPhase::kPrepared), kT0 + absl::Hours(1), "bob");
  ASSERT_OK(step.status());
  EXPECT_FALSE(step->already);
  EXPECT_EQ(step->record.phase, CaRotationPhase::kPublished);
  EXPECT_EQ(step->record.published_at, kT0 + absl::Hours(1));
  EXPECT_EQ(step->record.actor, "bob");
  EXPECT_EQ(step->record.to, Record(CaRotationPhase::kPrepared).to);

  for (CaRotationPhase phase : {CaRotationPhase::kPublished, CaRotationPhase::kActive, CaRotationPhase::kRetired}) {
    auto again = PlanPublish(Record(phase), kT0 + absl::Hours(9), "carol");
    ASSERT_OK(again.status());
    EXPECT_TRUE(again->already);
    EXPECT_EQ(again->record, Record(phase));
  }
  EXPECT_THAT(
      PlanPublish(std::nullopt, kT0, "bob"),
      StatusIs(absl::StatusCode::kFailedPrecondition, "no rotation is prepared: run `meshid ca rotate prepare` first"));
}

TEST_F(RotationPlanTest, APhaseNeverDatesBeforeThePreviousOne) {
  auto step = PlanPublish(Record(CaRotationPhase::kPrepared), kT0 - absl::Minutes(1), "bob");
  ASSERT_OK(step.status());
  EXPECT_EQ(step->record.published_at, kT0);
}

TEST_F(RotationPlanTest, ActivateNeedsPublishedAndEveryAgentAndProxy) {
  const std::vector<AdoptionRow> none;
  EXPECT_THAT(PlanActivate(std::nullopt, none, false, kT0, "bob"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("run `meshid ca rotate prepare` first")));
  EXPECT_THAT(PlanActivate(Record(CaRotationPhase::kPrepared), none, false, kT0, "bob"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "rotation 3 is prepared, not published: run `meshid ca rotate publish` first"));

  const CaRotationRecord published = Record(CaRotationPhase::kPublished);
  const std::vector<PolicyStatusRow> rows = {Row("node-a", "", Both()), Row("node-b", "", old_fingerprint_)};
  const auto adoption = RotationAdoption(published, rows);
  EXPECT_THAT(PlanActivate(published, adoption, false, kT0 + absl::Hours(2), "bob"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("1 of 2 agents and proxies cannot validate the new CA yet (node-b)"),
                             HasSubstr("meshid ca rotate status"), HasSubstr("--force"))));

  auto forced = PlanActivate(published, adoption, true, kT0 + absl::Hours(2), "bob");
  ASSERT_OK(forced.status());
  EXPECT_EQ(forced->record.phase, CaRotationPhase::kActive);
  EXPECT_TRUE(forced->record.forced);
  EXPECT_EQ(forced->record.activated_at, kT0 + absl::Hours(2));

  const std::vector<PolicyStatusRow> adopted = {Row("node-a", "", Both()), Row("node-b", "", new_fingerprint_)};
  auto step = PlanActivate(published, RotationAdoption(published, adopted), false, kT0 + absl::Hours(2), "bob");
  ASSERT_OK(step.status());
  EXPECT_FALSE(step->already);
  EXPECT_FALSE(step->record.forced);
  EXPECT_EQ(step->record.phase, CaRotationPhase::kActive);

  // With --force but nothing missing, the record is not marked forced.
  auto needless = PlanActivate(published, RotationAdoption(published, adopted), true, kT0 + absl::Hours(2), "bob");
  ASSERT_OK(needless.status());
  EXPECT_FALSE(needless->record.forced);

  for (CaRotationPhase phase : {CaRotationPhase::kActive, CaRotationPhase::kRetired}) {
    auto again = PlanActivate(Record(phase), adoption, false, kT0 + absl::Hours(9), "carol");
    ASSERT_OK(again.status());
    EXPECT_TRUE(again->already);
    EXPECT_EQ(again->record, Record(phase));
  }
}

TEST_F(RotationPlanTest, ActivateNamesAtMostThreeRowsThatHoldItBack) {
  const CaRotationRecord published = Record(CaRotationPhase::kPublished);
  std::vector<PolicyStatusRow> rows;
  for (int i = 0; i < 5; ++i) rows.push_back(Row(absl::StrCat("node-", i), "", old_fingerprint_));
  rows.push_back(Row("node-0", "web-1", old_fingerprint_));
  EXPECT_THAT(PlanActivate(published, RotationAdoption(published, rows), false, kT0, "bob"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("6 of 6 agents and proxies cannot validate the new CA yet (node-0, node-1, node-2, "
                                 "...)")));
}

TEST_F(RotationPlanTest, AdoptionCountsOfflineAgentsButNotDisconnectedProxies) {
  const CaRotationRecord published = Record(CaRotationPhase::kPublished);
  const std::vector<PolicyStatusRow> rows = {
      Row("node-a", "", Both()),                        // adopted, still holds the old root
      Row("node-a", "web-1", new_fingerprint_),         // adopted, old root gone
      Row("node-b", "", old_fingerprint_),              // offline agent: its last report
      Row("node-b", "web-2", old_fingerprint_, false),  // disconnected proxy
      Row("node-c", "", ""),                            // an older agent
      Row("node-c", "api-1", ""),                       // a proxy without a ROOTCA ACK
  };
  const auto adoption = RotationAdoption(published, rows);
  ASSERT_EQ(adoption.size(), rows.size());

  EXPECT_EQ(adoption[0].agent_id, "node-a");
  EXPECT_TRUE(adoption[0].can_validate_new_ca);
  EXPECT_TRUE(adoption[0].holds_old_roots);
  EXPECT_TRUE(adoption[0].counts);
  EXPECT_EQ(adoption[0].why, "");

  EXPECT_EQ(adoption[1].proxy_id, "web-1");
  EXPECT_TRUE(adoption[1].can_validate_new_ca);
  EXPECT_FALSE(adoption[1].holds_old_roots);

  EXPECT_FALSE(adoption[2].can_validate_new_ca);
  EXPECT_TRUE(adoption[2].counts);
  EXPECT_EQ(adoption[2].why, "holds 1 root, not the new one");

  EXPECT_FALSE(adoption[3].can_validate_new_ca);
  EXPECT_FALSE(adoption[3].counts);
  EXPECT_THAT(adoption[3].why, HasSubstr("disconnected"));

  EXPECT_FALSE(adoption[4].can_validate_new_ca);
  EXPECT_TRUE(adoption[4].counts);
  EXPECT_THAT(adoption[4].why, HasSubstr("reports no trust bundle"));

  EXPECT_FALSE(adoption[5].can_validate_new_ca);
  EXPECT_TRUE(adoption[5].counts);
  EXPECT_THAT(adoption[5].why, HasSubstr("ROOTCA"));

  EXPECT_FALSE(AdoptionComplete(adoption));
  // Without the offline agent and the rows that report no bundle, the disconnected proxy
  // alone does not hold activation back.
  const std::vector<AdoptionRow> rest = {adoption[0], adoption[1], adoption[3]};
  EXPECT_TRUE(AdoptionComplete(rest));
  EXPECT_TRUE(AdoptionComplete({}));
}

TEST_F(RotationPlanTest, AnIntermediateUnderTheSameRootIsAdoptedAtOnce) {
  CaRotationRecord published = Record(CaRotationPhase::kPublished, kCaRotationIntermediate);
  published.to.root_cert_pem = old_root_pem_;  // a new intermediate under the old root
  const auto adoption = RotationAdoption(published, std::vector<PolicyStatusRow>{Row("node-a", "", old_fingerprint_)});
  ASSERT_EQ(adoption.size(), 1u);
  EXPECT_TRUE(adoption[0].can_validate_new_ca);
  EXPECT_FALSE(adoption[0].holds_old_roots);
}

TEST_F(RotationPlanTest, RetireWaitsForCertificatesSignedBeforeActivationOfARootRotation) {
  EXPECT_THAT(PlanRetire(std::nullopt, 0, kT0, "bob"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("meshid ca rotate prepare")));
  EXPECT_THAT(PlanRetire(Record(CaRotationPhase::kPrepared), 0, kT0, "bob"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("rotation 3 is prepared, not active"), HasSubstr("meshid ca rotate publish"))));
  EXPECT_THAT(PlanRetire(Record(CaRotationPhase::kPublished), 0, kT0, "bob"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "rotation 3 is published, not active: run `meshid ca rotate activate` first"));

  const CaRotationRecord active = Record(CaRotationPhase::kActive);
  EXPECT_TRUE(RetireWaitsForEarlierCertificates(active));
  EXPECT_THAT(PlanRetire(active, 7, kT0 + absl::Hours(3), "bob"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "rotation 3: 7 certificates signed before activation are still valid; retire after they "
                       "expire or are renewed (their agents renew them at half their life)"));
  EXPECT_THAT(PlanRetire(active, 1, kT0 + absl::Hours(3), "bob"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("1 certificate signed before activation is")));

  auto step = PlanRetire(active, 0, kT0 + absl::Hours(3), "bob");
  ASSERT_OK(step.status());
  EXPECT_FALSE(step->already);
  EXPECT_EQ(step->record.phase, CaRotationPhase::kRetired);
  EXPECT_EQ(step->record.retired_at, kT0 + absl::Hours(3));

  auto again = PlanRetire(Record(CaRotationPhase::kRetired), 5, kT0 + absl::Hours(9), "carol");
  ASSERT_OK(again.status());
  EXPECT_TRUE(again->already);
}

TEST_F(RotationPlanTest, RetiringAnIntermediateUnderTheSameRootDoesNotWait) {
  CaRotationRecord active = Record(CaRotationPhase::kActive, kCaRotationIntermediate);
  active.to.root_cert_pem = old_root_pem_;
  EXPECT_FALSE(RetireWaitsForEarlierCertificates(active));
  auto step = PlanRetire(active, 12, kT0 + absl::Hours(3), "bob");
  ASSERT_OK(step.status());
  EXPECT_EQ(step->record.phase, CaRotationPhase::kRetired);

  // The first rotation's `from` is each server's own files, whose roots the record does not
  // hold: the intermediate may be under another root, so it waits.
  active.from = StoredCaMaterial{};
  EXPECT_TRUE(RetireWaitsForEarlierCertificates(active));
  // An intermediate under another root changes the trust bundle: it waits.
  active.from = Record(CaRotationPhase::kActive).from;
  active.to.root_cert_pem = new_root_pem_;
  EXPECT_TRUE(RetireWaitsForEarlierCertificates(active));
}

}  // namespace
}  // namespace meshid
