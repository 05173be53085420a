// CA rotation end to end with the real binaries: `meshid ca rotate prepare|publish|activate|retire`
// while workloads call each other through pairs of meshid proxies (mTLS, certificates from two
// agents, renewed every few seconds), with zero failed requests. A root rotation and then an
// intermediate rotation under the new root, on SQLite; a root rotation on two servers sharing
// PostgreSQL; and an agent that is offline during `publish` holding `activate` back until it
// comes back (or `--force`, with `meshid status` naming who will fail); a server restarted after
// the rotation follows the record rather than its own files.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "common/sha256.h"
#include "common/x509.h"
#include "tests/meshproxy/mesh_harness.h"
#include "tests/meshproxy/workload_svid.h"
#include "tests/support/databases.h"
#include "tests/support/dependencies.h"

namespace meshid::testing {
namespace {

using ::testing::HasSubstr;

// Plain HTTP requests through outbound proxies, one after another on each, reconnecting after a
// failure and counting both.
class LoadClient {
 public:
  LoadClient(std::vector<std::pair<int, std::string>> targets) : targets_(std::move(targets)) {
    thread_ = std::thread([this] { Run(); });
  }
  ~LoadClient() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int64_t ok() const { return ok_; }
  int64_t failed() const { return failed_; }
  std::string errors() const {
    absl::MutexLock lock(&mu_);
    return absl::StrJoin(errors_, "\n");
  }

 private:
  void Run() {
    while (!stop_) {
      for (const auto& [port, host] : targets_) {
        const HttpResult r = Request(port, Client::Options{}, "GET", "/load", host);
        if (r.status == 200) {
          ++ok_;
        } else {
          ++failed_;
          absl::MutexLock lock(&mu_);
          if (errors_.size() < 20) errors_.push_back(absl::StrCat(host, ": status ", r.status, " ", r.error));
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  const std::vector<std::pair<int, std::string>> targets_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> ok_{0};
  std::atomic<int64_t> failed_{0};
  mutable absl::Mutex mu_;
  std::vector<std::string> errors_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

// "sha256:<hex>" of each certificate of a PEM bundle, as agents report their roots.
std::set<std::string> Fingerprints(const std::string& pem) {
  std::set<std::string> out;
  auto certs = CertsFromPem(pem);
  if (!certs.ok()) return out;
  for (const auto& c : *certs) out.insert("sha256:" + Sha256Hex(CertToDer(c.get())));
  return out;
}

std::string Join(const std::set<std::string>& fingerprints) { return absl::StrJoin(fingerprints, ","); }

struct Cli {
  std::string store_flags;  // --data-dir DIR or --datastore URL
  std::pair<int, std::string> Run(const std::string& args) const {
    return RunShell(absl::StrCat(MeshidBinary(), " ", args, " ", store_flags, " 2>&1"));
  }
  std::string Ok(const std::string& args) const {
    auto [rc, out] = Run(args);
    EXPECT_EQ(rc, 0) << args << ": " << out;
    return out;
  }
  // Every agent and proxy row of `meshid status --json`.
  std::vector<nlohmann::json> StatusRows() const {
    auto [rc, out] = Run("status --json");
    std::vector<nlohmann::json> rows;
    auto json = nlohmann::json::parse(out, nullptr, false);
    if (rc != 0 || json.is_discarded()) return rows;
    for (const char* kind : {"agents", "proxies"}) {
      for (const auto& row : json[kind]) rows.push_back(row);
    }
    return rows;
  }
  // Whether the rows of `agents` (and their proxies) all hold exactly `roots`.
  bool AllHold(const std::set<std::string>& agents, const std::string& roots, size_t min_rows) const {
    size_t matched = 0;
    for (const auto& row : StatusRows()) {
      if (!agents.contains(row["agent_id"].get<std::string>())) continue;
      if (row.contains("proxy_id") && row["connected"] != true) continue;
      if (row["trust_bundle"] != roots) return false;
      ++matched;
    }
    return matched >= min_rows;
  }
};

// The mesh of one test: agents node1 and node2, each with a server-side proxy in front of the
// echo app and an outbound proxy calling the other node's; agent node3 has no proxies. Proxies
// take policy from their agent, so that the agents report them (and their roots).
struct Mesh {
  EchoApp app;
  std::vector<std::unique_ptr<AgentProcess>> agents;
  std::vector<std::unique_ptr<ProxyProcess>> proxies;
  std::vector<std::pair<int, std::string>> targets;  // outbound port, service

  static AgentProcessOptions Node(const std::string& dir, const std::string& name) {
    AgentProcessOptions options = MeshAgentOptions(dir, "6s");
    options.name = name;
    options.extra_args.insert(options.extra_args.end(), {"--agent-id", name});
    return options;
  }

  // `servers[i % size]` serves agent i.
  void Start(const std::string& dir, const std::vector<ServerProcess*>& servers) {
    for (int i = 0; i < 3; ++i) {
      ServerProcess& server = *servers[static_cast<size_t>(i) % servers.size()];
      agents.push_back(std::make_unique<AgentProcess>(server, Node(dir, absl::StrCat("node", i + 1))));
      ASSERT_TRUE(agents.back()->ok()) << agents.back()->Log();
    }
    ServerProcess& server = *servers[0];
    // reviews behind node2, called by web on node1; ratings behind node1, called by shop on node2.
    const std::vector<std::tuple<std::string, std::string, int, int>> pairs = {{"reviews", "web", 1, 0},
                                                                               {"ratings", "shop", 0, 1}};
    for (const auto& [service, caller, server_node, caller_node] : pairs) {
      const std::string token = WriteTestFile(dir + "/" + service + ".token", server.Token("default", service));
      proxies.push_back(std::make_unique<ProxyProcess>(
          dir + "/" + service + ".log",
          std::vector<std::string>{"--sds-socket", agents[server_node]->socket(), "--token-file", token, "--service",
                                   service, "--namespace", "default", "--inbound", "127.0.0.1:0", "--app",
                                   absl::StrCat("127.0.0.1:", app.port()), "--policy-from-agent"}));
      ASSERT_TRUE(proxies.back()->ok()) << proxies.back()->Log();
      const int inbound = proxies.back()->inbound();
      const std::string caller_token = WriteTestFile(dir + "/" + caller + ".token", server.Token("default", caller));
      proxies.push_back(std::make_unique<ProxyProcess>(
          dir + "/" + caller + ".log",
          std::vector<std::string>{"--sds-socket", agents[caller_node]->socket(), "--token-file", caller_token,
                                   "--service", caller, "--namespace", "default", "--outbound", "127.0.0.1:0",
                                   "--upstream", absl::StrCat(service, "=127.0.0.1:", inbound),
                                   "--policy-from-agent"}));
      ASSERT_TRUE(proxies.back()->ok()) << proxies.back()->Log();
      targets.emplace_back(proxies.back()->outbound(), service);
    }
  }

  std::string Logs() const {
    std::string out;
    for (const auto& a : agents) {
      if (a != nullptr) out += a->Log();
    }
    for (const auto& p : proxies) out += p->Log();
    return out;
  }
};

// Reads the roots of the server's trust bundle file.
std::set<std::string> ServerRoots(const ServerProcess& server) { return Fingerprints(server.root()); }

// One full rotation of `kind` ("root" or "intermediate") under load; the new key in `key`.
void RotateUnderLoad(const Cli& cli, const std::vector<ServerProcess*>& servers, Mesh& mesh, const std::string& kind,
                     const std::string& key, LoadClient& load) {
  const std::set<std::string> before = ServerRoots(*servers[0]);
  cli.Ok(absl::StrCat("ca rotate prepare --kind ", kind, " --key ", key));
  // Idempotent: the same command again changes nothing.
  EXPECT_THAT(cli.Ok(absl::StrCat("ca rotate prepare --kind ", kind, " --key ", key)), HasSubstr("already"));
  // Out of order: activate before publish says what to do.
  auto [early_rc, early] = cli.Run("ca rotate activate");
  EXPECT_NE(early_rc, 0);
  EXPECT_THAT(early, HasSubstr("meshid ca rotate publish"));

  cli.Ok("ca rotate publish");
  std::set<std::string> both;
  for (ServerProcess* server : servers) {
    ASSERT_TRUE(Eventually([&] { return ServerRoots(*server).size() > before.size() || kind == "intermediate"; },
                           std::chrono::seconds(30)))
        << server->Log();
    both = ServerRoots(*server);
  }
  EXPECT_TRUE(std::includes(both.begin(), both.end(), before.begin(), before.end()));
  // Every agent and every connected proxy holds old + new before anything is signed under new.
  ASSERT_TRUE(Eventually(
      [&] {
        return cli.AllHold({"node1", "node2", "node3"}, Join(both), 7);
      },
      std::chrono::seconds(60)))
      << cli.Ok("status") << mesh.Logs();
  for (const auto& agent : mesh.agents) EXPECT_EQ(agent->Metric("meshid_agent_proxies_behind_trust_bundle"), 0);
  cli.Ok("ca rotate activate");

  // Every certificate from before activation expires or is renewed (6 s lifetime); retire is
  // refused until then, and then takes the old root out.
  std::set<std::string> after;
  ASSERT_TRUE(Eventually([&] { return cli.Run("ca rotate retire").first == 0; }, std::chrono::seconds(60)))
      << cli.Run("ca rotate retire").second;
  for (ServerProcess* server : servers) {
    ASSERT_TRUE(Eventually(
        [&] {
          after = ServerRoots(*server);
          return kind == "intermediate" ? after == before : after.size() == both.size() - before.size();
        },
        std::chrono::seconds(30)))
        << server->Log();
  }
  ASSERT_TRUE(Eventually(
      [&] {
        return cli.AllHold({"node1", "node2", "node3"}, Join(after), 7);
      },
      std::chrono::seconds(60)))
      << cli.Ok("status");
  EXPECT_GT(load.ok(), 0);
}

TEST(CaRotationEndToEnd, RootThenIntermediateRotationUnderLoadWithZeroFailedRequests) {
  signal(SIGPIPE, SIG_IGN);
  TempDir temp("ca-rotation");
  const std::string dir = temp.path();
  ServerProcess server(dir + "/ca", {"--reload-interval", "200ms", "--signing-rate-per-caller", "0"});
  ASSERT_TRUE(server.ok()) << server.Log();
  Mesh mesh;
  mesh.Start(dir, {&server});
  const Cli cli{"--data-dir " + dir + "/ca"};
  const std::string old_roots = Join(ServerRoots(server));
  ASSERT_TRUE(Eventually(
      [&] {
        return cli.AllHold({"node1", "node2", "node3"}, old_roots, 7);
      },
      std::chrono::seconds(30)))
      << cli.Ok("status");

  LoadClient load(mesh.targets);
  ASSERT_TRUE(Eventually([&] { return load.ok() > 50; }, std::chrono::seconds(30))) << load.errors();

  // node3 is offline while the new root is published: activation waits for it.
  mesh.agents[2].reset();
  cli.Ok(absl::StrCat("ca rotate prepare --kind root --key ", dir, "/root2-key.pem"));
  cli.Ok("ca rotate publish");
  const std::set<std::string> both = [&] {
    std::set<std::string> roots;
    EXPECT_TRUE(Eventually(
        [&] {
          roots = ServerRoots(server);
          return roots.size() == 2;
        },
        std::chrono::seconds(30)));
    return roots;
  }();
  ASSERT_TRUE(Eventually(
      [&] {
        return cli.AllHold({"node1", "node2"}, Join(both), 6);
      },
      std::chrono::seconds(60)))
      << cli.Ok("status") << mesh.Logs();
  auto [held_rc, held] = cli.Run("ca rotate activate");
  EXPECT_NE(held_rc, 0) << held;
  EXPECT_THAT(held, HasSubstr("node3"));
  EXPECT_THAT(cli.Ok("ca rotate status"), HasSubstr("node3"));
  // The server's metrics count who holds the rotation back: node3 alone.
  EXPECT_EQ(server.Metric(R"(meshid_ca_rotation_adoption{state="cannot_validate"})"), 1);
  EXPECT_EQ(server.Metric(R"(meshid_ca_rotation_adoption{state="can_validate"})"), 6);
  EXPECT_EQ(server.Metric("meshid_ca_rotation_phase"), 2);

  // node3 comes back, takes the bundle and reports it: activation goes ahead.
  mesh.agents[2] = std::make_unique<AgentProcess>(server, Mesh::Node(dir, "node3"));
  ASSERT_TRUE(mesh.agents[2]->ok()) << mesh.agents[2]->Log();
  ASSERT_TRUE(Eventually([&] { return cli.AllHold({"node3"}, Join(both), 1); }, std::chrono::seconds(60)))
      << cli.Ok("status") << mesh.agents[2]->Log();
  EXPECT_EQ(server.Metric(R"(meshid_ca_rotation_adoption{state="cannot_validate"})"), 0);
  cli.Ok("ca rotate activate");
  ASSERT_TRUE(Eventually([&] { return cli.Run("ca rotate retire").first == 0; }, std::chrono::seconds(60)))
      << cli.Run("ca rotate retire").second;
  std::set<std::string> new_root;
  ASSERT_TRUE(Eventually(
      [&] {
        new_root = ServerRoots(server);
        return new_root.size() == 1 && Join(new_root) != old_roots;
      },
      std::chrono::seconds(30)));
  ASSERT_TRUE(Eventually(
      [&] {
        return cli.AllHold({"node1", "node2", "node3"}, Join(new_root), 7);
      },
      std::chrono::seconds(60)))
      << Join(new_root) << "\n"
      << cli.Ok("status --json") << mesh.agents[0]->Log();

  // A workload certificate now chains to the new root only (checked by the openssl CLI).
  Svid svid = FetchSvid(mesh.agents[0]->socket(), server.Token("default", "probe"), dir, "probe");
  ASSERT_FALSE(svid.serial.empty()) << svid.error;
  auto [verify_rc, verify_out] = RunShell(absl::StrCat("openssl verify -CAfile ", server.root_file(), " -untrusted ",
                                                       svid.files.cert, " ", svid.files.cert, " 2>&1"));
  EXPECT_EQ(verify_rc, 0) << verify_out;

  // Then an intermediate under the new root, signed by the new root's key.
  RotateUnderLoad(cli, {&server}, mesh, "intermediate", dir + "/intermediate2-key.pem", load);

  load.Stop();
  EXPECT_EQ(load.failed(), 0) << load.errors();
  EXPECT_GT(load.ok(), 200);
}

TEST(CaRotationEndToEnd, ForcedActivationNamesTheAgentThatWillFail) {
  TempDir temp("ca-rotation-force");
  const std::string dir = temp.path();
  auto server = std::make_unique<ServerProcess>(dir + "/ca", std::vector<std::string>{"--reload-interval", "200ms"});
  ASSERT_TRUE(server->ok()) << server->Log();
  const Cli cli{"--data-dir " + dir + "/ca"};
  auto online = std::make_unique<AgentProcess>(*server, Mesh::Node(dir, "online"));
  auto offline = std::make_unique<AgentProcess>(*server, Mesh::Node(dir, "offline"));
  ASSERT_TRUE(online->ok() && offline->ok()) << online->Log() << offline->Log();
  const std::string old_roots = Join(ServerRoots(*server));
  ASSERT_TRUE(Eventually(
      [&] {
        return cli.AllHold({"online", "offline"}, old_roots, 2);
      },
      std::chrono::seconds(30)))
      << cli.Ok("status");
  offline.reset();

  cli.Ok(absl::StrCat("ca rotate prepare --kind root --key ", dir, "/root2-key.pem"));
  cli.Ok("ca rotate publish");
  ASSERT_TRUE(Eventually([&] { return ServerRoots(*server).size() == 2; }, std::chrono::seconds(30)));
  const std::string both = Join(ServerRoots(*server));
  ASSERT_TRUE(Eventually([&] { return cli.AllHold({"online"}, both, 1); }, std::chrono::seconds(60)))
      << cli.Ok("status");
  auto [rc, refused] = cli.Run("ca rotate activate");
  EXPECT_NE(rc, 0);
  EXPECT_THAT(refused, HasSubstr("offline"));
  EXPECT_THAT(refused, HasSubstr("--force"));

  const std::string forced = cli.Ok("ca rotate activate --force");
  EXPECT_THAT(forced, HasSubstr("offline"));
  // `meshid status` keeps showing who holds the old roots only.
  const std::string status = cli.Ok("status");
  EXPECT_THAT(status, HasSubstr("offline"));
  bool offline_listed = false;
  for (const auto& row : cli.StatusRows()) {
    if (row["agent_id"] == "offline") {
      offline_listed = true;
      EXPECT_EQ(row["trust_bundle"], old_roots);
    }
  }
  EXPECT_TRUE(offline_listed);
  // The server signs under the new root now: `status` of the rotation says active.
  EXPECT_THAT(cli.Ok("ca rotate status"), HasSubstr("active"));

  // Once the certificates from before have expired, retire; a server restarted afterwards on
  // its own files (the old root) follows the record: it starts, and serves the new root alone.
  ASSERT_TRUE(Eventually([&] { return cli.Run("ca rotate retire").first == 0; }, std::chrono::seconds(60)))
      << cli.Run("ca rotate retire").second;
  ASSERT_TRUE(Eventually([&] { return ServerRoots(*server).size() == 1; }, std::chrono::seconds(30)));
  const std::set<std::string> new_root = ServerRoots(*server);
  EXPECT_NE(Join(new_root), old_roots);
  online.reset();
  server = std::make_unique<ServerProcess>(dir + "/ca", std::vector<std::string>{"--reload-interval", "200ms"});
  ASSERT_TRUE(server->ok()) << server->Log();
  EXPECT_THAT(server->Log(), HasSubstr("following CA rotation 1 (root, retired)"));
  EXPECT_EQ(ServerRoots(*server), new_root);
}

// Two servers on one PostgreSQL database (Istio's plug-in layout, the same files for both): a
// root rotation, then an intermediate under the new root, move both together, under load
// through agents on either.
TEST(CaRotationEndToEnd, TwoReplicasOnPostgresqlRotateRootThenIntermediateTogetherUnderLoad) {
  signal(SIGPIPE, SIG_IGN);
  auto db = TestDatabase::Create(Backend::kPostgres);
  MESHID_REQUIRE_DEPENDENCY(db != nullptr, kPostgresDependency);
  TempDir temp("ca-rotation-replicas");
  const std::string dir = temp.path();
  ASSERT_TRUE(MakePluginCa(dir + "/cacerts"));
  const std::vector<std::string> common = {"--cacerts-dir",
                                           dir + "/cacerts",
                                           "--datastore",
                                           db->url(),
                                           "--reload-interval",
                                           "200ms",
                                           "--signing-rate-per-caller",
                                           "0"};
  ServerProcess one(dir + "/one", common);
  ASSERT_TRUE(one.ok()) << one.Log();
  std::filesystem::create_directories(dir + "/two");
  std::filesystem::copy_file(dir + "/one/token-signing-key.pem", dir + "/two/token-signing-key.pem");
  ServerProcess two(dir + "/two", common);
  ASSERT_TRUE(two.ok()) << two.Log();
  Mesh mesh;
  mesh.Start(dir, {&one, &two});
  const Cli cli{absl::StrCat("--datastore '", db->url(), "'")};
  ASSERT_TRUE(Eventually(
      [&] {
        return cli.AllHold({"node1", "node2", "node3"}, Join(ServerRoots(one)), 7);
      },
      std::chrono::seconds(30)))
      << cli.Ok("status");

  LoadClient load(mesh.targets);
  ASSERT_TRUE(Eventually([&] { return load.ok() > 50; }, std::chrono::seconds(30))) << load.errors();
  RotateUnderLoad(cli, {&one, &two}, mesh, "root", dir + "/root2-key.pem", load);
  EXPECT_EQ(ServerRoots(one), ServerRoots(two));
  RotateUnderLoad(cli, {&one, &two}, mesh, "intermediate", dir + "/intermediate2-key.pem", load);
  EXPECT_EQ(ServerRoots(one), ServerRoots(two));

  load.Stop();
  EXPECT_EQ(load.failed(), 0) << load.errors();
  EXPECT_GT(load.ok(), 100);
}

}  // namespace
}  // namespace meshid::testing
