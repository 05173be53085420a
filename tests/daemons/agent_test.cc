#include "daemons/agent.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "sds/unix_socket.h"
#include "tests/support/certs.h"
#include "tests/support/temp_dir.h"

namespace meshid::daemons {
namespace {

using ::testing::HasSubstr;

// GET over plain HTTP/1.0; returns the status code (0 on connection failure).
int HttpStatus(uint16_t port, const std::string& path) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return 0;
  }
  const std::string request = absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: x\r\n\r\n");
  (void)::write(fd, request.data(), request.size());
  std::string response;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0) response.append(buf, n);
  ::close(fd);
  return response.size() > 12 ? std::stoi(response.substr(9, 3)) : 0;
}

class AgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto root = testing::TestCa::Create();
    ASSERT_TRUE(root.ok()) << root.status();
    std::ofstream(dir_ / "root-cert.pem") << root->cert_pem();
    std::ofstream(dir_ / "token") << "a-token\n";
    config_.ca_address = "127.0.0.1:1";  // nothing listens there
    config_.ca_root_file = (dir_ / "root-cert.pem").string();
    config_.token_file = (dir_ / "token").string();
    config_.sds.socket_path = (dir_ / "uds" / "socket").string();
    config_.crl_state_file = (dir_ / "crl.pem").string();
    config_.monitoring_address = "127.0.0.1:0";
    config_.cache.initial_backoff = absl::Seconds(30);  // keep the failing CA quiet during the test
    config_.cache.max_backoff = absl::Seconds(60);
  }
  testing::TempDir temp_dir_{"meshid-agent"};
  std::filesystem::path dir_ = temp_dir_.path();
  AgentConfig config_;
};

TEST_F(AgentTest, ConfigProblemsAreAllReportedWithTheirFlags) {
  config_.ca_address = "no-port";
  config_.cache.grace_ratio = 2;
  config_.worker_threads = 0;
  config_.monitoring_address = "";
  auto status = config_.Validate();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("--ca-addr"));
  EXPECT_THAT(status.message(), HasSubstr("grace-ratio"));
  EXPECT_THAT(status.message(), HasSubstr("--workers"));
  EXPECT_THAT(status.message(), HasSubstr("--monitoring-addr"));
}

TEST_F(AgentTest, AMissingOrBrokenCaRootIsRefusedAtStart) {
  config_.ca_root_file = (dir_ / "missing.pem").string();
  auto agent = Agent::Start(config_, SystemClock::Instance(), MakeNullLogger());
  ASSERT_FALSE(agent.ok());
  EXPECT_THAT(agent.status().message(), HasSubstr("--ca-root"));
  std::ofstream(dir_ / "broken.pem") << "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n";
  config_.ca_root_file = (dir_ / "broken.pem").string();
  agent = Agent::Start(config_, SystemClock::Instance(), MakeNullLogger());
  ASSERT_FALSE(agent.ok());
  EXPECT_THAT(agent.status().message(), HasSubstr("--ca-root"));
}

TEST_F(AgentTest, ServesWithoutACaButIsNotReadyAndOwnsItsSocket) {
  auto agent = Agent::Start(config_, SystemClock::Instance(), MakeNullLogger());
  ASSERT_TRUE(agent.ok()) << agent.status();
  EXPECT_EQ((*agent)->sds_target(), "unix:" + config_.sds.socket_path);
  EXPECT_TRUE(sds::UnixSocketIsLive(config_.sds.socket_path));
  EXPECT_EQ(HttpStatus((*agent)->monitoring_port(), "/healthz"), 200);
  EXPECT_EQ(HttpStatus((*agent)->monitoring_port(), "/readyz"), 503);  // the CA is unreachable
  EXPECT_EQ(HttpStatus((*agent)->monitoring_port(), "/metrics"), 200);

  // A second agent on the same socket is refused; the first keeps serving.
  AgentConfig second = config_;
  auto other = Agent::Start(second, SystemClock::Instance(), MakeNullLogger());
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(other.status().message(), HasSubstr("--sds-socket"));
  EXPECT_TRUE(sds::UnixSocketIsLive(config_.sds.socket_path));

  agent->reset();
  EXPECT_FALSE(std::filesystem::exists(config_.sds.socket_path));
}

}  // namespace
}  // namespace meshid::daemons
