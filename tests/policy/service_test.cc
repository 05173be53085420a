// The policy stream over real gRPC in one process: the server's store poller (a version that
// does not compile is never served), the service toward a PolicyStreamClient (ACK, NACK, the
// observer's events, authentication, shutdown), and status reports into the store.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/logging.h"
#include "policy/client.h"
#include "policy/server.h"
#include "sql/store.h"
#include "tests/support/databases.h"
#include "tests/support/fake_clock.h"
#include "tests/support/poll.h"

namespace meshid::policy {
namespace {

using testing::Backend;
using testing::Eventually;
using testing::FakeClock;
using ::testing::HasSubstr;
using testing::TestDatabase;

StoredPolicyDocument Doc(const std::string& name, const std::string& spec = "{}") {
  return {"AuthorizationPolicy", "demo", name,
          absl::StrCat("apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: ", name,
                       ", namespace: demo}\nspec: ", spec, "\n"),
          "test.yaml:1"};
}

int64_t Commit(Store& store, std::vector<StoredPolicyDocument> docs) {
  PolicyVersionInfo info;
  info.created_at = absl::FromUnixSeconds(1'800'000'000);
  info.digest = PolicyDigest(docs);
  auto v = store.CommitPolicyVersion(*store.PolicyHeadVersion(), info, docs);
  EXPECT_TRUE(v.ok()) << v.status();
  return v.value_or(0);
}

PolicySnapshotPtr Snapshot(int64_t version) {
  PolicyVersion v;
  v.info.version = version;
  v.documents = {Doc(absl::StrCat("p", version))};
  return MakePolicySnapshot(v);
}

class PolicyServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = TestDatabase::Create(Backend::kSqlite);
    auto store = OpenStore(db_->url(), SystemClock::Instance(), MakeNullLogger());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }

  // Serves `service` on a loopback port; returns the address.
  std::string Serve(grpc::Service* service) {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service);
    grpc_server_ = builder.BuildAndStart();
    EXPECT_NE(port, 0);
    return absl::StrCat("127.0.0.1:", port);
  }

  std::unique_ptr<PolicyStreamClient> Client(const std::string& address, PolicyStreamClient::Apply apply,
                                             const std::string& id = "proxy-1") {
    PolicyStreamClientOptions options;
    options.node = {id, "hello", "demo"};
    options.initial_backoff = absl::Milliseconds(20);
    options.max_backoff = absl::Milliseconds(100);
    upstreams_.push_back(std::make_unique<xds::InsecureUpstream>(
        address, xds::StreamChannelArguments(kMaxPolicyMessageBytes), "test server"));
    auto client =
        PolicyStreamClient::Create(std::move(options), *upstreams_.back(), std::move(apply), nullptr, random_, logger_);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? std::move(*client) : nullptr;
  }

  void TearDown() override {
    if (grpc_server_) grpc_server_->Shutdown(std::chrono::system_clock::now());
  }

  std::unique_ptr<TestDatabase> db_;
  std::unique_ptr<Store> store_;
  std::vector<std::unique_ptr<xds::InsecureUpstream>> upstreams_;  // outlive the clients of a test
  FakeClock clock_;
  MetricsRegistry metrics_;
  OpenSslRandom random_;
  LoggerPtr logger_ = MakeNullLogger();
  // Served objects outlive the gRPC server (shut down in TearDown, destroyed first).
  xds::ResourcePublisher publisher_{{std::string(kPolicySnapshotName)}};
  std::unique_ptr<PolicyDistributionService> service_;
  std::unique_ptr<PolicyDistributionServer> server_;
  std::unique_ptr<grpc::Server> grpc_server_;
};

TEST_F(PolicyServiceTest, TheServerServesTheNewestVersionThatCompilesAndNothingElse) {
  PolicyDistributionServerOptions options;
  options.poll_interval = absl::Hours(1);  // the test polls by hand
  auto created = PolicyDistributionServer::Create(options, *store_, *store_, nullptr, clock_, metrics_, logger_);
  ASSERT_TRUE(created.ok()) << created.status();
  server_ = std::move(*created);
  auto& server = server_;
  EXPECT_EQ(*server->PollOnce(), 0) << "nothing applied yet";

  Commit(*store_, {Doc("a")});
  EXPECT_EQ(*server->PollOnce(), 1);
  // A version that does not validate (written by something other than `meshid apply`).
  Commit(*store_, {Doc("a"), Doc("b", "{action: SOMETIMES}")});
  auto bad = server->PollOnce();
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("version 2 is not valid here, still serving version 1"));
  EXPECT_THAT(bad.status().message(), HasSubstr("spec.action"));
  EXPECT_EQ(*server->PollOnce(), 1) << "the bad version is not retried on every poll";
  EXPECT_THAT(metrics_.RenderPrometheus(), HasSubstr("meshid_policy_version 1"));

  Commit(*store_, {Doc("a"), Doc("c")});
  EXPECT_EQ(*server->PollOnce(), 3);
  EXPECT_THAT(metrics_.RenderPrometheus(), HasSubstr("meshid_policy_version 3"));
}

TEST_F(PolicyServiceTest, AClientAppliesAcksNacksAndTheObserverSeesIt) {
  absl::Mutex mu;
  std::vector<PolicyStreamEvent> events;
  PolicyDistributionOptions options;
  options.metrics_prefix = "test_policy";
  options.observer = [&](const PolicyStreamEvent& e) {
    absl::MutexLock lock(&mu);
    events.push_back(e);
  };
  service_ = PolicyDistributionService::Create(options, publisher_, metrics_, random_, logger_);
  auto& service = service_;
  auto& publisher = publisher_;
  std::string address = Serve(service->service());

  absl::Mutex applied_mu;
  std::vector<int64_t> applied;
  auto client = Client(address, [&](const PolicySnapshotPtr& s) -> absl::Status {
    absl::MutexLock lock(&applied_mu);
    applied.push_back(s->version());
    if (s->version() == 2) return absl::FailedPreconditionError("key set unavailable");
    return absl::OkStatus();
  });
  auto last_event = [&](PolicyStreamEvent::Kind kind) -> std::optional<PolicyStreamEvent> {
    absl::MutexLock lock(&mu);
    for (auto it = events.rbegin(); it != events.rend(); ++it) {
      if (it->kind == kind) return *it;
    }
    return std::nullopt;
  };
  ASSERT_TRUE(Eventually([&] { return last_event(PolicyStreamEvent::Kind::kConnected).has_value(); }));
  auto connected = *last_event(PolicyStreamEvent::Kind::kConnected);
  EXPECT_EQ(connected.node.id, "proxy-1");
  EXPECT_EQ(connected.node.service, "hello");
  EXPECT_EQ(connected.node.namespace_, "demo");

  PublishPolicySnapshot(publisher, *Snapshot(1));
  ASSERT_TRUE(Eventually([&] { return client->state().applied_version == 1; }));
  ASSERT_TRUE(Eventually([&] { return last_event(PolicyStreamEvent::Kind::kAcked).has_value(); }));
  EXPECT_EQ(last_event(PolicyStreamEvent::Kind::kAcked)->applied_version, 1);
  EXPECT_TRUE(client->state().connected);

  PublishPolicySnapshot(publisher, *Snapshot(2));
  ASSERT_TRUE(Eventually([&] { return last_event(PolicyStreamEvent::Kind::kNacked).has_value(); }));
  auto nacked = *last_event(PolicyStreamEvent::Kind::kNacked);
  EXPECT_EQ(nacked.rejected_version, 2);
  EXPECT_EQ(nacked.applied_version, 1);
  EXPECT_EQ(nacked.last_error, "key set unavailable");
  EXPECT_EQ(client->state().applied_version, 1);
  EXPECT_EQ(client->state().rejected_version, 2);

  PublishPolicySnapshot(publisher, *Snapshot(3));
  ASSERT_TRUE(Eventually([&] { return client->state().applied_version == 3; }));
  // The client's state changes before its ACK reaches the server: wait for the server's view.
  ASSERT_TRUE(Eventually([&] { return last_event(PolicyStreamEvent::Kind::kAcked)->applied_version == 3; }));
  {
    absl::MutexLock lock(&applied_mu);
    EXPECT_EQ(applied, (std::vector<int64_t>{1, 2, 3})) << "version 2 was offered once, never again";
  }
  EXPECT_EQ(service->open_streams(), 1);
  std::string metrics = metrics_.RenderPrometheus();
  EXPECT_THAT(metrics, HasSubstr("test_policy_acks_total 2"));
  EXPECT_THAT(metrics, HasSubstr("test_policy_nacks_total 1"));

  // Shutdown ends the stream; the client notices and keeps its policy.
  service->Shutdown();
  ASSERT_TRUE(Eventually([&] { return last_event(PolicyStreamEvent::Kind::kClosed).has_value(); }));
  ASSERT_TRUE(Eventually([&] { return !client->state().connected; }));
  EXPECT_EQ(client->state().applied_version, 3);
  client.reset();
  // The stream emits kClosed before it unregisters, both in gRPC's OnDone.
  EXPECT_TRUE(Eventually([&] { return service->open_streams() == 0; }));
}

TEST_F(PolicyServiceTest, AReconnectingClientGetsTheCurrentVersionWithoutReapplyingIt) {
  service_ = PolicyDistributionService::Create({}, publisher_, metrics_, random_, logger_);
  std::string address = Serve(service_->service());
  PublishPolicySnapshot(publisher_, *Snapshot(4));
  std::atomic<int> applies{0};
  auto client = Client(address, [&](const PolicySnapshotPtr&) {
    ++applies;
    return absl::OkStatus();
  });
  ASSERT_TRUE(Eventually([&] { return client->state().applied_version == 4; }));
  client->Reconnect();
  // The new stream is answered with version 4 again, which the client ACKs without applying.
  ASSERT_TRUE(
      Eventually([&] { return metrics_.RenderPrometheus().find("meshid_policy_acks_total 2") != std::string::npos; }));
  EXPECT_EQ(applies.load(), 1);
}

TEST_F(PolicyServiceTest, CallersMustAuthenticateWhenTheServiceSaysSo) {
  PublishPolicySnapshot(publisher_, *Snapshot(1));
  std::atomic<int> attempts{0};
  PolicyDistributionOptions options;
  options.authenticate = [&](const PolicyCaller& caller) -> absl::StatusOr<std::string> {
    ++attempts;
    EXPECT_FALSE(caller.tls);
    return absl::UnauthenticatedError("no client certificate and no token");
  };
  service_ = PolicyDistributionService::Create(options, publisher_, metrics_, random_, logger_);
  std::string address = Serve(service_->service());
  auto client = Client(address, [](const PolicySnapshotPtr&) { return absl::OkStatus(); });
  ASSERT_TRUE(Eventually([&] { return attempts.load() >= 2; })) << "the client retries";
  EXPECT_EQ(client->state().applied_version, 0);
  EXPECT_FALSE(client->state().connected);
}

TEST_F(PolicyServiceTest, StatusReportsLandInTheStoreAndBadOnesAreRefused) {
  PolicyDistributionServerOptions options;
  options.poll_interval = absl::Hours(1);
  auto created = PolicyDistributionServer::Create(
      options, *store_, *store_,
      [](const PolicyCaller&) -> absl::StatusOr<std::string> { return std::string("spiffe://td/agent"); }, clock_,
      metrics_, logger_);
  ASSERT_TRUE(created.ok());
  server_ = std::move(*created);
  std::string address = Serve(server_->service());
  auto stub = meshid::policy::v1::PolicyDistributionService::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));

  meshid::policy::v1::PolicyStatusReport report;
  report.set_agent_id("node-1");
  report.set_applied_version(3);
  auto* p = report.add_proxies();
  p->set_proxy_id("hello-b.demo~vm~1");
  p->set_service("hello-b");
  p->set_namespace_("demo");
  p->set_applied_version(2);
  p->set_rejected_version(3);
  p->set_last_error("key set unavailable");
  p->set_connected(true);
  p->set_changed_at_unix_micros(absl::ToUnixMicros(clock_.Now() - absl::Seconds(5)));
  meshid::policy::v1::PolicyStatusReportResponse response;
  {
    grpc::ClientContext context;
    ASSERT_TRUE(stub->ReportStatus(&context, report, &response).ok());
  }
  auto rows = *store_->ListPolicyStatus();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].proxy_id, "");
  EXPECT_EQ(rows[0].applied_version, 3);
  EXPECT_EQ(rows[0].reporter, "spiffe://td/agent");
  EXPECT_EQ(rows[0].reported_at, clock_.Now());
  EXPECT_EQ(rows[1].proxy_id, "hello-b.demo~vm~1");
  EXPECT_EQ(rows[1].rejected_version, 3);
  EXPECT_EQ(rows[1].last_error, "key set unavailable");
  EXPECT_EQ(rows[1].changed_at, clock_.Now() - absl::Seconds(5));

  *report.add_proxies() = report.proxies(0);  // the same proxy twice
  grpc::ClientContext context;
  grpc::Status status = stub->ReportStatus(&context, report, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("listed twice"));
  EXPECT_EQ(store_->ListPolicyStatus()->size(), 2u) << "the refused report changed nothing";
}

}  // namespace
}  // namespace meshid::policy
