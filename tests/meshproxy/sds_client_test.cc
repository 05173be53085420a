// sds::SdsClient against the real sds::SdsServer on a Unix socket, with a provider the test
// controls: one stream per name, ACK/NACK with the right versions, bearer tokens, reconnects.
#include "sds/sds_client.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "sds/resource.h"
#include "sds/sds_server.h"
#include "tests/sds/fake_provider.h"
#include "tests/support/temp_dir.h"

namespace meshid::sds {
namespace {

using envoy::extensions::transport_sockets::tls::v3::Secret;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

using Provider = testing::FakeSecretProvider;

// What the client's handler saw, and what it should answer.
class Handler {
 public:
  SecretHandler Fn() {
    return [this](const Secret& s, const std::string& version) -> absl::Status {
      absl::MutexLock lock(&mu_);
      std::string content = s.has_tls_certificate() ? s.tls_certificate().certificate_chain().inline_bytes()
                                                    : s.validation_context().trusted_ca().inline_bytes();
      seen_.push_back(absl::StrCat(s.name(), "@", version, " ", content));
      if (absl::StrContains(content, "bad")) return absl::InvalidArgumentError("cannot use " + content);
      return absl::OkStatus();
    };
  }
  std::vector<std::string> seen() {
    absl::MutexLock lock(&mu_);
    return seen_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> seen_ ABSL_GUARDED_BY(mu_);
};

xds::ResourcePtr Cert(const std::string& content, uint64_t generation) {
  return *MakeTlsCertificateResource(kWorkloadResourceName, content, "KEY " + content, generation);
}
xds::ResourcePtr Roots(const std::string& content, uint64_t generation) {
  return *MakeValidationContextResource(kRootResourceName, {content}, generation);
}

class SdsClientTest : public ::testing::Test {
 protected:
  void SetUp() override { options_.socket_path = (dir_ / "socket").string(); }

  std::unique_ptr<SdsServer> StartServer() {
    auto server = SdsServer::Create(options_, provider_, metrics_, random_, MakeNullLogger());
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? std::move(*server) : nullptr;
  }
  SdsClientOptions ClientOptions(std::vector<std::string> names = {"default", "ROOTCA"}) {
    SdsClientOptions o;
    o.target = "unix:" + options_.socket_path;
    o.resource_names = std::move(names);
    o.node_id = "sidecar~127.0.0.1~reviews.default~default.svc.cluster.local";
    o.node_cluster = "reviews.default";
    o.initial_backoff = absl::Milliseconds(20);
    o.max_backoff = absl::Milliseconds(200);
    return o;
  }

  ::meshid::testing::TempDir temp_dir_{"meshproxy-sds"};
  std::filesystem::path dir_ = temp_dir_.path();
  SdsServerOptions options_;
  Provider provider_;
  MetricsRegistry metrics_;
  OpenSslRandom random_;
  Handler handler_;
};

TEST_F(SdsClientTest, SubscribesAcksAndNacksLikeEnvoy) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  provider_.Publish(Cert("cert-1", 1));
  provider_.Publish(Roots("root-1", 1));
  MetricsRegistry client_metrics;
  auto client = SdsClient::Create(ClientOptions(), handler_.Fn(), random_, MakeNullLogger(), client_metrics);
  ASSERT_TRUE(client.ok()) << client.status();
  ASSERT_TRUE(provider_.WaitForReports(2));
  // One stream per name, as Envoy's SdsApi subscribes.
  EXPECT_EQ(server->connected_streams(), 2);
  EXPECT_THAT(provider_.subscribed(), ::testing::UnorderedElementsAre("default", "ROOTCA"));
  const std::string v1 = Cert("cert-1", 1)->version;
  EXPECT_THAT(provider_.reports(), Contains("default@" + v1 + " ACK"));

  // A secret the handler cannot use is NACKed; the next good one is ACKed.
  provider_.Publish(Cert("bad-cert", 2));
  ASSERT_TRUE(provider_.WaitForReports(3));
  EXPECT_EQ(provider_.reports()[2], "default@" + Cert("bad-cert", 2)->version + " NACK");
  provider_.Publish(Cert("cert-3", 3));
  ASSERT_TRUE(provider_.WaitForReports(4));
  EXPECT_EQ(provider_.reports()[3], "default@" + Cert("cert-3", 3)->version + " ACK");
  EXPECT_THAT(handler_.seen(), Contains(HasSubstr("bad-cert")));
  EXPECT_NE(
      client_metrics.RenderPrometheus().find("meshid_sds_client_updates_total{resource=\"default\",result=\"nack\"} 1"),
      std::string::npos)
      << client_metrics.RenderPrometheus();
  EXPECT_NE(metrics_.RenderPrometheus().find("meshid_agent_sds_nacks_total 1"), std::string::npos);
}

TEST_F(SdsClientTest, SendsTheWorkloadTokenAndReconnectsAfterTheAgentRestarts) {
  const std::string token_file = (dir_ / "token").string();
  std::ofstream(token_file) << "token-one\n";
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  provider_.Publish(Cert("cert-1", 1));
  SdsClientOptions o = ClientOptions({"default"});
  o.token_file = token_file;
  MetricsRegistry client_metrics;
  auto client = SdsClient::Create(o, handler_.Fn(), random_, MakeNullLogger(), client_metrics);
  ASSERT_TRUE(client.ok());
  ASSERT_TRUE(provider_.WaitForReports(1));
  EXPECT_THAT(provider_.tokens(), ElementsAre("token-one"));

  // The agent goes away and comes back; the token is read again (projected tokens rotate).
  server.reset();
  std::ofstream(token_file) << "token-two";
  server = StartServer();
  ASSERT_NE(server, nullptr);
  ASSERT_TRUE(provider_.WaitForReports(2));
  EXPECT_THAT(provider_.tokens(), ElementsAre("token-one", "token-two"));
  EXPECT_GE(handler_.seen().size(), 2u);
}

TEST_F(SdsClientTest, AnUnknownNameIsRetriedWithBackoff) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  MetricsRegistry client_metrics;
  auto client = SdsClient::Create(ClientOptions({"bogus"}), handler_.Fn(), random_, MakeNullLogger(), client_metrics);
  ASSERT_TRUE(client.ok());
  // Each attempt is a new stream that the server closes with NOT_FOUND.
  auto failures = [&] {
    const std::string text = client_metrics.RenderPrometheus();
    const std::string series = "meshid_sds_client_stream_failures_total{resource=\"bogus\"} ";
    const size_t at = text.find(series);
    return at == std::string::npos ? 0.0 : std::stod(text.substr(at + series.size()));
  };
  for (int i = 0; i < 1500 && failures() < 3; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_GE(failures(), 3);
  EXPECT_TRUE(handler_.seen().empty());
  client->reset();  // stops promptly despite the pending backoff
}

TEST(SdsClientOptionsTest, Validation) {
  OpenSslRandom random;
  MetricsRegistry metrics;
  auto ok_handler = [](const Secret&, const std::string&) { return absl::OkStatus(); };
  SdsClientOptions o;
  o.target = "unix:/nonexistent";
  EXPECT_FALSE(SdsClient::Create(o, ok_handler, random, MakeNullLogger(), metrics).ok());  // no names
  o.resource_names = {"default", "default"};
  EXPECT_FALSE(SdsClient::Create(o, ok_handler, random, MakeNullLogger(), metrics).ok());
  o.resource_names = {"default"};
  o.max_backoff = absl::Milliseconds(1);
  EXPECT_FALSE(SdsClient::Create(o, ok_handler, random, MakeNullLogger(), metrics).ok());
}

}  // namespace
}  // namespace meshid::sds
