// Fault tests of the issuance ledger with the real binaries: kill -9 under load (SQLite),
// PostgreSQL stopped under load, and two replicas sharing one PostgreSQL database.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "absl/strings/str_split.h"
#include "common/csr.h"
#include "common/keys.h"
#include "common/x509.h"
#include "tests/integration/ca_harness.h"
#include "tests/support/databases.h"
#include "tests/support/processes.h"
#include "tests/support/status_matchers.h"
#include "tests/support/subprocess.h"
#include "tests/support/temp_dir.h"

namespace meshid {
namespace {

using testing::ClientFor;
using ::testing::HasSubstr;
using testing::MeshidBinary;
using testing::RunShell;
using testing::ServerProcess;

const char kId[] = "spiffe://cluster.local/ns/default/sa/sleep";
// The Load below asks as one identity as fast as the CA answers: its servers run without the
// per-caller signing limit, which would refuse most of it (RESOURCE_EXHAUSTED).
const char kSigningRateFlag[] = "--signing-rate-per-caller";

// Serials of every certificate the CA handed out, and every error code seen.
class Load {
 public:
  Load(std::vector<ServerProcess*> servers, std::string token, int threads_per_server = 2) {
    for (int i = 0; i < 8; ++i) {
      auto key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
      csrs_.push_back(*BuildCsrPem(key.get()));
    }
    for (ServerProcess* server : servers) {
      for (int t = 0; t < threads_per_server; ++t) {
        threads_.emplace_back([this, server, token, t] {
          auto client = ClientFor(*server);
          for (int i = 0; !stop_; ++i) {
            auto chain = client->CreateCertificate(csrs_[(i + t) % csrs_.size()], token, absl::ZeroDuration());
            std::lock_guard<std::mutex> lock(mu_);
            if (chain.ok()) {
              received_.push_back(SerialHex(CertFromPem(chain->front())->get()));
            } else {
              errors_[chain.status().code()]++;
              last_error_ = std::string(chain.status().message());
            }
            if (!chain.ok()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
          }
        });
      }
    }
  }
  ~Load() { Stop(); }
  void Stop() {
    stop_ = true;
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  size_t received() {
    std::lock_guard<std::mutex> lock(mu_);
    return received_.size();
  }
  int errors(absl::StatusCode code) {
    std::lock_guard<std::mutex> lock(mu_);
    return errors_[code];
  }
  std::map<absl::StatusCode, int> all_errors() {
    std::lock_guard<std::mutex> lock(mu_);
    return errors_;
  }
  std::vector<std::string> serials() {
    std::lock_guard<std::mutex> lock(mu_);
    return received_;
  }
  std::string last_error() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_error_;
  }

  // Waits until `predicate` holds or `timeout` passes.
  template <typename F>
  bool WaitFor(F predicate, std::chrono::seconds timeout = std::chrono::seconds(60)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (predicate()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

 private:
  std::vector<std::string> csrs_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::vector<std::string> received_;
  std::map<absl::StatusCode, int> errors_;
  std::string last_error_;
};

// Ledger serials through the CLI (`meshid certs list --json`), with duplicates counted.
std::multiset<std::string> LedgerSerials(const std::string& store_flag) {
  auto [rc, out] = RunShell(absl::StrCat(MeshidBinary(), " certs list --json ", store_flag));
  EXPECT_EQ(rc, 0) << out;
  std::multiset<std::string> serials;
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
    auto row = nlohmann::json::parse(std::string(line), nullptr, false);
    EXPECT_FALSE(row.is_discarded()) << line;
    if (!row.is_discarded()) serials.insert(row.value("serial", ""));
  }
  return serials;
}

class StorageFaultTest : public ::testing::Test {
 protected:
  testing::TempDir temp_dir_{"meshid-store-it", testing::TempDir::Cleanup::kUnlessTestFailed};
  std::string base_ = temp_dir_.path();
};

TEST_F(StorageFaultTest, KillDashNineLosesNoCertificateAClientReceived) {
  std::string data = base_ + "/data";
  std::vector<std::string> received;
  {
    ServerProcess server(data, {kSigningRateFlag, "0"});
    ASSERT_TRUE(server.ok()) << server.Log();
    Load load({&server}, server.Token(), 4);
    ASSERT_TRUE(load.WaitFor([&] { return load.received() >= 300; })) << load.last_error();
    server.process().Kill(SIGKILL);
    load.Stop();
    received = load.serials();
  }
  // Restart on the same data directory: the ledger has every certificate any client got.
  ServerProcess restarted(data);
  ASSERT_TRUE(restarted.ok()) << restarted.Log();
  std::multiset<std::string> ledger = LedgerSerials("--data-dir " + data);
  for (const std::string& serial : received)
    EXPECT_EQ(ledger.count(serial), 1u) << serial << " was handed out but is not in the ledger";
  EXPECT_GE(ledger.size(), received.size());
  auto key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
  EXPECT_TRUE(
      ClientFor(restarted)->CreateCertificate(*BuildCsrPem(key.get()), restarted.Token(), absl::ZeroDuration()).ok());
}

// The CA signs under the registry status it keeps in memory; a change made by another process
// (the command line) while it issues under load is honoured from the next request on.
TEST_F(StorageFaultTest, RegistryChangesFromTheCommandLineReachARunningServerUnderLoad) {
  std::string data = base_ + "/data";
  ServerProcess server(data, {kSigningRateFlag, "0"});
  ASSERT_TRUE(server.ok()) << server.Log();
  std::string token = server.Token();
  auto key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
  std::string csr = *BuildCsrPem(key.get());
  auto meshid = [&](const std::string& args) {
    auto [rc, out] = RunShell(absl::StrCat(MeshidBinary(), " ", args, " --data-dir ", data));
    EXPECT_EQ(rc, 0) << args << ": " << out;
  };
  {
    Load load({&server}, token, 2);
    ASSERT_TRUE(load.WaitFor([&] { return load.received() >= 100; })) << load.last_error();
    meshid(absl::StrCat("identity block ", kId, " --reason 'key leaked'"));
    // Calls already past their commit may still arrive: at most one per load thread.
    const size_t at_block = load.received();
    ASSERT_TRUE(load.WaitFor([&] { return load.errors(absl::StatusCode::kPermissionDenied) >= 4; }));
    EXPECT_LE(load.received(), at_block + 2) << "a certificate was issued after the block";
    load.Stop();
    for (const auto& [code, n] : load.all_errors()) {
      EXPECT_EQ(code, absl::StatusCode::kPermissionDenied)
          << n << " errors with code " << absl::StatusCodeToString(code);
    }
    EXPECT_NE(load.last_error().find(std::string(kId) + " is blocked: key leaked"), std::string::npos)
        << load.last_error();
    std::multiset<std::string> ledger = LedgerSerials("--data-dir " + data);
    EXPECT_EQ(ledger.size(), load.serials().size()) << "certificates signed under the stale status are not recorded";
  }
  meshid(absl::StrCat("identity unblock ", kId));
  meshid(absl::StrCat("entry create --spiffe-id ", kId, " --dns-name sleep.default.svc"));
  auto chain = ClientFor(server)->CreateCertificate(csr, token, absl::ZeroDuration());
  ASSERT_TRUE(chain.ok()) << chain.status();
  EXPECT_EQ(DnsSans(CertFromPem(chain->front())->get()), std::vector<std::string>{"sleep.default.svc"});
  meshid(absl::StrCat("entry delete --spiffe-id ", kId));
  chain = ClientFor(server)->CreateCertificate(csr, token, absl::ZeroDuration());
  ASSERT_TRUE(chain.ok()) << chain.status();
  EXPECT_TRUE(DnsSans(CertFromPem(chain->front())->get()).empty()) << "the deleted entry's DNS name is gone";
}

TEST_F(StorageFaultTest, PostgresOutageMeansUnavailableThenRecoversByItself) {
  testing::PrivatePostgres pg;
  ASSERT_FALSE(pg.url().empty());
  ServerProcess server(base_ + "/data", {"--datastore", pg.url(), kSigningRateFlag, "0"});
  ASSERT_TRUE(server.ok()) << server.Log();
  Load load({&server}, server.Token(), 2);
  ASSERT_TRUE(load.WaitFor([&] { return load.received() >= 50; })) << load.last_error();

  EXPECT_OK(pg.Pause());
  ASSERT_TRUE(load.WaitFor([&] { return load.errors(absl::StatusCode::kUnavailable) >= 10; })) << load.last_error();
  size_t during_outage = load.received();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_LE(load.received(), during_outage + 4) << "no certificate is handed out while the ledger is down";
  for (const auto& [code, n] : load.all_errors()) {
    EXPECT_EQ(code, absl::StatusCode::kUnavailable) << n << " errors with code " << absl::StatusCodeToString(code);
  }
  EXPECT_NE(load.last_error().find("unavailable"), std::string::npos) << load.last_error();

  EXPECT_OK(pg.Resume());
  size_t before = load.received();
  EXPECT_TRUE(load.WaitFor([&] { return load.received() >= before + 50; }, std::chrono::seconds(90)))
      << "the server did not recover by itself: " << load.last_error();
  EXPECT_FALSE(server.process().Wait(std::chrono::seconds(0)).has_value()) << "the server must not exit";
  load.Stop();
  std::multiset<std::string> ledger = LedgerSerials("--datastore '" + pg.url() + "'");
  for (const std::string& serial : load.serials()) EXPECT_EQ(ledger.count(serial), 1u) << serial;
}

TEST_F(StorageFaultTest, TwoReplicasOnOnePostgresLoseNothingAndShareTheDenyList) {
  testing::PrivatePostgres pg;
  ASSERT_FALSE(pg.url().empty());
  std::string data = base_ + "/data";  // shared CA key, as replicas behind one address would have
  ServerProcess a(data, {"--datastore", pg.url(), kSigningRateFlag, "0"});
  ASSERT_TRUE(a.ok()) << a.Log();
  ServerProcess b(data, {"--datastore", pg.url(), kSigningRateFlag, "0"});
  ASSERT_TRUE(b.ok()) << b.Log();
  std::string token = a.Token();
  {
    Load load({&a, &b}, token, 2);
    ASSERT_TRUE(load.WaitFor([&] { return load.received() >= 400; })) << load.last_error();
    load.Stop();
    EXPECT_TRUE(load.all_errors().empty()) << load.last_error();
    std::multiset<std::string> ledger = LedgerSerials("--datastore '" + pg.url() + "'");
    std::set<std::string> unique(ledger.begin(), ledger.end());
    EXPECT_EQ(unique.size(), ledger.size()) << "duplicated ledger rows";
    EXPECT_EQ(ledger.size(), load.serials().size()) << "lost or extra ledger rows";
    for (const std::string& serial : load.serials()) EXPECT_EQ(ledger.count(serial), 1u) << serial;
  }

  // Blocking through one replica's database is honoured by the other on its next request.
  auto [rc, out] = RunShell(
      absl::StrCat(MeshidBinary(), " identity block ", kId, " --reason 'key leaked' --datastore '", pg.url(), "'"));
  ASSERT_EQ(rc, 0) << out;
  auto key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
  std::string csr = *BuildCsrPem(key.get());
  for (ServerProcess* server : {&b, &a}) {
    auto refused = ClientFor(*server)->CreateCertificate(csr, token, absl::ZeroDuration());
    EXPECT_TRUE(absl::IsPermissionDenied(refused.status())) << refused.status();
    EXPECT_NE(std::string(refused.status().message()).find(std::string(kId) + " is blocked"), std::string::npos);
  }
  std::tie(rc, out) =
      RunShell(absl::StrCat(MeshidBinary(), " identity unblock ", kId, " --datastore '", pg.url(), "'"));
  ASSERT_EQ(rc, 0) << out;
  EXPECT_TRUE(ClientFor(b)->CreateCertificate(csr, token, absl::ZeroDuration()).ok());
}

// Replicas are one CA when they share its material (here one data directory; or one plug-in
// cacerts directory): an agent given both replicas' addresses keeps rotating when the replica it
// uses is killed, and every certificate it got was signed by the one CA.
TEST_F(StorageFaultTest, AnAgentGivenTwoReplicasKeepsRotatingWhenOneIsKilled) {
  testing::PrivatePostgres pg;
  ASSERT_FALSE(pg.url().empty());
  std::string data = base_ + "/data";
  ServerProcess a(data, {"--datastore", pg.url()});
  ASSERT_TRUE(a.ok()) << a.Log();
  ServerProcess b(data, {"--datastore", pg.url()});
  ASSERT_TRUE(b.ok()) << b.Log();
  testing::AgentProcessOptions options;
  options.dir = base_;
  options.ca_address = absl::StrCat(a.address(), ",", b.address());
  // 4 s certificates, renewed at half their lifetime.
  options.extra_args = {"--secret-ttl", "4s", "--grace-ratio-jitter", "0"};
  testing::AgentProcess agent(a, options);
  ASSERT_TRUE(agent.ok()) << agent.Log();

  const std::string agent_id = "spiffe://cluster.local/ns/istio-system/sa/meshid-agent";
  auto agent_certs = [&] {
    auto [rc, out] = RunShell(
        absl::StrCat(MeshidBinary(), " certs list --json --spiffe-id ", agent_id, " --datastore '", pg.url(), "'"));
    EXPECT_EQ(rc, 0) << out;
    std::vector<nlohmann::json> rows;
    for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
      rows.push_back(nlohmann::json::parse(std::string(line), nullptr, false));
    }
    return rows;
  };
  auto wait_for_certs = [&](size_t n) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (agent_certs().size() < n && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return agent_certs().size() >= n;
  };
  ASSERT_TRUE(wait_for_certs(2)) << agent.Log();
  const double issued_by_a = a.Metric("citadel_server_success_cert_issuance_count");
  EXPECT_GE(issued_by_a, 2) << "the agent starts on the first replica of its list";
  a.process().Kill(SIGKILL);
  const size_t before = agent_certs().size();
  ASSERT_TRUE(wait_for_certs(before + 3)) << "no rotation after the replica died\n" << agent.Log();
  EXPECT_GE(b.Metric("citadel_server_success_cert_issuance_count"), 3) << "the second replica took over";

  std::set<std::string> issuers;
  for (const nlohmann::json& row : agent_certs()) issuers.insert(row.value("issuer_serial", ""));
  EXPECT_EQ(issuers.size(), 1u) << "certificates from more than one CA";
  const std::string log = agent.Log();
  EXPECT_EQ(log.find("expired"), std::string::npos) << "a certificate expired before its rotation\n" << log;
}

// A replica whose CA is not the one the store records for the others refuses to start, saying
// what differs and what to do, and leaves nothing behind; one given the same material starts.
TEST_F(StorageFaultTest, AReplicaWithAnotherCaRefusesToStart) {
  testing::PrivatePostgres pg;
  ASSERT_FALSE(pg.url().empty());
  const std::string first = base_ + "/first";
  ServerProcess a(first, {"--datastore", pg.url()});
  ASSERT_TRUE(a.ok()) << a.Log();
  auto start = [&](const std::string& data, const std::string& extra) {
    // A server that wrongly starts is stopped by timeout (exit status 124).
    return RunShell(absl::StrCat("timeout 20 ", MeshidBinary(), " server --data-dir ", data,
                                 " --listen 127.0.0.1:0 --monitoring-addr 127.0.0.1:0 --datastore '", pg.url(), "' ",
                                 extra));
  };
  auto copy = [&](const std::string& to, std::initializer_list<const char*> files) {
    std::filesystem::create_directories(to);
    for (const char* f : files) std::filesystem::copy_file(first + "/" + f, to + "/" + f);
  };

  {
    SCOPED_TRACE("an empty data directory: no root of its own is created");
    const std::string data = base_ + "/empty";
    auto [rc, out] = start(data, "");
    EXPECT_TRUE(rc != 0 && rc != 124) << rc << out;
    EXPECT_THAT(out, HasSubstr(data + "/ca-key.pem does not exist, and the store already records the CA"));
    EXPECT_THAT(out, HasSubstr("self-signed root in " + first));
    EXPECT_FALSE(std::filesystem::exists(data + "/ca-key.pem"));
  }
  {
    SCOPED_TRACE("a plug-in CA with another root");
    const std::string data = base_ + "/plugin";
    copy(data, {"token-signing-key.pem"});
    ASSERT_TRUE(testing::MakePluginCa(base_ + "/cacerts"));
    auto [rc, out] = start(data, "--cacerts-dir " + base_ + "/cacerts");
    EXPECT_TRUE(rc != 0 && rc != 124) << rc << out;
    EXPECT_THAT(out, HasSubstr("this server's CA shares no root with the one the store records"));
    EXPECT_THAT(out, HasSubstr("--replace-store-ca"));
  }
  {
    SCOPED_TRACE("the CA copied, but not the local token key");
    const std::string data = base_ + "/no-token-key";
    copy(data, {"ca-key.pem", "ca-cert.pem"});
    auto [rc, out] = start(data, "");
    EXPECT_TRUE(rc != 0 && rc != 124) << rc << out;
    EXPECT_THAT(out, HasSubstr(data + "/token-signing-key.pem does not exist, and the store already records the "
                                      "local token key"));
    EXPECT_FALSE(std::filesystem::exists(data + "/token-signing-key.pem"));
  }
  {
    SCOPED_TRACE("the same material: a replica");
    const std::string data = base_ + "/replica";
    copy(data, {"ca-key.pem", "ca-cert.pem", "token-signing-key.pem"});
    ServerProcess b(data, {"--datastore", pg.url()});
    ASSERT_TRUE(b.ok()) << b.Log();
    EXPECT_EQ(b.root(), a.root());
    auto key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
    auto issued = ClientFor(b)->CreateCertificate(*BuildCsrPem(key.get()), a.Token(), absl::ZeroDuration());
    EXPECT_TRUE(issued.ok()) << "a token made for one replica is accepted by the other: " << issued.status();
  }
  {
    SCOPED_TRACE("another CA on purpose");
    ServerProcess c(base_ + "/plugin",
                    {"--datastore", pg.url(), "--cacerts-dir", base_ + "/cacerts", "--replace-store-ca"});
    ASSERT_TRUE(c.ok()) << c.Log();
    EXPECT_THAT(c.Log(), HasSubstr("--replace-store-ca: the store's signing-ca is now"));
  }
}

// Each bad datastore is one line naming the problem and a non-zero exit, never a crash.
TEST_F(StorageFaultTest, BadDatastoreFailsWithOneClearLine) {
  testing::PrivatePostgres pg;
  ASSERT_FALSE(pg.url().empty());
  std::string wrong_password = pg.url();
  size_t at = wrong_password.find('@');
  size_t colon = wrong_password.rfind(':', at);
  ASSERT_NE(at, std::string::npos);
  wrong_password =
      absl::StrCat(wrong_password.substr(0, colon > wrong_password.find("//") + 2 && colon < at ? colon : at),
                   ":not-the-password", wrong_password.substr(at));

  // A read-only SQLite file, for a server that does not run as root (root may write anything).
  std::string ro = base_ + "/ro";
  std::filesystem::create_directories(ro);
  ASSERT_EQ(RunShell(absl::StrCat("chown -R nobody ", ro)).first, 0);
  // nobody runs a copy: the build tree may sit in a directory only root can enter (mktemp -d).
  const std::string nobody_meshid = base_ + "/meshid";
  std::filesystem::copy_file(MeshidBinary(), nobody_meshid);
  auto as_nobody = [&](const std::string& args) {
    return RunShell(absl::StrCat("timeout 60 runuser -u nobody -- ", nobody_meshid, " ", args));
  };
  {
    ServerProcess creator(ro);  // creates the CA files and the database, then stops
    ASSERT_TRUE(creator.ok()) << creator.Log();
  }
  ASSERT_EQ(RunShell(absl::StrCat("chown -R nobody ", ro)).first, 0);
  ASSERT_EQ(as_nobody(absl::StrCat("certs list --data-dir ", ro)).first, 0) << "nobody can read the database";
  ASSERT_EQ(RunShell(absl::StrCat("chmod 444 ", ro, "/meshid.db && chmod 555 ", ro)).first, 0);

  struct Case {
    std::string datastore;
    std::string message;
  } cases[] = {
      {"mysql://x", "--datastore: "},
      {"postgresql://user@127.0.0.1:notaport/db", "--datastore: "},
      {"postgresql://user@127.0.0.1:1/db", "--datastore: "},
      {wrong_password, "--datastore: "},
  };
  int i = 0;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.datastore);
    auto [rc, out] =
        RunShell(absl::StrCat("timeout 60 ", MeshidBinary(), " server --data-dir ", base_, "/d", i++,
                              " --listen 127.0.0.1:0 --monitoring-addr 127.0.0.1:0 --datastore '", c.datastore, "'"));
    EXPECT_NE(rc, 0);
    EXPECT_NE(rc, 124) << "must not hang";
    EXPECT_LT(rc, 128) << "must not crash";
    EXPECT_NE(out.find(c.message), std::string::npos) << out;
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << "one line: " << out;
    EXPECT_FALSE(std::filesystem::exists(absl::StrCat(base_, "/d", i - 1, "/ca-key.pem"))) << "nothing written";
  }
  auto [rc, out] = as_nobody(absl::StrCat("server --data-dir ", ro,
                                          " --listen 127.0.0.1:0 --monitoring-addr 127.0.0.1:0 "
                                          "--datastore sqlite://",
                                          ro, "/meshid.db"));
  EXPECT_NE(rc, 0);
  EXPECT_LT(rc, 124);
  EXPECT_NE(out.find("read-only"), std::string::npos) << out;
}

}  // namespace
}  // namespace meshid
