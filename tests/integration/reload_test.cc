// Live reload in the real `meshid server` (ca/reloader.h): the plug-in cacerts files replaced
// under a client that issues certificates without pause (no request fails, certificates after
// the switch chain through the new intermediate, a bad key is refused and logged), and the JWKS
// of a --jwt-issuer, as a file and as a URL, gaining a key.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <thread>
#include <tuple>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/mutex.h"
#include "common/csr.h"
#include "common/files.h"
#include "common/jwt.h"
#include "common/keys.h"
#include "common/x509.h"
#include "nodeagent/ca_client.h"
#include "tests/integration/ca_harness.h"
#include "tests/support/poll.h"
#include "tests/support/processes.h"
#include "tests/support/subprocess.h"
#include "tests/support/temp_dir.h"

namespace meshid {
namespace {

using ::testing::HasSubstr;
using testing::RunShell;
using testing::ServerProcess;
using testing::Subprocess;

constexpr char kIdp[] = "https://idp.example";

class ReloadTest : public ::testing::Test {
 protected:
  // Replaces `path` with `content` by a rename, as a careful operator (or Kubernetes) does.
  static void ReplaceFile(const std::string& path, const std::string& content) {
    ASSERT_TRUE(WriteFileAtomic(path, content, 0600).ok()) << path;
  }

  // A new intermediate "CN=<name>" under the root of MakePluginCa(`cacerts`), in `out` as the
  // plug-in files ca-key.pem, ca-cert.pem, cert-chain.pem.
  static bool MakeIntermediate(const std::string& cacerts, const std::string& out, const std::string& name) {
    std::filesystem::create_directories(out);
    const std::string script = absl::StrReplaceAll(R"(set -e; cd OUT
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca-key.pem -out ca.csr -subj "/O=Istio/CN=NAME"
openssl x509 -req -in ca.csr -CA CACERTS/root-cert.pem -CAkey CACERTS/root-key.pem -CAcreateserial -days 730 -extfile CACERTS/int.ext -out ca-cert.pem
cat ca-cert.pem CACERTS/root-cert.pem > cert-chain.pem)",
                                                   {{"OUT", out}, {"CACERTS", cacerts}, {"NAME", name}});
    auto [rc, output] = RunShell("bash -c '" + absl::StrReplaceAll(script, {{"'", "'\\''"}}) + "' 2>&1");
    EXPECT_EQ(rc, 0) << output;
    return rc == 0;
  }

  // A token of the test identity provider signed by `key`.
  static std::string IdpToken(EVP_PKEY* key, const std::string& kid) {
    const int64_t now = absl::ToUnixSeconds(absl::Now());
    return SignJwt({{"iss", kIdp},
                    {"sub", "system:serviceaccount:default:sleep"},
                    {"aud", "istio-ca"},
                    {"iat", now},
                    {"exp", now + 3600}},
                   key, kid)
        .value();
  }

  static std::string JwksOf(const std::vector<std::pair<EVP_PKEY*, std::string>>& keys) {
    nlohmann::json all = nlohmann::json::array();
    for (const auto& [key, kid] : keys) {
      all.push_back(nlohmann::json::parse(Jwks::FromPublicKey(key, kid).value().ToJson())["keys"][0]);
    }
    return nlohmann::json{{"keys", all}}.dump();
  }

  absl::StatusOr<std::vector<std::string>> Issue(const ServerProcess& server, const std::string& token) {
    auto key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
    return testing::ClientFor(server)->CreateCertificate(*BuildCsrPem(key.get()), token, absl::ZeroDuration());
  }

  testing::TempDir temp_dir_{"meshid-reload-it", testing::TempDir::Cleanup::kUnlessTestFailed};
  std::string base_ = temp_dir_.path();
};

TEST_F(ReloadTest, PluginCaFilesAreReplacedUnderLoadWithoutAFailedRequest) {
  const std::string cacerts = base_ + "/cacerts";
  ASSERT_TRUE(testing::MakePluginCa(cacerts));
  const std::string old_intermediate = *ReadFile(cacerts + "/ca-cert.pem");
  const std::string root = *ReadFile(cacerts + "/root-cert.pem");
  // One caller as fast as it can: without the per-caller limit.
  ServerProcess server(base_ + "/data",
                       {"--cacerts-dir", cacerts, "--reload-interval", "100ms", "--signing-rate-per-caller", "0"});
  ASSERT_TRUE(server.ok()) << server.Log();
  const std::string token = server.Token();

  // A client issuing certificates back to back, remembering each one's signing certificate.
  std::atomic<bool> stop{false};
  absl::Mutex mu;
  std::vector<std::string> failures;                     // guarded by mu
  std::vector<std::pair<std::string, std::string>> got;  // (leaf, signing cert), guarded by mu
  std::thread client([&] {
    auto ca = testing::ClientFor(server);
    auto key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
    const std::string csr = *BuildCsrPem(key.get());
    while (!stop) {
      auto chain = ca->CreateCertificate(csr, token, absl::ZeroDuration());
      absl::MutexLock lock(&mu);
      if (!chain.ok()) {
        failures.push_back(std::string(chain.status().message()));
      } else if (chain->size() != 3) {
        failures.push_back(absl::StrCat("a chain of ", chain->size(), " certificates"));
      } else {
        got.emplace_back((*chain)[0], (*chain)[1]);
      }
    }
  });
  auto issued_by = [&](const std::string& signing_cert) {
    absl::MutexLock lock(&mu);
    return std::count_if(got.begin(), got.end(), [&](const auto& g) { return g.second == signing_cert; });
  };
  EXPECT_TRUE(testing::Eventually([&] { return issued_by(old_intermediate) >= 20; }, std::chrono::seconds(30)));

  // The new intermediate, one file at a time with polls in between: the server sees half-written
  // sets, refuses them and keeps signing with the old key until the set is whole.
  const std::string staged = base_ + "/staged";
  ASSERT_TRUE(MakeIntermediate(cacerts, staged, "Intermediate CA 2"));
  const std::string new_intermediate = *ReadFile(staged + "/ca-cert.pem");
  for (const char* file : {"ca-cert.pem", "ca-key.pem", "cert-chain.pem"}) {
    ReplaceFile(cacerts + "/" + file, *ReadFile(staged + "/" + file));
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  EXPECT_TRUE(testing::Eventually([&] { return issued_by(new_intermediate) >= 20; }, std::chrono::seconds(30)))
      << server.Log();
  stop = true;
  client.join();

  absl::MutexLock lock(&mu);
  EXPECT_THAT(failures, ::testing::IsEmpty()) << "no request fails during the switch";
  // Once the new intermediate signed, the old one never did again.
  size_t first_new = 0;
  while (first_new < got.size() && got[first_new].second != new_intermediate) ++first_new;
  ASSERT_LT(first_new, got.size());
  for (size_t i = first_new; i < got.size(); ++i) ASSERT_EQ(got[i].second, new_intermediate) << i;
  // What the chain says is true: the leaf verifies through the new intermediate to the root.
  const std::string leaf = testing::WriteTestFile(base_ + "/leaf.pem", got.back().first);
  auto [rc, out] = RunShell(absl::StrCat("openssl verify -CAfile ", cacerts, "/root-cert.pem -untrusted ", staged,
                                         "/ca-cert.pem ", leaf, " 2>&1"));
  EXPECT_EQ(rc, 0) << out;
  const std::string old_file = testing::WriteTestFile(base_ + "/old-int.pem", old_intermediate);
  std::tie(rc, out) = RunShell(
      absl::StrCat("openssl verify -CAfile ", cacerts, "/root-cert.pem -untrusted ", old_file, " ", leaf, " 2>&1"));
  EXPECT_NE(rc, 0) << "not through the old intermediate";
  EXPECT_EQ(server.root(), root) << "the trust bundle is root-cert.pem";
  EXPECT_GE(server.Metric("meshid_ca_reload_total{result=\"ok\",what=\"cacerts\"}"), 1);
  EXPECT_GE(server.Metric("meshid_ca_reload_total{result=\"refused\",what=\"cacerts\"}"), 1) << "the half-written set";
  EXPECT_THAT(server.Log(), HasSubstr("reloaded: signing cert serial"));

  // A bad key: refused with a log line naming the file; the server keeps issuing with the key in
  // force.
  ReplaceFile(cacerts + "/ca-key.pem", *ReadFile(cacerts + "/root-key.pem"));
  const std::string refusal =
      absl::StrCat(cacerts, "/ca-key.pem: private key does not match the certificate in ", cacerts, "/ca-cert.pem");
  EXPECT_TRUE(testing::Eventually([&] { return absl::StrContains(server.Log(), refusal); }, std::chrono::seconds(10)))
      << server.Log();
  EXPECT_THAT(server.Log(), HasSubstr("refusing the new files, still signing with serial"));
  auto chain = Issue(server, token);
  ASSERT_TRUE(chain.ok()) << chain.status();
  EXPECT_EQ((*chain)[1], new_intermediate);
}

// A root rotation done live: the serving certificate follows the signing material, so that once
// the old root leaves the bundle a client trusting only the new root still reaches the server
// (gRPC and `openssl s_client` both verify the chain it serves).
TEST_F(ReloadTest, ALiveRootRotationRenewsTheServingCertificate) {
  const std::string old_ca = base_ + "/old", new_ca = base_ + "/new", cacerts = base_ + "/cacerts";
  ASSERT_TRUE(testing::MakePluginCa(old_ca));
  ASSERT_TRUE(testing::MakePluginCa(new_ca));
  std::filesystem::create_directories(cacerts);
  for (const char* file : {"ca-key.pem", "ca-cert.pem", "cert-chain.pem", "root-cert.pem"}) {
    ReplaceFile(cacerts + "/" + file, *ReadFile(old_ca + "/" + file));
  }
  ServerProcess server(base_ + "/data", {"--cacerts-dir", cacerts, "--reload-interval", "100ms"});
  ASSERT_TRUE(server.ok()) << server.Log();
  const std::string token = server.Token();
  const std::string old_root = *ReadFile(old_ca + "/root-cert.pem");
  const std::string new_root = *ReadFile(new_ca + "/root-cert.pem");
  auto issue_trusting = [&](const std::string& roots) {
    CaClientOptions options;
    options.address = server.address();
    options.root_cert_pem = roots;
    options.timeout = absl::Seconds(5);
    auto key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
    return CaClient::Create(options).value()->CreateCertificate(*BuildCsrPem(key.get()), token, absl::ZeroDuration());
  };
  // The chain the server serves, as openssl verifies it against `roots_file` alone.
  auto openssl_verifies = [&](const std::string& roots_file) {
    const std::string out = RunShell(absl::StrCat("openssl s_client -connect ", server.address(), " -CAfile ",
                                                  roots_file, " -verify_return_error -brief < /dev/null 2>&1"))
                                .second;
    // The verdict, not the exit status: gRPC may drop the idle connection without close_notify
    // once the handshake is done, and s_client then exits 1 ("unexpected eof").
    return absl::StrContains(out, "Verification: OK");
  };
  ASSERT_TRUE(issue_trusting(old_root).ok());
  EXPECT_TRUE(openssl_verifies(old_ca + "/root-cert.pem"));

  // The new signing material with both roots in the bundle: agents holding the bundle reach it.
  for (const char* file : {"ca-key.pem", "ca-cert.pem", "cert-chain.pem"}) {
    ReplaceFile(cacerts + "/" + file, *ReadFile(new_ca + "/" + file));
  }
  ReplaceFile(cacerts + "/root-cert.pem", new_root + old_root);
  EXPECT_TRUE(testing::Eventually([&] { return issue_trusting(new_root).ok(); }, std::chrono::seconds(20)))
      << server.Log();
  EXPECT_TRUE(issue_trusting(server.root()).ok()) << "the trust bundle the server writes for agents";

  // The old root leaves: a client that trusts only the new root is served, by gRPC and openssl.
  ReplaceFile(cacerts + "/root-cert.pem", new_root);
  EXPECT_TRUE(testing::Eventually([&] { return server.root() == new_root; }, std::chrono::seconds(20)));
  auto chain = issue_trusting(new_root);
  ASSERT_TRUE(chain.ok()) << chain.status() << server.Log();
  EXPECT_EQ((*chain)[1], *ReadFile(new_ca + "/ca-cert.pem"));
  // gRPC re-reads the serving files about every second.
  EXPECT_TRUE(
      testing::Eventually([&] { return openssl_verifies(new_ca + "/root-cert.pem"); }, std::chrono::seconds(20)))
      << server.Log();
  EXPECT_FALSE(openssl_verifies(old_ca + "/root-cert.pem")) << "no longer served from the old chain";
  EXPECT_THAT(server.Log(), HasSubstr("serving certificate renewed"));
}

TEST_F(ReloadTest, JwksFileGainsAKey) {
  auto old_key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
  auto new_key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
  const std::string jwks = testing::WriteTestFile(base_ + "/jwks.json", JwksOf({{old_key.get(), "old"}}));
  ServerProcess server(base_ + "/data", {"--jwt-issuer", absl::StrCat(kIdp, "=", jwks), "--reload-interval", "100ms"});
  ASSERT_TRUE(server.ok()) << server.Log();
  const std::string token = IdpToken(new_key.get(), "new");
  ASSERT_TRUE(Issue(server, IdpToken(old_key.get(), "old")).ok());
  auto refused = Issue(server, token);
  EXPECT_TRUE(absl::IsUnauthenticated(refused.status())) << refused.status();

  ReplaceFile(jwks, JwksOf({{old_key.get(), "old"}, {new_key.get(), "new"}}));
  EXPECT_TRUE(testing::Eventually([&] { return Issue(server, token).ok(); }, std::chrono::seconds(10))) << server.Log();
  EXPECT_GE(server.Metric("meshid_ca_reload_total{result=\"ok\",what=\"jwks\"}"), 1);

  // A broken file is refused; the keys in force stay.
  ReplaceFile(jwks, "{\"keys\": [");
  EXPECT_TRUE(testing::Eventually([&] { return absl::StrContains(server.Log(), "keeping the keys in force"); },
                                  std::chrono::seconds(10)))
      << server.Log();
  EXPECT_THAT(server.Log(), HasSubstr(absl::StrCat("--jwt-issuer ", kIdp, ": ", jwks, ": ")));
  EXPECT_TRUE(Issue(server, token).ok());
  EXPECT_GE(server.Metric("meshid_ca_reload_total{result=\"refused\",what=\"jwks\"}"), 1);
}

TEST_F(ReloadTest, JwksUrlIsFetchedAgainAtTheRefreshInterval) {
  auto old_key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
  auto new_key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
  const std::string www = base_ + "/www";
  std::filesystem::create_directories(www);
  testing::WriteTestFile(www + "/jwks.json", JwksOf({{old_key.get(), "old"}}));
  Subprocess http({"/usr/bin/python3", "-u", "-m", "http.server", "--bind", "127.0.0.1", "--directory", www, "0"},
                  base_ + "/http.log");
  auto port = http.WaitForLog("Serving HTTP on 127.0.0.1 port ([0-9]+)");
  ASSERT_TRUE(port.has_value()) << http.Log();
  const std::string url = absl::StrCat("http://127.0.0.1:", *port, "/jwks.json");
  ServerProcess server(base_ + "/data",
                       {"--jwt-issuer", absl::StrCat(kIdp, "=", url), "--jwks-refresh-interval", "1s"});
  ASSERT_TRUE(server.ok()) << server.Log();
  const std::string token = IdpToken(new_key.get(), "new");
  ASSERT_TRUE(Issue(server, IdpToken(old_key.get(), "old")).ok()) << server.Log();
  EXPECT_TRUE(absl::IsUnauthenticated(Issue(server, token).status()));

  ReplaceFile(www + "/jwks.json", JwksOf({{new_key.get(), "new"}}));
  EXPECT_TRUE(testing::Eventually([&] { return Issue(server, token).ok(); }, std::chrono::seconds(15))) << server.Log();
  EXPECT_TRUE(absl::IsUnauthenticated(Issue(server, IdpToken(old_key.get(), "old")).status()))
      << "the key the identity provider removed";

  // The identity provider goes away: the keys in force stay, the failure is logged and counted.
  http.Kill(SIGKILL);
  EXPECT_TRUE(
      testing::Eventually([&] { return server.Metric("meshid_ca_reload_total{result=\"failed\",what=\"jwks\"}") >= 1; },
                          std::chrono::seconds(15)))
      << server.Log();
  EXPECT_TRUE(Issue(server, token).ok());
  EXPECT_THAT(server.Log(), HasSubstr(absl::StrCat("--jwt-issuer ", kIdp, ": ")));
}

}  // namespace
}  // namespace meshid
