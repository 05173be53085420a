#include "sds/sds_server.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "envoy/extensions/transport_sockets/tls/v3/secret.pb.h"
#include "envoy/service/secret/v3/sds.grpc.pb.h"
#include "sds/unix_socket.h"
#include "tests/sds/fake_provider.h"
#include "tests/sds/test_resources.h"
#include "tests/support/temp_dir.h"

namespace meshid::sds {
namespace {

using envoy::service::discovery::v3::DeltaDiscoveryRequest;
using envoy::service::discovery::v3::DeltaDiscoveryResponse;
using envoy::service::discovery::v3::DiscoveryRequest;
using envoy::service::discovery::v3::DiscoveryResponse;
using envoy::service::secret::v3::SecretDiscoveryService;
using testing::Cert;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::Roots;

using testing::FakeSecretProvider;

class SdsServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SdsServerOptions options;
    options.socket_path = dir_ + "/uds/socket";
    auto server = SdsServer::Create(options, provider_, metrics_, random_, MakeNullLogger());
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    channel_ = grpc::CreateChannel(server_->target(), grpc::InsecureChannelCredentials());
    stub_ = SecretDiscoveryService::NewStub(channel_);
  }
  void TearDown() override { server_.reset(); }

  std::unique_ptr<grpc::ClientContext> Context(const std::string& authorization = "") {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    if (!authorization.empty()) ctx->AddMetadata("authorization", authorization);
    return ctx;
  }

  static DiscoveryRequest Request(std::vector<std::string> names, const std::string& nonce = "") {
    DiscoveryRequest r;
    r.mutable_node()->set_id("test-node");
    r.set_type_url(std::string(kSecretTypeUrl));
    for (auto& n : names) r.add_resource_names(n);
    r.set_response_nonce(nonce);
    return r;
  }

  static std::string SecretName(const google::protobuf::Any& any) {
    envoy::extensions::transport_sockets::tls::v3::Secret secret;
    EXPECT_TRUE(any.UnpackTo(&secret));
    return secret.name();
  }

  ::meshid::testing::TempDir temp_dir_{"meshid-sds"};
  std::string dir_ = temp_dir_.path();
  FakeSecretProvider provider_;
  MetricsRegistry metrics_;
  OpenSslRandom random_;
  std::unique_ptr<SdsServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<SecretDiscoveryService::Stub> stub_;
};

TEST_F(SdsServerTest, StreamSecretsFollowsAckNackAndPushRules) {
  provider_.Publish({"default", Cert("v1", 1), absl::OkStatus()});
  auto ctx = Context();
  auto stream = stub_->StreamSecrets(ctx.get());
  ASSERT_TRUE(stream->Write(Request({"default"})));
  DiscoveryResponse r1;
  ASSERT_TRUE(stream->Read(&r1));
  ASSERT_EQ(r1.resources_size(), 1);
  EXPECT_EQ(SecretName(r1.resources(0)), "default");
  EXPECT_EQ(r1.version_info(), Cert("v1", 1)->version);
  EXPECT_FALSE(r1.nonce().empty());

  // ACK.
  DiscoveryRequest ack = Request({"default"}, r1.nonce());
  ack.set_version_info(r1.version_info());
  ASSERT_TRUE(stream->Write(ack));
  ASSERT_TRUE(provider_.WaitForReports(1));
  EXPECT_THAT(provider_.reports(), ElementsAre("default@" + r1.version_info() + " ACK"));

  // A rotation is pushed without the client asking; the next message is exactly it.
  provider_.Publish({"default", Cert("v2", 2), absl::OkStatus()});
  DiscoveryResponse r2;
  ASSERT_TRUE(stream->Read(&r2));
  EXPECT_EQ(r2.version_info(), Cert("v2", 2)->version);
  EXPECT_NE(r2.nonce(), r1.nonce());

  // NACK: logged, counted, reported; the rejected version is not sent again, a newer one is.
  DiscoveryRequest nack = Request({"default"}, r2.nonce());
  nack.set_version_info(r1.version_info());
  nack.mutable_error_detail()->set_code(13);
  nack.mutable_error_detail()->set_message("Failed to load private key");
  ASSERT_TRUE(stream->Write(nack));
  ASSERT_TRUE(provider_.WaitForReports(2));
  EXPECT_EQ(provider_.reports()[1], "default@" + r2.version_info() + " NACK");
  provider_.Publish({"default", Cert("v2", 3), absl::OkStatus()});  // same content again
  provider_.Publish({"default", Cert("v3", 4), absl::OkStatus()});
  DiscoveryResponse r3;
  ASSERT_TRUE(stream->Read(&r3));
  EXPECT_EQ(r3.version_info(), Cert("v3", 4)->version);

  ASSERT_TRUE(stream->WritesDone());
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_EQ(metrics_.AddCounter("meshid_agent_sds_nacks_total", "").value(), 1);
  EXPECT_EQ(metrics_.AddCounter("meshid_agent_sds_acks_total", "").value(), 1);
  EXPECT_EQ(metrics_.AddCounter("meshid_agent_sds_pushes_total", "").value(), 3);
}

TEST_F(SdsServerTest, RootcaOnItsOwnStreamAndAChangedListIsAnswered) {
  provider_.Publish({"default", Cert("c", 1), absl::OkStatus()});
  provider_.Publish({"ROOTCA", Roots("r", 2), absl::OkStatus()});
  auto ctx = Context();
  auto stream = stub_->StreamSecrets(ctx.get());
  ASSERT_TRUE(stream->Write(Request({"ROOTCA"})));
  DiscoveryResponse r1;
  ASSERT_TRUE(stream->Read(&r1));
  ASSERT_EQ(r1.resources_size(), 1);
  envoy::extensions::transport_sockets::tls::v3::Secret secret;
  ASSERT_TRUE(r1.resources(0).UnpackTo(&secret));
  EXPECT_EQ(secret.name(), "ROOTCA");
  EXPECT_EQ(secret.validation_context().trusted_ca().inline_bytes(), "ROOT r\n");
  ASSERT_TRUE(stream->Write(Request({"ROOTCA", "default"}, r1.nonce())));
  DiscoveryResponse r2;
  ASSERT_TRUE(stream->Read(&r2));
  ASSERT_EQ(r2.resources_size(), 2);
  ctx->TryCancel();
  stream->Finish().IgnoreError();
}

TEST_F(SdsServerTest, UnknownNameEndsTheStreamWithNotFound) {
  auto ctx = Context();
  auto stream = stub_->StreamSecrets(ctx.get());
  ASSERT_TRUE(stream->Write(Request({"default", "file-cert:/a~/b"})));
  DiscoveryResponse r;
  EXPECT_FALSE(stream->Read(&r));
  grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("file-cert:/a~/b"));
}

TEST_F(SdsServerTest, AProviderErrorEndsTheStreamsWatchingThatName) {
  provider_.Publish({"default", Cert("c", 1), absl::OkStatus()});
  auto ctx = Context();
  auto stream = stub_->StreamSecrets(ctx.get());
  ASSERT_TRUE(stream->Write(Request({"default"})));
  DiscoveryResponse r;
  ASSERT_TRUE(stream->Read(&r));
  provider_.Publish({"default", nullptr, absl::UnavailableError("certificate expired, CA unreachable")});
  EXPECT_FALSE(stream->Read(&r));
  grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(), HasSubstr("expired"));
}

TEST_F(SdsServerTest, BearerTokenReachesTheProviderAndOtherSchemesAreRefused) {
  provider_.Publish({"default", Cert("c", 1), absl::OkStatus()});
  {
    auto ctx = Context("Bearer workload-jwt");
    auto stream = stub_->StreamSecrets(ctx.get());
    ASSERT_TRUE(stream->Write(Request({"default"})));
    DiscoveryResponse r;
    ASSERT_TRUE(stream->Read(&r));
    ctx->TryCancel();
    stream->Finish().IgnoreError();
  }
  EXPECT_THAT(provider_.tokens(), ElementsAre("workload-jwt"));
  auto ctx = Context("Basic dXNlcjpwYXNz");
  auto stream = stub_->StreamSecrets(ctx.get());
  stream->Write(Request({"default"}));
  DiscoveryResponse r;
  EXPECT_FALSE(stream->Read(&r));
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(SdsServerTest, FetchSecretsWaitsForTheResourceAndRefusesUnknownNames) {
  provider_.Publish({"ROOTCA", Roots("r", 1), absl::OkStatus()});
  std::thread later([&] {
    ASSERT_TRUE(provider_.WaitForWatchers("default", 1));
    provider_.Publish({"default", Cert("c", 2), absl::OkStatus()});
  });
  auto ctx = Context();
  DiscoveryResponse response;
  grpc::Status status = stub_->FetchSecrets(ctx.get(), Request({"default", "ROOTCA"}), &response);
  later.join();
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(response.resources_size(), 2);
  EXPECT_EQ(SecretName(response.resources(0)), "ROOTCA");
  EXPECT_EQ(SecretName(response.resources(1)), "default");

  auto ctx2 = Context();
  status = stub_->FetchSecrets(ctx2.get(), Request({"nope"}), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  auto ctx3 = Context();
  status = stub_->FetchSecrets(ctx3.get(), Request({}), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(SdsServerTest, DeltaSecretsSubscribesIncrementally) {
  provider_.Publish({"default", Cert("c", 1), absl::OkStatus()});
  provider_.Publish({"ROOTCA", Roots("r", 2), absl::OkStatus()});
  auto ctx = Context();
  auto stream = stub_->DeltaSecrets(ctx.get());
  DeltaDiscoveryRequest sub;
  sub.set_type_url(std::string(kSecretTypeUrl));
  sub.add_resource_names_subscribe("default");
  sub.add_resource_names_subscribe("bogus");
  ASSERT_TRUE(stream->Write(sub));
  DeltaDiscoveryResponse r1;
  ASSERT_TRUE(stream->Read(&r1));
  ASSERT_EQ(r1.resources_size(), 1);
  EXPECT_EQ(r1.resources(0).name(), "default");
  EXPECT_EQ(r1.resources(0).version(), Cert("c", 1)->version);
  EXPECT_THAT(r1.removed_resources(), ElementsAre("bogus"));

  DeltaDiscoveryRequest more;
  more.set_response_nonce(r1.nonce());
  more.add_resource_names_subscribe("ROOTCA");
  ASSERT_TRUE(stream->Write(more));
  DeltaDiscoveryResponse r2;
  ASSERT_TRUE(stream->Read(&r2));
  ASSERT_EQ(r2.resources_size(), 1);
  EXPECT_EQ(r2.resources(0).name(), "ROOTCA");
  ASSERT_TRUE(provider_.WaitForReports(1));

  provider_.Publish({"default", Cert("d", 3), absl::OkStatus()});
  DeltaDiscoveryResponse r3;
  ASSERT_TRUE(stream->Read(&r3));
  ASSERT_EQ(r3.resources_size(), 1);
  EXPECT_EQ(r3.resources(0).name(), "default");
  ASSERT_TRUE(stream->WritesDone());
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(SdsServerTest, SocketIsPrivateAndALiveOneIsNotTakenOver) {
  struct stat st {};
  ASSERT_EQ(::stat((dir_ + "/uds/socket").c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  SdsServerOptions options;
  options.socket_path = dir_ + "/uds/socket";
  FakeSecretProvider other;
  MetricsRegistry other_metrics;
  auto second = SdsServer::Create(options, other, other_metrics, random_, MakeNullLogger());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  // The first server is unaffected.
  EXPECT_TRUE(UnixSocketIsLive(dir_ + "/uds/socket"));
}

TEST(UnixSocketPathTest, StaleSocketsAreReplacedOtherFilesAreNot) {
  ::meshid::testing::TempDir temp_dir("meshid-sds");
  const std::string dir = temp_dir.path();
  const std::string path = dir + "/socket";
  {  // a socket file left behind by a process that died
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    ::close(fd);
  }
  EXPECT_FALSE(UnixSocketIsLive(path));
  FakeSecretProvider provider;
  MetricsRegistry metrics;
  OpenSslRandom random;
  SdsServerOptions options;
  options.socket_path = path;
  {
    auto server = SdsServer::Create(options, provider, metrics, random, MakeNullLogger());
    ASSERT_TRUE(server.ok()) << server.status();
    EXPECT_TRUE(UnixSocketIsLive(path));
  }
  EXPECT_FALSE(std::filesystem::exists(path));  // removed at shutdown

  std::ofstream(dir + "/regular") << "not a socket";
  options.socket_path = dir + "/regular";
  MetricsRegistry metrics2;
  auto refused = SdsServer::Create(options, provider, metrics2, random, MakeNullLogger());
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), HasSubstr("not a socket"));
}

TEST(UnixSocketPathTest, GroupSocketsAreMode0660) {
  ::meshid::testing::TempDir temp_dir("meshid-sds");
  const std::string dir = temp_dir.path();
  FakeSecretProvider provider;
  MetricsRegistry metrics;
  OpenSslRandom random;
  SdsServerOptions options;
  options.socket_path = dir + "/socket";
  options.socket_group = ::getgid();
  options.socket_mode = 0660;
  auto server = SdsServer::Create(options, provider, metrics, random, MakeNullLogger());
  ASSERT_TRUE(server.ok()) << server.status();
  struct stat st {};
  ASSERT_EQ(::stat(options.socket_path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  EXPECT_EQ(st.st_gid, ::getgid());
  server->reset();
}

}  // namespace
}  // namespace meshid::sds
