// The proof that a new xDS stream is declared, not copied: a toy resource type (a
// google.protobuf.Struct standing for, say, registration entries) goes end to end through the
// generic pieces over a real gRPC server on a Unix socket: ResourcePublisher → StreamServer (with
// MakeSotwService: no generated service code) → SotwClient. Push, ACK, a NACK that keeps the last
// good version, a new version after it, Reconnect(), and a restarted server.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "google/protobuf/struct.pb.h"
#include "xds/client.h"
#include "xds/publisher.h"
#include "xds/server.h"

namespace meshid::xds {
namespace {

using envoy::service::discovery::v3::DiscoveryResponse;
using ::testing::ElementsAre;

// ---- the whole declaration of the new stream ----

constexpr char kToyName[] = "toy";

const ResourceType& ToyType() {
  static const ResourceType type{
      .type_url = "type.googleapis.com/google.protobuf.Struct",
      .sotw_method = "/meshid.test.v1.ToyDiscoveryService/StreamToys",
      .sotw = {.wildcard_names = {kToyName}},  // clients subscribe without naming it
  };
  return type;
}

// ---- the test ----

Resource Toy(const std::string& version, const std::string& state) {
  google::protobuf::Struct toy;
  (*toy.mutable_fields())["state"].set_string_value(state);
  Resource resource;
  resource.name = kToyName;
  resource.version = version;
  resource.body = SecretString(toy.SerializeAsString());
  return resource;
}

// What both ends report, waited for under one lock; the timeouts only stop a hung test.
class Recorder {
 public:
  void Add(std::string entry) {
    absl::MutexLock lock(&mu_);
    entries_.push_back(std::move(entry));
  }
  void Touch() { absl::MutexLock lock(&mu_); }  // wakes waiters to re-check client state
  template <typename Predicate>
  bool WaitFor(Predicate done) {
    absl::MutexLock lock(&mu_);
    auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done(entries_); };
    return mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Seconds(30));
  }
  bool WaitForEntry(const std::string& entry) {
    return WaitFor([&](const std::vector<std::string>& entries) {
      return std::find(entries.begin(), entries.end(), entry) != entries.end();
    });
  }
  std::vector<std::string> entries() {
    absl::MutexLock lock(&mu_);
    return entries_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> entries_ ABSL_GUARDED_BY(mu_);
};

std::string Describe(const StreamEvent& e) {
  switch (e.kind) {
    case StreamEvent::Kind::kConnected:
      return absl::StrCat("stream ", e.stream_id, " connected by ", e.node.id(), " running \"",
                          e.client.applied_version, "\"");
    case StreamEvent::Kind::kAcked:
      return absl::StrCat("stream ", e.stream_id, " acked ", e.client.applied_version);
    case StreamEvent::Kind::kNacked:
      return absl::StrCat("stream ", e.stream_id, " nacked ", e.client.rejected_version, ": ", e.client.last_error);
    case StreamEvent::Kind::kClosed:
      return absl::StrCat("stream ", e.stream_id, " closed");
  }
  return "";
}

class ToyStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           absl::StrCat("meshid-xds-", getpid(), "-", testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    target_ = absl::StrCat("unix:", (dir_ / "toy.sock").string());
    upstream_ = std::make_unique<InsecureUpstream>(target_, StreamChannelArguments(1 << 20), "toy server");
  }
  void TearDown() override {
    client_.reset();
    StopServer();
    std::filesystem::remove_all(dir_);
  }

  void StartServer() {
    StreamServerOptions options;
    options.sotw_rpc = "StreamToys";
    options.metrics_prefix = "test_toy";
    options.subject = "toy";
    options.observer = [this](const StreamEvent& e) { server_events_.Add(Describe(e)); };
    streams_ = StreamServer::Create(ToyType(), std::move(options), publisher_, metrics_, random_, MakeNullLogger());
    service_ = MakeSotwService(ToyType(), *streams_);
    grpc::ServerBuilder builder;
    builder.AddListeningPort(target_, grpc::InsecureServerCredentials());
    builder.RegisterService(service_.get());
    grpc_server_ = builder.BuildAndStart();
    ASSERT_NE(grpc_server_, nullptr);
  }
  void StopServer() {
    if (grpc_server_ == nullptr) return;
    streams_->Shutdown();
    grpc_server_->Shutdown(std::chrono::system_clock::now());
    grpc_server_->Wait();
    grpc_server_.reset();
    service_.reset();
    streams_.reset();
  }

  void StartClient() {
    SotwClientOptions options;
    options.node.set_id("toy-client");
    options.description = "toy stream";
    options.initial_backoff = absl::Milliseconds(10);
    options.max_backoff = absl::Milliseconds(50);
    options.on_change = [this] { client_events_.Touch(); };
    auto handler = [this](const DiscoveryResponse& response) -> absl::Status {
      google::protobuf::Struct toy;
      if (response.resources_size() != 1 || !response.resources(0).UnpackTo(&toy)) {
        return absl::InvalidArgumentError("not one toy");
      }
      const std::string state = toy.fields().at("state").string_value();
      client_events_.Add(absl::StrCat("handled ", response.version_info(), " ", state));
      if (state == "broken") return absl::InvalidArgumentError("a broken toy");
      return absl::OkStatus();
    };
    auto client = SotwClient::Create(ToyType(), std::move(options), *upstream_, handler, random_, MakeNullLogger());
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(*client);
  }
  // Waits until the client's state satisfies `done`.
  template <typename Predicate>
  bool WaitForClient(Predicate done) {
    return client_events_.WaitFor([&](const std::vector<std::string>&) { return done(client_->state()); });
  }

  std::filesystem::path dir_;
  std::string target_;
  MetricsRegistry metrics_;
  OpenSslRandom random_;
  ResourcePublisher publisher_{{kToyName}};
  Recorder server_events_;
  Recorder client_events_;
  std::unique_ptr<StreamServer> streams_;
  std::unique_ptr<grpc::Service> service_;
  std::unique_ptr<grpc::Server> grpc_server_;
  std::unique_ptr<InsecureUpstream> upstream_;  // outlives the client
  std::unique_ptr<SotwClient> client_;
};

TEST_F(ToyStreamTest, PushAckNackNewVersionAndReconnect) {
  StartServer();
  ASSERT_TRUE(publisher_.Publish(Toy("1", "new")).ok());
  StartClient();

  // Push and ACK: the client applied version 1 and the server heard its ACK.
  ASSERT_TRUE(WaitForClient([](const SotwClient::State& s) { return s.connected && s.applied_version == "1"; }));
  ASSERT_TRUE(server_events_.WaitForEntry("stream 1 acked 1"));
  EXPECT_EQ(server_events_.entries()[0], "stream 1 connected by toy-client running \"\"");

  // A version the client refuses is NACKed; the last good one stays applied.
  ASSERT_TRUE(publisher_.Publish(Toy("2", "broken")).ok());
  ASSERT_TRUE(WaitForClient([](const SotwClient::State& s) { return s.rejected_version == "2"; }));
  EXPECT_EQ(client_->state().applied_version, "1");
  EXPECT_EQ(client_->state().last_error, "a broken toy");
  ASSERT_TRUE(server_events_.WaitForEntry("stream 1 nacked 2: a broken toy"));

  // The next version is sent and applied.
  ASSERT_TRUE(publisher_.Publish(Toy("3", "fixed")).ok());
  ASSERT_TRUE(WaitForClient([](const SotwClient::State& s) { return s.applied_version == "3"; }));
  ASSERT_TRUE(server_events_.WaitForEntry("stream 1 acked 3"));
  EXPECT_THAT(client_events_.entries(), ElementsAre("handled 1 new", "handled 2 broken", "handled 3 fixed"));

  // Reconnect(): a new stream that says what the client runs, answered with the current version.
  client_->Reconnect();
  ASSERT_TRUE(server_events_.WaitForEntry("stream 1 closed"));
  ASSERT_TRUE(server_events_.WaitForEntry("stream 2 connected by toy-client running \"3\""));
  ASSERT_TRUE(server_events_.WaitForEntry("stream 2 acked 3"));

  // A restarted server: the client reconnects on its own, with backoff.
  StopServer();
  ASSERT_TRUE(WaitForClient([](const SotwClient::State& s) { return !s.connected; }));
  ASSERT_TRUE(publisher_.Publish(Toy("4", "after restart")).ok());
  StartServer();
  ASSERT_TRUE(WaitForClient([](const SotwClient::State& s) { return s.connected && s.applied_version == "4"; }));
  ASSERT_TRUE(server_events_.WaitForEntry("stream 1 connected by toy-client running \"3\""))
      << "the new server's first stream";
  EXPECT_NE(metrics_.RenderPrometheus().find("test_toy_nacks_total 1"), std::string::npos);
}

}  // namespace
}  // namespace meshid::xds
