// The server's side of the registration stream over a real SQLite store and a real gRPC server on
// loopback: each agent gets exactly the entries whose parent it is, a change reaches the agents
// it concerns, and an agent cannot name another's entries.
#include "registration/server.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "common/clock.h"
#include "meshid/registration/v1/registration.grpc.pb.h"
#include "registration/wire.h"
#include "sql/store.h"
#include "tests/support/status_matchers.h"
#include "tests/support/temp_dir.h"

namespace meshid::registration {
namespace {

using envoy::service::discovery::v3::DiscoveryRequest;
using envoy::service::discovery::v3::DiscoveryResponse;
using meshid::registration::v1::EntrySet;
using meshid::registration::v1::RegistrationDistributionService;

constexpr char kNode1[] = "spiffe://cluster.local/ns/istio-system/sa/node-1";
constexpr char kNode2[] = "spiffe://cluster.local/ns/istio-system/sa/node-2";

RegistryEntry Entry(const std::string& name, const std::string& parent) {
  RegistryEntry entry;
  entry.spiffe_id = "spiffe://cluster.local/ns/default/sa/" + name;
  entry.parent_id = parent;
  entry.selectors = {"unix:uid:1000"};
  entry.created_at = absl::Now();
  return entry;
}

class RegistrationServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = OpenStore("sqlite://" + dir_.File("meshid.db"), SystemClock::Instance(), MakeNullLogger());
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    // The test's callers name themselves in the authorization metadata; the real server
    // authenticates client certificates (daemons/server.cc).
    auto authenticate = [](const xds::Caller& caller) -> absl::StatusOr<std::string> {
      for (const auto& value : caller.authorization) {
        if (absl::StartsWith(value, "Bearer spiffe://")) return value.substr(7);
      }
      return absl::UnauthenticatedError("no identity");
    };
    auto server = RegistrationDistributionServer::Create({}, authenticate, *store_, metrics_, MakeNullLogger());
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    server_->Start();  // polls every 250 ms, and at once when an agent without a set subscribes
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(server_->service());
    grpc_ = builder.BuildAndStart();
    ASSERT_NE(grpc_, nullptr);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials());
  }
  void TearDown() override {
    if (grpc_ != nullptr) grpc_->Shutdown(std::chrono::system_clock::now());
  }

  // One agent's stream.
  struct Agent {
    std::unique_ptr<grpc::ClientContext> context = std::make_unique<grpc::ClientContext>();
    std::unique_ptr<grpc::ClientReaderWriter<DiscoveryRequest, DiscoveryResponse>> stream;
    std::string id;

    // Reads the next response and ACKs it.
    absl::StatusOr<EntrySet> Next() {
      DiscoveryResponse response;
      if (!stream->Read(&response)) {
        grpc::Status status = stream->Finish();
        return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
      }
      auto set = DecodeEntrySetResponse(response, id);
      DiscoveryRequest ack;
      ack.set_type_url(std::string(kEntrySetTypeUrl));
      ack.set_version_info(response.version_info());
      ack.set_response_nonce(response.nonce());
      stream->Write(ack);
      return set;
    }
  };
  Agent Connect(const std::string& id, std::vector<std::string> names = {}) {
    Agent agent;
    agent.id = id;
    agent.context->AddMetadata("authorization", "Bearer " + id);
    agent.context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    agent.stream = RegistrationDistributionService::NewStub(channel_)->StreamEntries(agent.context.get());
    DiscoveryRequest first;
    first.set_type_url(std::string(kEntrySetTypeUrl));
    first.mutable_node()->set_id("agent-" + id.substr(id.size() - 6));
    for (auto& name : names) first.add_resource_names(name);
    agent.stream->Write(first);
    return agent;
  }

  ::meshid::testing::TempDir dir_;
  MetricsRegistry metrics_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<RegistrationDistributionServer> server_;
  std::unique_ptr<grpc::Server> grpc_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(RegistrationServerTest, EachAgentGetsOnlyItsOwnEntriesAndChangesArePushed) {
  ASSERT_TRUE(store_->CreateEntry(Entry("db", kNode1)).ok());
  ASSERT_TRUE(store_->CreateEntry(Entry("web", kNode2)).ok());

  Agent node1 = Connect(kNode1);
  auto set = node1.Next();
  ASSERT_TRUE(set.ok()) << set.status();
  ASSERT_EQ(set->entries_size(), 1);
  EXPECT_EQ(set->entries(0).spiffe_id(), "spiffe://cluster.local/ns/default/sa/db");

  Agent node2 = Connect(kNode2);
  set = node2.Next();
  ASSERT_TRUE(set.ok()) << set.status();
  ASSERT_EQ(set->entries_size(), 1);
  EXPECT_EQ(set->entries(0).spiffe_id(), "spiffe://cluster.local/ns/default/sa/web");

  // An agent without entries hears so (an empty set, not silence).
  Agent node3 = Connect("spiffe://cluster.local/ns/istio-system/sa/node-3");
  set = node3.Next();
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->entries_size(), 0);

  // A change for node-1 reaches node-1.
  ASSERT_TRUE(store_->CreateEntry(Entry("cache", kNode1)).ok());
  set = node1.Next();
  ASSERT_TRUE(set.ok()) << set.status();
  ASSERT_EQ(set->entries_size(), 2);
  EXPECT_EQ(set->entries(0).spiffe_id(), "spiffe://cluster.local/ns/default/sa/cache");

  // Its last entry going leaves node-2 an empty set.
  ASSERT_TRUE(store_->DeleteEntry("spiffe://cluster.local/ns/default/sa/web", kNode2).ok());
  set = node2.Next();
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->entries_size(), 0);
}

TEST_F(RegistrationServerTest, AnAgentCannotNameAnotherAgentsEntries) {
  ASSERT_TRUE(store_->CreateEntry(Entry("web", kNode2)).ok());
  Agent node1 = Connect(kNode1, {kNode2});
  auto set = node1.Next();
  EXPECT_EQ(set.status().code(), absl::StatusCode::kNotFound) << set.status();
}

TEST_F(RegistrationServerTest, UnauthenticatedStreamIsRefused) {
  Agent anonymous;
  anonymous.stream = RegistrationDistributionService::NewStub(channel_)->StreamEntries(anonymous.context.get());
  DiscoveryRequest first;
  first.set_type_url(std::string(kEntrySetTypeUrl));
  first.mutable_node()->set_id("x");
  anonymous.stream->Write(first);
  auto set = anonymous.Next();
  EXPECT_EQ(set.status().code(), absl::StatusCode::kUnauthenticated) << set.status();
}

}  // namespace
}  // namespace meshid::registration
