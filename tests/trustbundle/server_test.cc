// The trust bundle stream end to end over a real gRPC server on a Unix socket:
// TrustBundleDistributionServer → xds::SotwClient → TrustBundleReceiver. A published bundle
// reaches the agent and is ACKed; a re-published one (the rotation's old + new) replaces it on the
// open stream; publishing the bundle already served sends nothing; a bundle that is not canonical
// is not published.
#include "trustbundle/server.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "tests/support/certs.h"
#include "tests/support/fake_clock.h"
#include "tests/support/status_matchers.h"
#include "tests/support/temp_dir.h"
#include "tests/trustbundle/test_bundles.h"
#include "trustbundle/receiver.h"
#include "trustbundle/wire.h"
#include "xds/client.h"
#include "xds/upstream.h"

namespace meshid::trustbundle {
namespace {

using ::meshid::testing::FakeClock;
using ::meshid::testing::StatusIs;
using ::meshid::testing::TempDir;
using ::meshid::testing::TestCa;
using meshid::trustbundle::v1::TrustBundle;
using ::testing::HasSubstr;

class TrustBundleStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    target_ = "unix:" + dir_.File("trustbundle.sock");
    server_ = TrustBundleDistributionServer::Create(nullptr, server_metrics_, MakeNullLogger());
    grpc::ServerBuilder builder;
    builder.AddListeningPort(target_, grpc::InsecureServerCredentials());
    builder.RegisterService(server_->service());
    grpc_server_ = builder.BuildAndStart();
    ASSERT_NE(grpc_server_, nullptr);

    TrustBundleReceiverOptions options;
    options.bootstrap_file = dir_.Write("ca-root.pem", old_.cert_pem());
    options.state_file = dir_.File("trust-bundle.pem");
    auto receiver = TrustBundleReceiver::Create(options, clock_, agent_metrics_, MakeNullLogger(),
                                                [this](const std::shared_ptr<const NodeTrustBundle>& bundle) {
                                                  absl::MutexLock lock(&mu_);
                                                  heard_.push_back(bundle->fingerprint);
                                                });
    ASSERT_OK(receiver.status());
    receiver_ = *std::move(receiver);
    upstream_ = std::make_unique<xds::InsecureUpstream>(target_, xds::StreamChannelArguments(4 << 20), "server");
  }
  void TearDown() override {
    client_.reset();
    if (grpc_server_ != nullptr) {
      server_->Shutdown();
      grpc_server_->Shutdown(std::chrono::system_clock::now());
      grpc_server_->Wait();
    }
  }

  void StartClient() {
    xds::SotwClientOptions options;
    options.node.set_id("agent-1");
    options.description = "trust bundle stream";
    options.initial_backoff = absl::Milliseconds(10);
    options.max_backoff = absl::Milliseconds(50);
    options.on_change = [this] { absl::MutexLock lock(&mu_); };  // wakes waiters to re-check the state
    auto client = xds::SotwClient::Create(
        TrustBundleType(), std::move(options), *upstream_,
        [this](const envoy::service::discovery::v3::DiscoveryResponse& r) { return receiver_->OnResponse(r); }, random_,
        MakeNullLogger());
    ASSERT_OK(client.status());
    client_ = *std::move(client);
  }

  // Waits until the client has applied `version` and the receiver's listener heard `fingerprint`
  // as its latest; the timeout only stops a hung test.
  bool WaitForApplied(const std::string& version, const std::string& fingerprint) {
    absl::MutexLock lock(&mu_);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return client_->state().applied_version == version && !heard_.empty() && heard_.back() == fingerprint;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(30));
  }
  std::vector<std::string> heard() {
    absl::MutexLock lock(&mu_);
    return heard_;
  }

  TempDir dir_;
  FakeClock clock_;
  MetricsRegistry server_metrics_;
  MetricsRegistry agent_metrics_;
  OpenSslRandom random_;
  TestCa old_ = NewCa("old root");
  TestCa new_ = NewCa("new root");
  std::string target_;
  std::unique_ptr<TrustBundleDistributionServer> server_;
  std::unique_ptr<grpc::Server> grpc_server_;
  std::unique_ptr<TrustBundleReceiver> receiver_;
  std::unique_ptr<xds::InsecureUpstream> upstream_;  // outlives the client
  std::unique_ptr<xds::SotwClient> client_;
  absl::Mutex mu_;
  std::vector<std::string> heard_ ABSL_GUARDED_BY(mu_);
};

TEST_F(TrustBundleStreamTest, APublishedBundleAndARepublishedOneReachTheAgent) {
  const TrustBundle first = Bundle({&old_});
  ASSERT_OK(server_->Publish(first));
  StartClient();
  ASSERT_TRUE(WaitForApplied(TrustBundleVersion(first), first.fingerprint()));
  EXPECT_EQ(receiver_->current()->roots_pem, old_.cert_pem());
  EXPECT_EQ(server_->open_streams(), 1);

  // The rotation's next stage, on the open stream.
  const TrustBundle rotated = Bundle({&old_, &new_});
  ASSERT_OK(server_->Publish(rotated));
  ASSERT_TRUE(WaitForApplied(TrustBundleVersion(rotated), rotated.fingerprint()));
  EXPECT_EQ(receiver_->current()->root_der.size(), 2u);
  EXPECT_EQ(receiver_->current()->fingerprint, rotated.fingerprint());

  // And the last: the old root leaves.
  const TrustBundle last = Bundle({&new_});
  ASSERT_OK(server_->Publish(last));
  ASSERT_TRUE(WaitForApplied(TrustBundleVersion(last), last.fingerprint()));
  EXPECT_EQ(receiver_->current()->roots_pem, new_.cert_pem());
  EXPECT_EQ(heard(), (std::vector<std::string>{first.fingerprint(), rotated.fingerprint(), last.fingerprint()}));
  EXPECT_EQ(client_->state().rejected_version, "");
}

TEST_F(TrustBundleStreamTest, PublishingTheSameVersionIsANoOpAndABadBundleIsRefused) {
  const TrustBundle bundle = Bundle({&old_});
  ASSERT_OK(server_->Publish(bundle));
  ASSERT_OK(server_->Publish(bundle));
  StartClient();
  ASSERT_TRUE(WaitForApplied(TrustBundleVersion(bundle), bundle.fingerprint()));

  TrustBundle bad = Bundle({&old_, &new_});
  bad.set_fingerprint("sha256:00");
  EXPECT_THAT(server_->Publish(bad), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("fingerprint")));
  ASSERT_OK(server_->Publish(bundle));  // still the one served
  EXPECT_EQ(client_->state().applied_version, TrustBundleVersion(bundle));
  EXPECT_EQ(heard().size(), 1u);
}

// A bundle the agent may not trust is NACKed on the stream; the last good one stays.
TEST_F(TrustBundleStreamTest, ADisjointBundleIsNackedAndTheLastGoodStays) {
  const TrustBundle good = Bundle({&old_});
  ASSERT_OK(server_->Publish(good));
  StartClient();
  ASSERT_TRUE(WaitForApplied(TrustBundleVersion(good), good.fingerprint()));

  const TrustBundle disjoint = Bundle({&new_});
  ASSERT_OK(server_->Publish(disjoint));
  {
    absl::MutexLock lock(&mu_);
    auto nacked = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return client_->state().rejected_version == TrustBundleVersion(disjoint);
    };
    ASSERT_TRUE(mu_.AwaitWithTimeout(absl::Condition(&nacked), absl::Seconds(30)));
  }
  EXPECT_EQ(client_->state().applied_version, TrustBundleVersion(good));
  EXPECT_THAT(client_->state().last_error, HasSubstr("shares no root with the trust bundle in force"));
  EXPECT_EQ(receiver_->current()->fingerprint, good.fingerprint());
}

}  // namespace
}  // namespace meshid::trustbundle
