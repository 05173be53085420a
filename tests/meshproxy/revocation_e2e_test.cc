// Revocation end to end with the real binaries: `meshid server`, two agents and three server-side
// proxies under continuous mTLS load. One client's certificate is revoked and another identity
// blocked; every proxy must refuse new handshakes with them and close the connections they have
// open, while a third client sees no failed request, and the revoked workload's agent must
// serve it a fresh certificate. Then the server goes away: proxies and agents keep enforcing,
// and an agent restarted meanwhile keeps the CRL it had.
//
// Client certificates come from the agents over SDS FetchSecrets with each workload's token, so
// they are in the server's ledger (what `meshid certs revoke` needs) and the test holds the very
// key a workload uses, as a thief would.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "absl/strings/match.h"
#include "common/x509.h"
#include "tests/meshproxy/mesh_harness.h"
#include "tests/meshproxy/workload_svid.h"
#include "tests/support/databases.h"
#include "tests/support/dependencies.h"

namespace meshid::testing {
namespace {

constexpr char kTd[] = "spiffe://cluster.local";
std::string Id(const std::string& sa) { return absl::StrCat(kTd, "/ns/default/sa/", sa); }

// A client keeping one keep-alive connection to every proxy, one request after another; it
// reconnects after a failure and counts both.
class LoadClient {
 public:
  LoadClient(std::vector<int> ports, CertFiles cert) : ports_(std::move(ports)), cert_(std::move(cert)) {
    thread_ = std::thread([this] { Run(); });
  }
  ~LoadClient() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int64_t ok() const { return ok_; }
  int64_t failed() const { return failed_; }
  std::string last_error() const {
    absl::MutexLock lock(&mu_);
    return last_error_;
  }

 private:
  void Run() {
    std::vector<std::unique_ptr<Client>> conns(ports_.size());
    while (!stop_) {
      for (size_t i = 0; i < ports_.size() && !stop_; ++i) {
        std::string error;
        if (conns[i] == nullptr) conns[i] = Client::Dial(ports_[i], Mtls(cert_), &error);
        HttpResult r;
        if (conns[i] != nullptr && conns[i]->Write(RequestText("GET", "/load", "reviews")))
          r = conns[i]->ReadResponse();
        if (r.status == 200) {
          ++ok_;
        } else {
          ++failed_;
          conns[i].reset();
          absl::MutexLock lock(&mu_);
          last_error_ = absl::StrCat("port ", ports_[i], ": status ", r.status, " ", r.error, error);
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  const std::vector<int> ports_;
  const CertFiles cert_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> ok_{0};
  std::atomic<int64_t> failed_{0};
  mutable absl::Mutex mu_;
  std::string last_error_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

// Keep-alive connections with one certificate to every proxy, opened while it is trusted.
struct OpenConnections {
  std::vector<std::unique_ptr<Client>> conns;
  OpenConnections(const std::vector<int>& ports, const CertFiles& cert) {
    for (int port : ports) {
      std::string error;
      auto c = Client::Dial(port, Mtls(cert), &error);
      EXPECT_NE(c, nullptr) << error;
      if (c != nullptr && c->Write(RequestText("GET", "/open", "reviews"))) {
        EXPECT_EQ(c->ReadResponse().status, 200);
      }
      conns.push_back(std::move(c));
    }
  }
  // Whether every connection was closed by its proxy (a request on it gets no answer).
  bool AllClosed() {
    for (auto& c : conns) {
      if (c == nullptr) continue;
      if (c->Write(RequestText("GET", "/after", "reviews")) && c->ReadResponse().status == 200) return false;
      c.reset();
    }
    return true;
  }
};

std::string Meshid(const std::string& args) {
  auto [rc, out] = RunShell(absl::StrCat(MeshidBinary(), " ", args, " 2>&1"));
  EXPECT_EQ(rc, 0) << args << ": " << out;
  return out;
}

TEST(RevocationEndToEnd, RevokedAndBlockedPeersAreRefusedEverywhereWhileOthersSeeNoFailure) {
  signal(SIGPIPE, SIG_IGN);
  TempDir temp("revocation-e2e");
  const std::string dir = temp.path();
  auto server = std::make_unique<ServerProcess>(dir + "/ca");
  ASSERT_TRUE(server->ok()) << server->Log();
  auto agent1 = std::make_unique<AgentProcess>(*server, MeshAgentOptions(dir, "1h"));
  AgentProcessOptions agent2_options = MeshAgentOptions(dir, "1h");
  agent2_options.name = "agent2";
  auto agent2 = std::make_unique<AgentProcess>(*server, agent2_options);
  ASSERT_TRUE(agent1->ok()) << agent1->Log();
  ASSERT_TRUE(agent2->ok()) << agent2->Log();

  // Three server-side proxies, STRICT by default (PeerAuthentication absent: PERMISSIVE accepts
  // mTLS too; every test connection is mTLS).
  EchoApp app;
  std::vector<std::unique_ptr<ProxyProcess>> proxies;
  std::vector<int> ports;
  const std::vector<std::pair<std::string, AgentProcess*>> services = {
      {"reviews", agent1.get()}, {"ratings", agent2.get()}, {"details", agent2.get()}};
  for (const auto& [service, agent] : services) {
    const std::string token = WriteTestFile(dir + "/" + service + ".token", server->Token("default", service));
    proxies.push_back(std::make_unique<ProxyProcess>(
        dir + "/" + service + ".log",
        std::vector<std::string>{"--sds-socket", agent->socket(), "--token-file", token, "--service", service,
                                 "--namespace", "default", "--inbound", "127.0.0.1:0", "--app",
                                 absl::StrCat("127.0.0.1:", app.port())}));
    ASSERT_TRUE(proxies.back()->ok()) << proxies.back()->Log();
    ports.push_back(proxies.back()->inbound());
  }

  // A workload "stolen" runs behind a proxy on agent 1 (so the agent keeps and renews its
  // identity); the test takes the same certificate and key from the agent. "blocked" and the
  // bystander "productpage" get theirs from agent 2 and agent 1.
  const std::string stolen_token = server->Token("default", "stolen");
  const std::string stolen_token_file = WriteTestFile(dir + "/stolen.token", stolen_token);
  ProxyProcess stolen_proxy(
      dir + "/stolen.log",
      {"--sds-socket", agent1->socket(), "--token-file", stolen_token_file, "--service", "stolen", "--namespace",
       "default", "--outbound", "127.0.0.1:0", "--upstream", absl::StrCat("reviews=127.0.0.1:", ports[0])});
  ASSERT_TRUE(stolen_proxy.ok()) << stolen_proxy.Log();
  Svid stolen = FetchSvid(agent1->socket(), stolen_token, dir, "stolen");
  Svid blocked = FetchSvid(agent2->socket(), server->Token("default", "blocked"), dir, "blocked");
  Svid good = FetchSvid(agent1->socket(), server->Token("default", "productpage"), dir, "productpage");
  for (const Svid* s : {&stolen, &blocked, &good}) ASSERT_FALSE(s->serial.empty()) << s->error;
  auto served_serial = [&] { return stolen_proxy.Json("/certs")["certificates"][0]["cert_chain"][0]["serial_number"]; };
  EXPECT_EQ(served_serial(), stolen.serial) << stolen_proxy.Json("/certs");
  for (int port : ports) {
    ASSERT_TRUE(Served(port, stolen.files));
    ASSERT_TRUE(Served(port, blocked.files));
  }

  LoadClient load(ports, good.files);
  OpenConnections stolen_open(ports, stolen.files);
  OpenConnections blocked_open(ports, blocked.files);
  ASSERT_TRUE(Eventually([&] { return load.ok() > 30; }, std::chrono::seconds(30))) << load.last_error();

  const std::string where = "--data-dir " + dir + "/ca";
  Meshid(absl::StrCat("certs revoke ", stolen.serial, " --reason keyCompromise ", where));
  Meshid(absl::StrCat("identity block ", Id("blocked"), " --reason 'left the company' ", where));

  // Every proxy gets the CRL with both (numbers: 1 empty, 2 after the revocation, 3 after the
  // block), refuses both certificates on new handshakes, and has closed the open connections.
  for (size_t i = 0; i < ports.size(); ++i) {
    EXPECT_TRUE(
        Eventually([&] { return proxies[i]->Metric("meshid_proxy_crl_number") >= 3; }, std::chrono::seconds(30)))
        << proxies[i]->Log();
    EXPECT_FALSE(Served(ports[i], stolen.files)) << proxies[i]->Log();
    EXPECT_FALSE(Served(ports[i], blocked.files)) << proxies[i]->Log();
    // (The proxy counts a refusal after it sent its alert: the client may see it first.)
    EXPECT_TRUE(Eventually([&] { return proxies[i]->Metric("meshid_proxy_revoked_peers_refused_total") >= 2; },
                           std::chrono::seconds(10)))
        << proxies[i]->Log();
  }
  EXPECT_TRUE(stolen_open.AllClosed());
  EXPECT_TRUE(blocked_open.AllClosed());
  for (const auto& p : proxies) EXPECT_GE(p->Metric("meshid_proxy_revoked_connections_closed_total"), 2);

  // The stolen workload's agent replaced its certificate (new key, new serial) at once, and the
  // workload's own traffic flows again with it.
  ASSERT_TRUE(Eventually([&] { return served_serial() != stolen.serial; }, std::chrono::seconds(30))) << agent1->Log();
  Svid fresh = FetchSvid(agent1->socket(), stolen_token, dir, "stolen-fresh");
  ASSERT_FALSE(fresh.serial.empty()) << fresh.error;
  EXPECT_NE(fresh.serial, stolen.serial);
  EXPECT_TRUE(Served(ports[0], fresh.files));
  EXPECT_TRUE(Eventually(
      [&] { return Request(stolen_proxy.outbound(), Client::Options{}, "GET", "/x", "reviews").status == 200; },
      std::chrono::seconds(30)))
      << stolen_proxy.Log();

  // The server goes away: proxies and agents keep enforcing; an agent restarted meanwhile reads
  // the CRL it kept, and serves it to a proxy that connects to it afresh.
  server->process().Kill(SIGKILL);
  server->process().Wait();
  for (int port : ports) EXPECT_FALSE(Served(port, stolen.files));
  agent2.reset();
  agent2 = std::make_unique<AgentProcess>(*server, agent2_options);
  // (The restarted agent cannot reach the server; the AgentProcess helper only waits for its
  // socket.)
  ASSERT_TRUE(agent2->ok()) << agent2->Log();
  EXPECT_THAT(agent2->Log(), ::testing::HasSubstr("enforcing the kept CRL"));
  for (size_t i = 1; i < ports.size(); ++i) {
    EXPECT_TRUE(Eventually([&] { return !Served(ports[i], stolen.files); }, std::chrono::seconds(30)));
    EXPECT_FALSE(Served(ports[i], blocked.files));
  }

  load.Stop();
  EXPECT_EQ(load.failed(), 0) << load.last_error();
  EXPECT_GT(load.ok(), 100);
}

// Two replicas on one PostgreSQL database, one CA (Istio's plug-in layout: the CRL is signed by
// the intermediate, which agents do not otherwise hold). A certificate issued through the first
// replica's agent is revoked in the store; the proxy behind the second replica's agent refuses
// it, and `meshid status` shows every agent and proxy at the store's CRL number.
TEST(RevocationEndToEnd, TwoReplicasOnOnePostgresqlEnforceARevocationThroughEitherAgent) {
  signal(SIGPIPE, SIG_IGN);
  auto db = TestDatabase::Create(Backend::kPostgres);
  MESHID_REQUIRE_DEPENDENCY(db != nullptr, kPostgresDependency);
  TempDir temp("revocation-replicas");
  const std::string dir = temp.path();
  ASSERT_TRUE(MakePluginCa(dir + "/cacerts"));
  const std::vector<std::string> common = {"--cacerts-dir", dir + "/cacerts", "--datastore", db->url()};
  ServerProcess one(dir + "/one", common);
  ASSERT_TRUE(one.ok()) << one.Log();
  // Replicas share the local token key as they share the CA files (docs/operations.md, Replicas).
  std::filesystem::create_directories(dir + "/two");
  std::filesystem::copy_file(dir + "/one/token-signing-key.pem", dir + "/two/token-signing-key.pem");
  ServerProcess two(dir + "/two", common);
  ASSERT_TRUE(two.ok()) << two.Log();
  AgentProcessOptions node1 = MeshAgentOptions(dir);
  node1.name = "node1";
  node1.extra_args.insert(node1.extra_args.end(), {"--agent-id", "node1"});
  AgentProcessOptions node2 = MeshAgentOptions(dir);
  node2.name = "node2";
  node2.extra_args.insert(node2.extra_args.end(), {"--agent-id", "node2"});
  AgentProcess agent1(one, node1);
  AgentProcess agent2(two, node2);
  ASSERT_TRUE(agent1.ok()) << agent1.Log();
  ASSERT_TRUE(agent2.ok()) << agent2.Log();

  EchoApp app;
  const std::string token = WriteTestFile(dir + "/reviews.token", two.Token("default", "reviews"));
  ProxyProcess reviews(dir + "/reviews.log", {"--sds-socket", agent2.socket(), "--token-file", token, "--service",
                                              "reviews", "--namespace", "default", "--inbound", "127.0.0.1:0", "--app",
                                              absl::StrCat("127.0.0.1:", app.port()), "--policy-from-agent"});
  ASSERT_TRUE(reviews.ok()) << reviews.Log();
  Svid client = FetchSvid(agent1.socket(), one.Token("default", "web"), dir, "web");
  ASSERT_FALSE(client.serial.empty()) << client.error;
  ASSERT_TRUE(Served(reviews.inbound(), client.files)) << reviews.Log();
  OpenConnections open({reviews.inbound()}, client.files);

  Meshid(absl::StrCat("certs revoke ", client.serial, " --datastore '", db->url(), "'"));
  // CRL 1 is the empty list each replica signs at start; the revocation makes it 2.
  EXPECT_TRUE(Eventually([&] { return reviews.Metric("meshid_proxy_crl_number") >= 2; }, std::chrono::seconds(30)));
  EXPECT_TRUE(Eventually([&] { return !Served(reviews.inbound(), client.files); }, std::chrono::seconds(30)))
      << reviews.Log() << agent2.Log();
  EXPECT_TRUE(open.AllClosed());
  for (ServerProcess* replica : {&one, &two}) {
    EXPECT_TRUE(Eventually([&] { return absl::StrContains(replica->Log(), "CRL 2 published: 1 revoked"); },
                           std::chrono::seconds(30)))
        << replica->Log();
  }

  // Both agents and the proxy report CRL 2, which is the store's.
  auto status = [&] {
    auto [rc, out] = RunShell(absl::StrCat(MeshidBinary(), " status --json --datastore '", db->url(), "'"));
    return nlohmann::json::parse(out, nullptr, false);
  };
  EXPECT_TRUE(Eventually(
      [&] {
        auto s = status();
        if (s.is_discarded() || s["crl_number"] != 2 || s["agents"].size() != 2 || s["proxies"].size() != 1) {
          return false;
        }
        for (const auto& row : s["agents"]) {
          if (row["crl_number"] != 2 || row["crl_current"] != true) return false;
        }
        return s["proxies"][0]["crl_number"] == 2;
      },
      std::chrono::seconds(20)))
      << status().dump(2) << agent2.Log() << reviews.Log();
  auto [rc, text] = RunShell(absl::StrCat(MeshidBinary(), " status --datastore '", db->url(), "'"));
  EXPECT_THAT(text, ::testing::HasSubstr("CRL number 2"));
}

}  // namespace
}  // namespace meshid::testing
