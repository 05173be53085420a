// Policy distribution end to end with the real binaries: `meshid apply` → server → agent →
// proxy, a new version under load, a proxy's NACK in `meshid status`, two servers on one
// PostgreSQL, and broken YAML that stores nothing.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/integration/ca_harness.h"
#include "tests/support/databases.h"
#include "tests/support/poll.h"
#include "tests/support/processes.h"
#include "tests/support/subprocess.h"
#include "tests/support/temp_dir.h"

namespace meshid {
namespace {

using testing::AgentProcess;
using testing::Eventually;
using ::testing::HasSubstr;
using testing::MeshidBinary;
using testing::RunShell;
using testing::ServerProcess;
using testing::Subprocess;
using testing::WriteTestFile;

struct HttpResult {
  int status = -1;  // -1: no HTTP answer (refused, closed, timed out)
  std::string body;
};

// One HTTP/1.1 GET over a fresh connection ("Connection: close").
HttpResult HttpGet(const std::string& host_port, const std::string& path, const std::string& host = "") {
  HttpResult result;
  std::pair<std::string, std::string> hp = absl::StrSplit(host_port, absl::MaxSplits(':', 1));
  int port = 0;
  if (!absl::SimpleAtoi(hp.second, &port)) return result;
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return result;
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, hp.first.c_str(), &addr.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return result;
  }
  std::string request = absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: ", host.empty() ? host_port : host,
                                     "\r\nConnection: close\r\n\r\n");
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size())) {
    ::close(fd);
    return result;
  }
  std::string response;
  char buf[4096];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    response.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  if (!absl::StartsWith(response, "HTTP/1.1 ") || response.size() < 12) return result;
  absl::SimpleAtoi(response.substr(9, 3), &result.status);
  size_t body = response.find("\r\n\r\n");
  if (body != std::string::npos) result.body = response.substr(body + 4);
  return result;
}

std::string Fetch(int port, const std::string& path) { return HttpGet(absl::StrCat("127.0.0.1:", port), path).body; }

// `meshid status --json` of a store.
nlohmann::json Status(const std::string& store_flag) {
  auto [rc, out] = RunShell(absl::StrCat(MeshidBinary(), " status --json ", store_flag));
  auto j = nlohmann::json::parse(out, nullptr, false);
  if (rc != 0 || j.is_discarded()) return nlohmann::json::object();
  return j;
}

// The status row of the proxy of `service`, or an empty object (callers read it with value()).
nlohmann::json ProxyRow(const nlohmann::json& status, const std::string& service) {
  if (!status.contains("proxies")) return nlohmann::json::object();
  for (const auto& p : status["proxies"]) {
    if (p.value("service", "") == service && p.value("connected", false)) return p;
  }
  return nlohmann::json::object();
}

const char kStrict[] = R"(apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: default, namespace: demo}
spec: {mtls: {mode: STRICT}}
)";

// hello-b: hello-a may GET `paths`.
std::string AllowPaths(const std::string& paths) {
  return absl::StrCat(R"(apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: hello-b-viewers, namespace: demo}
spec:
  selector: {matchLabels: {app: hello-b}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/demo/sa/hello-a"]}}]
    to: [{operation: {methods: ["GET"], paths: [)",
                      paths, R"(]}}]
)");
}

class PolicyDistributionTest : public ::testing::Test {
 protected:
  void SetUp() override { std::filesystem::create_directories(base_ + "/policies"); }
  void TearDown() override {
    procs_.clear();  // every process is killed here, also after a failed assertion
    agents_.clear();
  }

  Subprocess& Start(const std::string& name, std::vector<std::string> args) {
    args.insert(args.begin(), MeshidBinary());
    procs_.push_back(std::make_unique<Subprocess>(args, absl::StrCat(base_, "/", name, ".log")));
    return *procs_.back();
  }

  // An agent of `server` on its own socket; returns the socket path.
  std::string StartAgent(ServerProcess& server, const std::string& id) {
    testing::AgentProcessOptions options;
    options.dir = base_;
    options.name = id;
    options.extra_args = {"--agent-id", id};
    agents_.push_back(std::make_unique<AgentProcess>(server, std::move(options)));
    EXPECT_TRUE(agents_.back()->ok()) << agents_.back()->Log();
    return agents_.back()->socket();
  }

  struct Workload {
    std::string app;      // hello's address
    std::string inbound;  // the proxy's inbound address
    std::string outbound;
    int admin = 0;
  };

  // hello (answering HELLO <version>) behind a proxy taking policy from the agent at `socket`.
  Workload StartWorkload(ServerProcess& server, const std::string& socket, const std::string& service,
                         const std::vector<std::string>& upstreams = {}) {
    Workload w;
    Subprocess& hello = Start(service + "-app", {"hello", "--listen", "127.0.0.1:0", "--version", service});
    auto app = hello.WaitForLog(R"(listening on (127\.0\.0\.1:\d+))");
    EXPECT_TRUE(app) << hello.Log();
    w.app = app.value_or("");
    std::string token = WriteTestFile(absl::StrCat(base_, "/", service, ".token"), server.Token("demo", service));
    std::vector<std::string> args = {
        "proxy",       "--sds-socket", socket,        "--token-file",       token,       "--service",   service,
        "--namespace", "demo",         "--label",     "app=" + service,     "--inbound", "127.0.0.1:0", "--app",
        w.app,         "--admin-addr", "127.0.0.1:0", "--policy-from-agent"};
    if (!upstreams.empty()) {
      args.insert(args.end(), {"--outbound", "127.0.0.1:0"});
      for (const auto& u : upstreams) args.insert(args.end(), {"--upstream", u});
    }
    Subprocess& proxy = Start(service + "-proxy", args);
    w.inbound = proxy.WaitForLog(R"(inbound listening on (127\.0\.0\.1:\d+))").value_or("");
    if (!upstreams.empty()) w.outbound = proxy.WaitForLog(R"(outbound listening on (127\.0\.0\.1:\d+))").value_or("");
    auto admin = proxy.WaitForLog(R"(admin on port (\d+))");
    EXPECT_TRUE(admin) << proxy.Log();
    w.admin = admin ? std::stoi(*admin) : 0;
    // Ready: certificate, trust bundle and a policy (version 0, the empty set, at the least).
    EXPECT_TRUE(Eventually([&] { return HttpGet(absl::StrCat("127.0.0.1:", w.admin), "/ready").status == 200; }))
        << proxy.Log();
    return w;
  }

  // The policy version a proxy enforces ("" for none), from its admin endpoint.
  std::string ProxyVersion(const Workload& w) {
    auto j = nlohmann::json::parse(Fetch(w.admin, "/policy"), nullptr, false);
    return j.is_object() ? j.value("version", "") : "";
  }

  std::pair<int, std::string> Apply(const std::string& store_flag, const std::string& path) {
    return RunShell(absl::StrCat(MeshidBinary(), " apply -f ", path, " ", store_flag));
  }

  testing::TempDir temp_dir_{"meshid-policy-it", testing::TempDir::Cleanup::kUnlessTestFailed};
  std::string base_ = temp_dir_.path();
  std::vector<std::unique_ptr<Subprocess>> procs_;
  std::vector<std::unique_ptr<AgentProcess>> agents_;
};

TEST_F(PolicyDistributionTest, ApplyReachesTheProxyThroughServerAndAgent) {
  std::string data = base_ + "/data";
  ServerProcess server(data, {"--policy-poll-interval", "200ms"});
  ASSERT_TRUE(server.ok()) << server.Log();
  std::string socket = StartAgent(server, "node-1");
  Workload b = StartWorkload(server, socket, "hello-b");
  Workload a = StartWorkload(server, socket, "hello-a", {"hello-b=" + b.inbound});
  // Before anything was applied the proxies run version 0, the empty set (Istio's defaults).
  ASSERT_TRUE(Eventually([&] { return ProxyVersion(a) == "0" && ProxyVersion(b) == "0"; })) << ProxyVersion(b);

  WriteTestFile(base_ + "/policies/strict.yaml", kStrict);
  WriteTestFile(base_ + "/policies/allow.yaml", AllowPaths(R"("/hello")"));
  auto [rc, out] = Apply("--data-dir " + data, base_ + "/policies");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_THAT(out, HasSubstr("policy version 1 stored (2 created"));

  ASSERT_TRUE(Eventually([&] { return ProxyVersion(a) == "1" && ProxyVersion(b) == "1"; }))
      << "a: " << ProxyVersion(a) << " b: " << ProxyVersion(b);
  // Enforced: allowed, denied, plaintext refused.
  EXPECT_EQ(HttpGet(a.outbound, "/hello", "hello-b").status, 200);
  EXPECT_EQ(HttpGet(a.outbound, "/hello", "hello-b").body, "HELLO hello-b\n");
  EXPECT_EQ(HttpGet(a.outbound, "/admin", "hello-b").status, 403);
  EXPECT_EQ(HttpGet(b.inbound, "/hello").status, -1);

  // `meshid status` (from the store) shows the agent and both proxies on version 1.
  ASSERT_TRUE(Eventually([&] {
    auto s = Status("--data-dir " + data);
    return ProxyRow(s, "hello-a").value("state", "") == "SYNCED" &&
           ProxyRow(s, "hello-b").value("state", "") == "SYNCED";
  })) << Status("--data-dir " + data).dump(2);
  auto s = Status("--data-dir " + data);
  EXPECT_EQ(s["version"]["version"], 1);
  ASSERT_EQ(s["agents"].size(), 1u);
  EXPECT_EQ(s["agents"][0]["agent_id"], "node-1");
  EXPECT_EQ(s["agents"][0]["applied_version"], 1);
  EXPECT_EQ(s["agents"][0]["reporter"], "spiffe://cluster.local/ns/istio-system/sa/meshid-agent");
  auto row = ProxyRow(s, "hello-b");
  EXPECT_EQ(row["namespace"], "demo");
  EXPECT_EQ(row["agent_id"], "node-1");
  EXPECT_THAT(row["proxy_id"].get<std::string>(), HasSubstr("hello-b.demo~"));
  EXPECT_EQ(row["applied_version"], 1);

  // The table form says the same.
  auto [trc, table] = RunShell(absl::StrCat(MeshidBinary(), " status --data-dir ", data));
  EXPECT_EQ(trc, 0);
  EXPECT_THAT(table, HasSubstr("policy version 1: 2 objects"));
  EXPECT_THAT(table, HasSubstr("hello-b"));
}

TEST_F(PolicyDistributionTest, ANewVersionUnderLoadSwitchesEveryProxyWithoutAFailedRequest) {
  std::string data = base_ + "/data";
  ServerProcess server(data, {"--policy-poll-interval", "200ms"});
  ASSERT_TRUE(server.ok()) << server.Log();
  std::string socket = StartAgent(server, "node-1");
  WriteTestFile(base_ + "/policies/strict.yaml", kStrict);
  WriteTestFile(base_ + "/policies/allow.yaml", AllowPaths(R"("/hello")"));
  ASSERT_EQ(Apply("--data-dir " + data, base_ + "/policies").first, 0);
  Workload b = StartWorkload(server, socket, "hello-b");
  Workload a = StartWorkload(server, socket, "hello-a", {"hello-b=" + b.inbound});
  ASSERT_TRUE(Eventually([&] { return ProxyVersion(a) == "1" && ProxyVersion(b) == "1"; }));
  ASSERT_EQ(HttpGet(a.outbound, "/admin", "hello-b").status, 403);

  std::atomic<bool> stop{false};
  std::atomic<int> ok{0};
  std::mutex mu;
  std::map<int, int> failures;  // status → count
  std::vector<std::thread> load;
  for (int t = 0; t < 4; ++t) {
    load.emplace_back([&] {
      while (!stop) {
        HttpResult r = HttpGet(a.outbound, "/hello", "hello-b");
        if (r.status == 200 && r.body == "HELLO hello-b\n") {
          ++ok;
        } else {
          std::lock_guard<std::mutex> lock(mu);
          failures[r.status]++;
        }
      }
    });
  }
  // Versions 2..6 under load; each keeps /hello allowed, the last also allows /admin.
  for (int v = 2; v <= 6; ++v) {
    int before = ok.load();
    ASSERT_TRUE(Eventually([&] { return ok.load() >= before + 20; })) << "the load stalled";
    std::string paths = v == 6 ? R"("/hello", "/admin")" : absl::StrCat(R"("/hello", "/v)", v, R"(")");
    WriteTestFile(base_ + "/policies/allow.yaml", AllowPaths(paths));
    auto [rc, out] = Apply("--data-dir " + data, base_ + "/policies");
    ASSERT_EQ(rc, 0) << out;
    ASSERT_THAT(out, HasSubstr(absl::StrCat("policy version ", v, " stored")));
    ASSERT_TRUE(Eventually([&] { return ProxyVersion(b) == absl::StrCat(v); })) << ProxyVersion(b);
  }
  int before = ok.load();
  ASSERT_TRUE(Eventually([&] { return ok.load() >= before + 20; }));
  stop = true;
  for (auto& t : load) t.join();
  EXPECT_GT(ok.load(), 100);
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_TRUE(failures.empty()) << "failed requests by status (-1: no answer): " << [&] {
    std::string s;
    for (const auto& [status, n] : failures) absl::StrAppend(&s, status, "×", n, " ");
    return s;
  }();
  // The last version is in force on both proxies: /admin is allowed now.
  EXPECT_EQ(ProxyVersion(a), "6");
  EXPECT_EQ(HttpGet(a.outbound, "/admin", "hello-b").status, 200);
}

TEST_F(PolicyDistributionTest, AProxyNackIsVisibleInStatusAndTheLastGoodPolicyStays) {
  std::string data = base_ + "/data";
  ServerProcess server(data, {"--policy-poll-interval", "200ms"});
  ASSERT_TRUE(server.ok()) << server.Log();
  std::string socket = StartAgent(server, "node-1");
  Workload b = StartWorkload(server, socket, "hello-b");
  Workload a = StartWorkload(server, socket, "hello-a", {"hello-b=" + b.inbound});
  WriteTestFile(base_ + "/policies/strict.yaml", kStrict);
  WriteTestFile(base_ + "/policies/allow.yaml", AllowPaths(R"("/hello")"));
  ASSERT_EQ(Apply("--data-dir " + data, base_ + "/policies").first, 0);
  ASSERT_TRUE(Eventually([&] { return ProxyVersion(b) == "1"; }));

  // Version 2 needs a key set no proxy can load: valid YAML (apply stores it), but hello-b's
  // proxy refuses it and keeps version 1.
  WriteTestFile(base_ + "/policies/jwt.yaml", R"(apiVersion: security.istio.io/v1beta1
kind: RequestAuthentication
metadata: {name: jwt, namespace: demo}
spec:
  selector: {matchLabels: {app: hello-b}}
  jwtRules:
  - issuer: https://issuer.example
    jwksUri: file:///nonexistent/meshid-test-jwks.json
)");
  auto [rc, out] = Apply("--data-dir " + data, base_ + "/policies");
  ASSERT_EQ(rc, 0) << out;
  ASSERT_THAT(out, HasSubstr("policy version 2 stored"));

  nlohmann::json row;
  ASSERT_TRUE(Eventually([&] {
    row = ProxyRow(Status("--data-dir " + data), "hello-b");
    return row.value("state", "") == "NACKED";
  })) << Status("--data-dir " + data).dump(2);
  EXPECT_EQ(row["rejected_version"], 2);
  EXPECT_EQ(row["applied_version"], 1);
  EXPECT_THAT(row["last_error"].get<std::string>(), HasSubstr("meshid-test-jwks.json"));
  EXPECT_EQ(ProxyVersion(b), "1");
  EXPECT_EQ(HttpGet(a.outbound, "/hello", "hello-b").status, 200) << "version 1 is still enforced";
  auto [trc, table] = RunShell(absl::StrCat(MeshidBinary(), " status --data-dir ", data));
  EXPECT_THAT(table, HasSubstr("NACKED"));
  EXPECT_THAT(table, HasSubstr("rejected 2: "));

  // The fix (version 3) is taken again.
  std::filesystem::remove(base_ + "/policies/jwt.yaml");
  auto [frc, fout] = RunShell(absl::StrCat(MeshidBinary(), " apply --prune -f ", base_, "/policies --data-dir ", data));
  ASSERT_EQ(frc, 0) << fout;
  EXPECT_THAT(fout, HasSubstr("RequestAuthentication demo/jwt deleted"));
  ASSERT_TRUE(
      Eventually([&] { return ProxyRow(Status("--data-dir " + data), "hello-b").value("state", "") == "SYNCED"; }));
  EXPECT_EQ(ProxyVersion(b), "3");
}

TEST_F(PolicyDistributionTest, BrokenYamlStoresNothingAndSaysWhereAndWhy) {
  std::string data = base_ + "/data";
  WriteTestFile(base_ + "/policies/a-good.yaml", kStrict);
  WriteTestFile(base_ + "/policies/b-bad.yaml", R"(apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: typo, namespace: demo}
spec:
  rules:
  - to: [{operation: {method: ["GET"]}}]
)");
  auto [rc, out] = RunShell(absl::StrCat(MeshidBinary(), " apply -f ", base_, "/policies --data-dir ", data));
  EXPECT_EQ(rc, 2) << out;
  EXPECT_THAT(out, HasSubstr(base_ + "/policies/b-bad.yaml:6: AuthorizationPolicy demo/typo: "
                                     "spec.rules[0].to[0].operation.method: unknown field"));
  EXPECT_THAT(out, HasSubstr("nothing stored: 1 error"));
  auto [src, status] = RunShell(absl::StrCat(MeshidBinary(), " status --data-dir ", data));
  EXPECT_EQ(src, 0) << status;
  EXPECT_THAT(status, HasSubstr("no policy version yet"));

  // Also with a version stored already: it stays the newest.
  std::filesystem::remove(base_ + "/policies/b-bad.yaml");
  ASSERT_EQ(Apply("--data-dir " + data, base_ + "/policies").first, 0);
  WriteTestFile(base_ + "/policies/c-syntax.yaml", "kind: [unclosed\n");
  auto [rc2, out2] = Apply("--data-dir " + data, base_ + "/policies");
  EXPECT_EQ(rc2, 2) << out2;
  EXPECT_THAT(out2, HasSubstr(base_ + "/policies/c-syntax.yaml:"));
  EXPECT_EQ(Status("--data-dir " + data)["version"]["version"], 1);
}

TEST_F(PolicyDistributionTest, TwoServersOnOnePostgresDeliverEveryVersionToTheirAgents) {
  testing::PrivatePostgres pg;
  ASSERT_FALSE(pg.url().empty());
  // Two replicas on one database, each with its own data dir holding a copy of the first one's
  // CA and token key (a replica with a root of its own is refused: docs/operations.md, Replicas).
  std::string data1 = base_ + "/data1";
  std::string data2 = base_ + "/data2";
  ServerProcess one(data1, {"--datastore", pg.url(), "--policy-poll-interval", "200ms"});
  ASSERT_TRUE(one.ok()) << one.Log();
  std::filesystem::create_directories(data2);
  for (const char* file : {"ca-key.pem", "ca-cert.pem", "token-signing-key.pem"}) {
    std::filesystem::copy_file(data1 + "/" + file, data2 + "/" + file);
  }
  ServerProcess two(data2, {"--datastore", pg.url(), "--policy-poll-interval", "200ms"});
  ASSERT_TRUE(two.ok()) << two.Log();
  std::string socket1 = StartAgent(one, "node-1");
  std::string socket2 = StartAgent(two, "node-2");
  Workload b1 = StartWorkload(one, socket1, "hello-b");
  Workload b2 = StartWorkload(two, socket2, "hello-c");
  const std::string store = "--datastore '" + pg.url() + "'";

  WriteTestFile(base_ + "/policies/strict.yaml", kStrict);
  ASSERT_EQ(Apply(store, base_ + "/policies").first, 0);
  ASSERT_TRUE(Eventually([&] { return ProxyVersion(b1) == "1" && ProxyVersion(b2) == "1"; }))
      << ProxyVersion(b1) << " " << ProxyVersion(b2);
  WriteTestFile(base_ + "/policies/allow.yaml", AllowPaths(R"("/hello")"));
  ASSERT_EQ(Apply(store, base_ + "/policies").first, 0);
  ASSERT_TRUE(Eventually([&] { return ProxyVersion(b1) == "2" && ProxyVersion(b2) == "2"; }));

  // Both replicas logged serving it; status (any replica's reports, one store) has both agents.
  EXPECT_THAT(one.Log(), HasSubstr("serving policy version 2"));
  EXPECT_THAT(two.Log(), HasSubstr("serving policy version 2"));
  ASSERT_TRUE(Eventually([&] {
    auto s = Status(store);
    return ProxyRow(s, "hello-b").value("applied_version", 0) == 2 &&
           ProxyRow(s, "hello-c").value("applied_version", 0) == 2;
  })) << Status(store).dump(2);
  auto s = Status(store);
  EXPECT_EQ(s["agents"].size(), 2u);
  EXPECT_EQ(ProxyRow(s, "hello-b")["agent_id"], "node-1");
  EXPECT_EQ(ProxyRow(s, "hello-c")["agent_id"], "node-2");
}

}  // namespace
}  // namespace meshid
