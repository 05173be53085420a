// The agent's TrustBundleReceiver with real certificates: the rotation rule (a bundle is put in
// force only when it shares a root with the bootstrap file or the bundle in force: old → old + new
// → new, never to a disjoint set), the last good bundle staying in force after a refusal, the
// state file written before use and read back by the next receiver, and the listener hearing each
// change once. A fake clock stamps received_at; nothing sleeps.
#include "trustbundle/receiver.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/files.h"
#include "common/x509.h"
#include "tests/support/certs.h"
#include "tests/support/fake_clock.h"
#include "tests/support/status_matchers.h"
#include "tests/support/temp_dir.h"
#include "tests/trustbundle/test_bundles.h"
#include "trustbundle/wire.h"

namespace meshid::trustbundle {
namespace {

using envoy::service::discovery::v3::DiscoveryResponse;
using ::meshid::testing::FakeClock;
using ::meshid::testing::StatusIs;
using ::meshid::testing::TempDir;
using ::meshid::testing::TestCa;
using ::meshid::testing::WriteTestFile;
using meshid::trustbundle::v1::TrustBundle;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

// The value of the unlabelled series `name` as the monitoring endpoint renders it.
std::string Metric(const MetricsRegistry& metrics, absl::string_view name) {
  for (absl::string_view line : absl::StrSplit(metrics.RenderPrometheus(), '\n')) {
    if (absl::ConsumePrefix(&line, name) && absl::ConsumePrefix(&line, " ")) return std::string(line);
  }
  return "<absent>";
}

class TrustBundleReceiverTest : public ::testing::Test {
 protected:
  void SetUp() override { bootstrap_ = dir_.Write("ca-root.pem", old_.cert_pem()); }

  std::unique_ptr<TrustBundleReceiver> NewReceiver(MetricsRegistry& metrics, const std::string& state_file = "") {
    TrustBundleReceiverOptions options;
    options.bootstrap_file = bootstrap_;
    options.state_file = state_file;
    auto receiver =
        TrustBundleReceiver::Create(options, clock_, metrics, MakeNullLogger(),
                                    [this](const std::shared_ptr<const NodeTrustBundle>& b) { heard_.push_back(b); });
    EXPECT_OK(receiver.status());
    return receiver.ok() ? *std::move(receiver) : nullptr;
  }

  // A receiver with the bundle {old, new} in force.
  std::unique_ptr<TrustBundleReceiver> ReceiverWithOldAndNew(const std::string& state_file = "") {
    auto receiver = NewReceiver(metrics_, state_file);
    if (receiver == nullptr) return nullptr;
    EXPECT_OK(receiver->Apply(Bundle({&old_, &new_})));
    EXPECT_THAT(heard_, SizeIs(1));
    return receiver;
  }

  FakeClock clock_;
  TempDir dir_;
  MetricsRegistry metrics_;
  TestCa old_ = NewCa("old root");
  TestCa new_ = NewCa("new root");
  TestCa foreign_ = NewCa("foreign root");
  std::string bootstrap_;
  std::vector<std::shared_ptr<const NodeTrustBundle>> heard_;
};

TEST_F(TrustBundleReceiverTest, CreateNeedsTheBootstrapFile) {
  auto receiver = TrustBundleReceiver::Create({}, clock_, metrics_, MakeNullLogger(), nullptr);
  EXPECT_THAT(receiver, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bootstrap_file")));
}

TEST_F(TrustBundleReceiverTest, NothingIsInForceBeforeTheFirstBundle) {
  auto receiver = NewReceiver(metrics_);
  ASSERT_NE(receiver, nullptr);
  EXPECT_EQ(receiver->current(), nullptr);
  EXPECT_THAT(heard_, IsEmpty());
  EXPECT_EQ(Metric(metrics_, "meshid_agent_trust_bundle_roots"), "0");
  EXPECT_EQ(Metric(metrics_, "meshid_agent_trust_bundle_updates_total"), "0");
  EXPECT_EQ(Metric(metrics_, "meshid_agent_trust_bundle_rejected_total"), "0");
}

TEST_F(TrustBundleReceiverTest, AFirstBundleSharingTheBootstrapRootIsApplied) {
  auto receiver = NewReceiver(metrics_);
  ASSERT_NE(receiver, nullptr);
  const TrustBundle bundle = Bundle({&old_});
  ASSERT_OK(receiver->Apply(bundle));
  ASSERT_THAT(heard_, SizeIs(1));
  EXPECT_EQ(heard_[0], receiver->current());
  const NodeTrustBundle& held = *receiver->current();
  EXPECT_EQ(held.roots_pem, old_.cert_pem());
  EXPECT_THAT(held.root_der, ::testing::ElementsAre(CertToDer(old_.cert())));
  EXPECT_EQ(held.fingerprint, bundle.fingerprint());
  EXPECT_EQ(held.received_at, clock_.Now());
  EXPECT_EQ(Metric(metrics_, "meshid_agent_trust_bundle_roots"), "1");
  EXPECT_EQ(Metric(metrics_, "meshid_agent_trust_bundle_updates_total"), "1");
}

// The staged rotation: old → old + new (shares old with the bootstrap file) → new (shares new with
// the bundle in force), each heard once; the same bundle again changes nothing.
TEST_F(TrustBundleReceiverTest, RotationOldThenOldAndNewThenNew) {
  auto receiver = NewReceiver(metrics_);
  ASSERT_NE(receiver, nullptr);
  ASSERT_OK(receiver->Apply(Bundle({&old_})));
  clock_.Advance(absl::Minutes(1));
  ASSERT_OK(receiver->Apply(Bundle({&old_, &new_})));
  EXPECT_THAT(receiver->current()->root_der, SizeIs(2));
  EXPECT_EQ(Metric(metrics_, "meshid_agent_trust_bundle_roots"), "2");
  ASSERT_OK(receiver->Apply(Bundle({&old_, &new_})));  // resent: a no-op
  EXPECT_THAT(heard_, SizeIs(2));

  // The bootstrap file still holds only the old root: the new-only bundle is accepted because
  // the bundle in force holds the new root.
  clock_.Advance(absl::Minutes(1));
  ASSERT_OK(receiver->Apply(Bundle({&new_})));
  ASSERT_THAT(heard_, SizeIs(3));
  EXPECT_EQ(heard_[2]->roots_pem, new_.cert_pem());
  EXPECT_EQ(heard_[2]->received_at, clock_.Now());
  EXPECT_EQ(heard_[1]->received_at, clock_.Now() - absl::Minutes(1));
  EXPECT_EQ(Metric(metrics_, "meshid_agent_trust_bundle_roots"), "1");
  EXPECT_EQ(Metric(metrics_, "meshid_agent_trust_bundle_updates_total"), "3");
  EXPECT_EQ(Metric(metrics_, "meshid_agent_trust_bundle_rejected_total"), "0");
}

// A bundle of a root the agent has never trusted, straight away, is refused; the last good one
// stays in force and the listener hears nothing.
TEST_F(TrustBundleReceiverTest, ADisjointBundleIsRefusedAndTheLastGoodStays) {
  auto receiver = NewReceiver(metrics_);
  ASSERT_NE(receiver, nullptr);
  EXPECT_THAT(receiver->Apply(Bundle({&new_})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("shares no root with the trust bundle in force")));
  EXPECT_EQ(receiver->current(), nullptr);

  ASSERT_OK(receiver->Apply(Bundle({&old_, &new_})));
  const auto held = receiver->current();
  EXPECT_THAT(receiver->Apply(Bundle({&foreign_})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(absl::StrCat("shares no root with the trust bundle in force: the bundle's roots are ",
                                              Bundle({&foreign_}).fingerprint()))));
  EXPECT_EQ(receiver->current(), held);
  EXPECT_THAT(heard_, SizeIs(1));
  EXPECT_EQ(Metric(metrics_, "meshid_agent_trust_bundle_roots"), "2");
  EXPECT_EQ(Metric(metrics_, "meshid_agent_trust_bundle_updates_total"), "1");
  EXPECT_EQ(Metric(metrics_, "meshid_agent_trust_bundle_rejected_total"), "2");

  // A malformed bundle is refused naming the field.
  TrustBundle tampered = Bundle({&old_});
  tampered.set_fingerprint("sha256:00");
  EXPECT_THAT(receiver->Apply(tampered), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("fingerprint")));
  EXPECT_EQ(receiver->current(), held);
  EXPECT_EQ(Metric(metrics_, "meshid_agent_trust_bundle_rejected_total"), "3");
}

TEST_F(TrustBundleReceiverTest, AnUnreadableBootstrapFileIsFailedPrecondition) {
  auto receiver = NewReceiver(metrics_);
  ASSERT_NE(receiver, nullptr);
  WriteTestFile(bootstrap_, "garbage");
  EXPECT_THAT(receiver->Apply(Bundle({&old_})), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr(bootstrap_)));
  EXPECT_EQ(receiver->current(), nullptr);
}

// The bootstrap file is re-read for every bundle: an operator who adds the new root to --ca-root
// lets a new-only bundle in.
TEST_F(TrustBundleReceiverTest, TheBootstrapFileIsReReadOnEveryApply) {
  auto receiver = NewReceiver(metrics_);
  ASSERT_NE(receiver, nullptr);
  EXPECT_THAT(receiver->Apply(Bundle({&new_})), StatusIs(absl::StatusCode::kInvalidArgument));
  WriteTestFile(bootstrap_, old_.cert_pem() + new_.cert_pem());
  ASSERT_OK(receiver->Apply(Bundle({&new_})));
  EXPECT_EQ(receiver->current()->roots_pem, new_.cert_pem());
}

TEST_F(TrustBundleReceiverTest, OnResponseDecodesAndApplies) {
  auto receiver = NewReceiver(metrics_);
  ASSERT_NE(receiver, nullptr);
  const TrustBundle bundle = Bundle({&old_, &new_});
  DiscoveryResponse response;
  response.set_type_url(std::string(kTrustBundleTypeUrl));
  response.set_version_info(TrustBundleVersion(bundle));
  auto* any = response.add_resources();
  any->set_type_url(std::string(kTrustBundleTypeUrl));
  any->set_value(bundle.SerializeAsString());
  ASSERT_OK(receiver->OnResponse(response));
  EXPECT_EQ(receiver->current()->fingerprint, bundle.fingerprint());

  response.set_version_info("0000000000000000");
  EXPECT_THAT(receiver->OnResponse(response), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("version_info")));
  EXPECT_EQ(receiver->current()->fingerprint, bundle.fingerprint());
  EXPECT_EQ(Metric(metrics_, "meshid_agent_trust_bundle_rejected_total"), "1");
}

// The bundle in force is kept (PEM, before use) and the next receiver starts with it: after a
// rotation to {old, new}, an agent restarted while the server is unreachable still trusts new.
TEST_F(TrustBundleReceiverTest, TheStateFileIsWrittenAndReadBackAtCreate) {
  const std::string state = dir_.File("state/trust-bundle.pem");
  auto receiver = ReceiverWithOldAndNew(state);
  ASSERT_NE(receiver, nullptr);
  auto kept = ReadFile(state);
  ASSERT_OK(kept.status());
  EXPECT_EQ(*kept, receiver->current()->roots_pem);
  const std::string fingerprint = receiver->current()->fingerprint;
  receiver.reset();
  heard_.clear();

  clock_.Advance(absl::Hours(1));
  MetricsRegistry metrics;
  auto restarted = NewReceiver(metrics, state);
  ASSERT_NE(restarted, nullptr);
  ASSERT_THAT(heard_, SizeIs(1)) << "the listener hears the kept bundle at Create";
  ASSERT_NE(restarted->current(), nullptr);
  EXPECT_EQ(restarted->current(), heard_[0]);
  EXPECT_EQ(restarted->current()->fingerprint, fingerprint);
  EXPECT_EQ(restarted->current()->received_at, clock_.Now());
  EXPECT_EQ(Metric(metrics, "meshid_agent_trust_bundle_roots"), "2");
  EXPECT_EQ(Metric(metrics, "meshid_agent_trust_bundle_updates_total"), "0");

  // From the kept bundle the rotation goes on: new-only is accepted (the kept bundle holds new).
  ASSERT_OK(restarted->Apply(Bundle({&new_})));
  EXPECT_THAT(heard_, SizeIs(2));
  auto rewritten = ReadFile(state);
  ASSERT_OK(rewritten.status());
  EXPECT_EQ(*rewritten, new_.cert_pem());
}

// A kept bundle that no longer shares a root with the bootstrap file (a completed rotation whose
// new root --ca-root does not hold yet) is still trusted: it is how the agent reaches its server.
// One that does not parse is ignored.
TEST_F(TrustBundleReceiverTest, AKeptBundleDisjointFromTheBootstrapFileIsTrustedAndGarbageIgnored) {
  const std::string state = dir_.File("trust-bundle.pem");
  {
    auto receiver = ReceiverWithOldAndNew(state);
    ASSERT_NE(receiver, nullptr);
    ASSERT_OK(receiver->Apply(Bundle({&new_})));  // the rotation retired the old root
  }
  heard_.clear();
  MetricsRegistry metrics;
  auto restarted = NewReceiver(metrics, state);  // --ca-root still holds only the old root
  ASSERT_NE(restarted, nullptr);
  ASSERT_NE(restarted->current(), nullptr);
  EXPECT_EQ(restarted->current()->roots_pem, new_.cert_pem());
  EXPECT_THAT(heard_, SizeIs(1));
  EXPECT_EQ(Metric(metrics, "meshid_agent_trust_bundle_roots"), "1");
  // The next rotation goes on from the kept root.
  EXPECT_OK(restarted->Apply(Bundle({&new_, &foreign_})));
  heard_.clear();

  WriteTestFile(state, "not a bundle");
  MetricsRegistry metrics2;
  auto again = NewReceiver(metrics2, state);
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->current(), nullptr);
  EXPECT_THAT(heard_, IsEmpty());
}

TEST_F(TrustBundleReceiverTest, AStateFileThatCannotBeWrittenKeepsTheBundleOutOfForce) {
  const std::string blocker = dir_.Write("file", "x");
  auto receiver = NewReceiver(metrics_, blocker + "/trust-bundle.pem");  // a file as its directory
  ASSERT_NE(receiver, nullptr);
  EXPECT_THAT(receiver->Apply(Bundle({&old_})),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("keeping the trust bundle in")));
  EXPECT_EQ(receiver->current(), nullptr);
  EXPECT_THAT(heard_, IsEmpty());
}

}  // namespace
}  // namespace meshid::trustbundle
