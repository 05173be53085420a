// `meshid server --ca-key pkcs11:...` with the CA key in a real SoftHSM2 token
// (tests/support/softhsm.h): a self-signed root whose key was generated in the token, and a
// plug-in intermediate whose key was imported into it (its certificate reloaded live around the
// same key), each issuing SVIDs that the openssl command line and Botan accept, and CRLs (the
// server's and `meshid certs crl`'s) that openssl accepts; no key file anywhere; refusals at
// start as one clear line; and a token removed while callers ask for certificates: UNAVAILABLE
// and not ready, no crash, and back to issuing once the token returns.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/csr.h"
#include "common/files.h"
#include "common/keys.h"
#include "common/pem.h"
#include "common/x509.h"
#include "tests/integration/ca_harness.h"
#include "tests/support/dependencies.h"
#include "tests/support/poll.h"
#include "tests/support/processes.h"
#include "tests/support/softhsm.h"
#include "tests/support/status_matchers.h"
#include "tests/support/subprocess.h"
#include "tests/support/temp_dir.h"

namespace meshid {
namespace {

using ::testing::HasSubstr;
using testing::RunShell;
using testing::ServerProcess;
using testing::SoftHsm;
using testing::Subprocess;
using testing::WriteTestFile;

const std::string kBotanCheck = BOTAN_SVID_CHECK;
const char kCaller[] = "spiffe://cluster.local/ns/default/sa/sleep";
const char kPin[] = "24680";

class HsmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MESHID_REQUIRE_DEPENDENCY(SoftHsm::Available(), SoftHsm::kMissing);
    hsm_ = std::make_unique<SoftHsm>(base_ + "/hsm");
    ASSERT_OK(hsm_->InitToken("meshid-ca", kPin));
    pin_file_ = WriteTestFile(base_ + "/pin", absl::StrCat(kPin, "\n"));
  }

  std::vector<std::string> KeyFlags(const std::string& uri) {
    return {"--ca-key", uri, "--pkcs11-module", SoftHsm::kModule, "--pkcs11-pin-file", pin_file_};
  }

  // A certificate for default/sleep from `server`, checked by openssl and Botan against
  // `root_file` (with `untrusted` as intermediates, if any).
  void IssueAndVerify(ServerProcess& server, const std::string& root_file, const std::string& untrusted = "") {
    auto key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
    auto chain =
        testing::ClientFor(server)->CreateCertificate(*BuildCsrPem(key.get()), server.Token(), absl::Minutes(30));
    ASSERT_TRUE(chain.ok()) << chain.status();
    std::string all;
    for (const auto& pem : *chain) all += pem;
    const std::string leaf_file = WriteTestFile(base_ + "/leaf.pem", chain->front());
    const std::string chain_file = WriteTestFile(base_ + "/chain.pem", all);
    auto [rc, out] =
        RunShell(absl::StrCat("openssl verify -CAfile ", root_file, untrusted.empty() ? "" : " -untrusted " + untrusted,
                              " -purpose sslclient ", leaf_file));
    EXPECT_EQ(rc, 0) << out;
    std::tie(rc, out) = RunShell(absl::StrCat(kBotanCheck, " ", root_file, " ", chain_file, " ", kCaller));
    EXPECT_EQ(out, absl::StrCat("OK ", kCaller, "\n"));
  }

  std::string Readyz(const ServerProcess& server) {
    return RunShell(absl::StrCat("curl -s -w ' %{http_code}' http://127.0.0.1:", server.monitoring_port(), "/readyz"))
        .second;
  }

  testing::TempDir temp_dir_{"meshid-hsm-it", testing::TempDir::Cleanup::kUnlessTestFailed};
  std::string base_ = temp_dir_.path();
  std::unique_ptr<SoftHsm> hsm_;
  std::string pin_file_;
};

TEST_F(HsmTest, ASelfSignedRootWithItsKeyInTheTokenIssuesAndSignsTheCrl) {
  ASSERT_OK(hsm_->GenerateKey("meshid-ca", kPin, "EC:prime256v1", "root", "01"));
  const std::string data = base_ + "/data";
  {
    ServerProcess server(data, KeyFlags("pkcs11:token=meshid-ca;object=root"));
    ASSERT_TRUE(server.ok()) << server.Log();
    EXPECT_THAT(server.Log(), HasSubstr("CA key in a PKCS#11 token: pkcs11:token=meshid-ca;object=root"));
    EXPECT_FALSE(std::filesystem::exists(data + "/ca-key.pem")) << "the key stays in the token";
    IssueAndVerify(server, server.root_file());
    // The CRL is signed through the token too.
    auto [rc, out] = RunShell(absl::StrCat(
        "curl -sf -o ", base_, "/crl.der http://127.0.0.1:", server.monitoring_port(),
        "/crl && openssl crl -inform DER -in ", base_, "/crl.der -CAfile ", server.root_file(), " -noout 2>&1"));
    EXPECT_EQ(rc, 0) << out;
    EXPECT_THAT(out, HasSubstr("verify OK"));
    EXPECT_THAT(Readyz(server), HasSubstr("ready\n 200"));
  }
  // The offline CRL command signs with the token's key too.
  std::string crl_command =
      absl::StrCat(testing::MeshidBinary(), " certs crl --data-dir ", data, " --out ", base_, "/offline-crl.pem");
  for (const std::string& flag : KeyFlags("pkcs11:token=meshid-ca;object=root"))
    absl::StrAppend(&crl_command, " '", flag, "'");
  auto [rc, out] = RunShell(absl::StrCat(crl_command, " 2>&1 && openssl crl -in ", base_, "/offline-crl.pem -CAfile ",
                                         data, "/root-cert.pem -noout 2>&1"));
  EXPECT_EQ(rc, 0) << out;
  EXPECT_THAT(out, HasSubstr("verify OK"));
  // A restart keeps the root made for the token's key.
  const std::string root = *ReadFile(data + "/ca-cert.pem");
  ServerProcess again(data, KeyFlags("pkcs11:token=meshid-ca;object=root"));
  ASSERT_TRUE(again.ok()) << again.Log();
  EXPECT_EQ(again.root(), root);
  IssueAndVerify(again, again.root_file());
}

TEST_F(HsmTest, APlugInIntermediateWithItsKeyInTheTokenIssuesAndReloadsItsCertificate) {
  const std::string cacerts = base_ + "/cacerts";
  ASSERT_TRUE(testing::MakePluginCa(cacerts));
  auto intermediate_key = PrivateKeyFromPem(*ReadFile(cacerts + "/ca-key.pem"));
  ASSERT_TRUE(intermediate_key.ok());
  ASSERT_OK(hsm_->ImportKey("meshid-ca", kPin, intermediate_key->get(), "intermediate", "0a"));
  std::filesystem::remove(cacerts + "/ca-key.pem");  // only the token has it now
  // The PIN from the environment this time.
  std::vector<std::string> flags = {
      "--cacerts-dir",   cacerts,          "--ca-key",          "pkcs11:token=meshid-ca;id=%0a",
      "--pkcs11-module", SoftHsm::kModule, "--reload-interval", "200ms"};
  setenv("MESHID_PKCS11_PIN", kPin, 1);
  ServerProcess server(base_ + "/data", flags);
  unsetenv("MESHID_PKCS11_PIN");
  ASSERT_TRUE(server.ok()) << server.Log();
  EXPECT_EQ(server.root(), *ReadFile(cacerts + "/root-cert.pem"));
  IssueAndVerify(server, cacerts + "/root-cert.pem", cacerts + "/ca-cert.pem");

  // A live reload of the files around the same key: a re-issued intermediate certificate.
  auto [rc, out] = RunShell(absl::StrCat(
      "cd ", cacerts,
      " && openssl x509 -req -in ca.csr -CA root-cert.pem -CAkey root-key.pem -CAcreateserial -days 700 -extfile "
      "int.ext -out next.pem 2>&1 && cat next.pem root-cert.pem > next-chain.pem && mv next-chain.pem cert-chain.pem "
      "&& mv next.pem ca-cert.pem"));
  ASSERT_EQ(rc, 0) << out;
  const std::string next_serial = SerialHex(CertFromPem(*ReadFile(cacerts + "/ca-cert.pem"))->get());
  EXPECT_TRUE(testing::Eventually([&] {
    auto chain = testing::ClientFor(server)->CreateCertificate(
        *BuildCsrPem(GenerateKey(KeyAlgorithm::kEcdsaP256)->get()), server.Token(), absl::Minutes(30));
    return chain.ok() && chain->size() == 3 && SerialHex(CertFromPem((*chain)[1])->get()) == next_serial;
  })) << server.Log();
  IssueAndVerify(server, cacerts + "/root-cert.pem", cacerts + "/ca-cert.pem");
  EXPECT_EQ(server.Log().find(kPin), std::string::npos) << "never log the PIN";
}

// A server whose CA key is a file rotates to a new root whose key is in the token
// (`meshid ca rotate prepare --key pkcs11:...`): from activation it signs through the token, and
// its certificates verify against the new root alone.
TEST_F(HsmTest, ARotationToARootWhoseKeyIsInTheTokenIsFollowedByTheServer) {
  ASSERT_OK(hsm_->GenerateKey("meshid-ca", kPin, "EC:prime256v1", "next-root", "02"));
  const std::string data = base_ + "/data";
  ServerProcess server(
      data, {"--reload-interval", "200ms", "--pkcs11-module", SoftHsm::kModule, "--pkcs11-pin-file", pin_file_});
  ASSERT_TRUE(server.ok()) << server.Log();
  const std::string old_root = server.root();
  auto rotate = [&](const std::string& step) {
    return RunShell(absl::StrCat(testing::MeshidBinary(), " ca rotate ", step, " --data-dir ", data, " 2>&1"));
  };
  auto [rc, out] = rotate(absl::StrCat("prepare --kind root --key 'pkcs11:token=meshid-ca;object=next-root'",
                                       " --pkcs11-module ", SoftHsm::kModule, " --pkcs11-pin-file ", pin_file_));
  ASSERT_EQ(rc, 0) << out;
  std::tie(rc, out) = rotate("publish");
  ASSERT_EQ(rc, 0) << out;
  ASSERT_TRUE(testing::Eventually([&] {
    return server.Metric("meshid_ca_rotation_ready") == 1 && server.Metric("meshid_ca_rotation_phase") == 2;
  })) << server.Log();
  auto roots = CertsFromPem(server.root());
  ASSERT_OK(roots.status());
  ASSERT_EQ(roots->size(), 2u);
  std::string new_root;
  for (const auto& r : *roots) {
    if (CertToPem(r.get()) != old_root) new_root = CertToPem(r.get());
  }
  ASSERT_FALSE(new_root.empty());
  std::tie(rc, out) = rotate("activate");  // no agent has reported: nobody to wait for
  ASSERT_EQ(rc, 0) << out;
  ASSERT_TRUE(testing::Eventually([&] { return server.Metric("meshid_ca_rotation_phase") == 3; })) << server.Log();
  IssueAndVerify(server, WriteTestFile(base_ + "/new-root.pem", new_root));
  EXPECT_THAT(server.Log(), HasSubstr("CA rotation 1 (root, active)"));
}

TEST_F(HsmTest, BadKeySettingsStopTheServerWithOneClearLine) {
  ASSERT_OK(hsm_->GenerateKey("meshid-ca", kPin, "EC:prime256v1", "root", "01"));
  const std::string wrong_pin = WriteTestFile(base_ + "/wrong-pin", "11111\n");
  struct Case {
    std::vector<std::string> flags;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"--ca-key", "pkcs11:token=meshid-ca;object=root", "--pkcs11-module", SoftHsm::kModule, "--pkcs11-pin-file",
        wrong_pin},
       "--ca-key: pkcs11:token=meshid-ca;object=root: the token refused the PIN (CKR_PIN_INCORRECT)"},
      {KeyFlags("pkcs11:token=meshid-ca;object=nope"),
       "--ca-key: pkcs11:token=meshid-ca;object=nope: no private key in the token matches"},
      {KeyFlags("pkcs11:token=elsewhere;object=root"), "no token matches (tokens present: \"meshid-ca\")"},
      {{"--ca-key", "pkcs11:token=meshid-ca;object=root", "--pkcs11-module", base_ + "/missing.so", "--pkcs11-pin-file",
        pin_file_},
       "missing.so: no such file"},
      {{"--ca-key", "pkcs11:token=meshid-ca;object=root?pin-value=24680"}, "--ca-key: PKCS#11 URI: pin-value"},
      {{"--ca-key", "/etc/ca-key.pem"}, "--ca-key: PKCS#11 URI: must start with \"pkcs11:\""},
  };
  int i = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.message);
    const std::string data = absl::StrCat(base_, "/data", i++);
    std::vector<std::string> argv = {
        testing::MeshidBinary(), "server",     "--data-dir", data, "--listen", "127.0.0.1:0",
        "--monitoring-addr",     "127.0.0.1:0"};
    argv.insert(argv.end(), c.flags.begin(), c.flags.end());
    Subprocess server(argv, data + ".log");
    auto code = server.Wait();
    ASSERT_TRUE(code.has_value()) << server.Log();
    EXPECT_NE(*code, 0);
    EXPECT_THAT(server.Log(), HasSubstr(c.message));
    EXPECT_FALSE(std::filesystem::exists(data + "/ca-cert.pem")) << "no root made without its key";
  }

  // A key file beside the token's key, and a plug-in certificate for another key.
  const std::string data = base_ + "/data-with-key-file";
  std::filesystem::create_directories(data);
  WriteTestFile(data + "/ca-key.pem", PrivateKeyToPem(GenerateKey(KeyAlgorithm::kEcdsaP256)->get())->view());
  std::vector<std::string> argv = {testing::MeshidBinary(), "server",     "--data-dir", data, "--listen", "127.0.0.1:0",
                                   "--monitoring-addr",     "127.0.0.1:0"};
  for (const std::string& flag : KeyFlags("pkcs11:token=meshid-ca;object=root")) argv.push_back(flag);
  Subprocess with_key_file(argv, data + ".log");
  ASSERT_TRUE(with_key_file.Wait().has_value());
  EXPECT_THAT(with_key_file.Log(), HasSubstr("ca-key.pem exists but the CA key is in a token"));

  const std::string cacerts = base_ + "/cacerts";
  ASSERT_TRUE(testing::MakePluginCa(cacerts));
  argv = {testing::MeshidBinary(), "server",     "--data-dir", base_ + "/data-plugin",
          "--cacerts-dir",         cacerts,      "--listen",   "127.0.0.1:0",
          "--monitoring-addr",     "127.0.0.1:0"};
  for (const std::string& flag : KeyFlags("pkcs11:token=meshid-ca;object=root")) argv.push_back(flag);
  Subprocess other_key(argv, base_ + "/data-plugin.log");
  ASSERT_TRUE(other_key.Wait().has_value());
  EXPECT_THAT(other_key.Log(), HasSubstr(absl::StrCat("pkcs11:token=meshid-ca;object=root: private key does not "
                                                      "match the certificate in ",
                                                      cacerts, "/ca-cert.pem")));
}

TEST_F(HsmTest, ATokenRemovedUnderLoadMakesTheServerUnavailableAndItRecovers) {
  auto root_key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
  ASSERT_OK(hsm_->ImportKey("meshid-ca", kPin, root_key.get(), "root", "01"));
  std::vector<std::string> flags = KeyFlags("pkcs11:token=meshid-ca;object=root");
  flags.insert(flags.end(), {"--signing-rate-per-caller", "0"});  // one caller asks as fast as it can
  ServerProcess server(base_ + "/data", flags);
  ASSERT_TRUE(server.ok()) << server.Log();
  const std::string token = server.Token();
  const std::string csr = *BuildCsrPem(GenerateKey(KeyAlgorithm::kEcdsaP256)->get());

  std::atomic<bool> stop{false};
  std::atomic<int> issued{0}, unavailable{0};
  std::atomic<int> other{0};
  std::string other_error;
  std::thread caller([&] {
    auto client = testing::ClientFor(server);
    while (!stop) {
      auto chain = client->CreateCertificate(csr, token, absl::Minutes(30));
      if (chain.ok()) {
        ++issued;
      } else if (absl::IsUnavailable(chain.status())) {
        ++unavailable;
      } else if (other++ == 0) {
        other_error = chain.status().ToString();
      }
    }
  });
  EXPECT_TRUE(testing::Eventually([&] { return issued > 10; }));
  ASSERT_OK(hsm_->DeleteToken("meshid-ca"));
  EXPECT_TRUE(testing::Eventually([&] { return unavailable > 10; }));
  EXPECT_TRUE(testing::Eventually([&] { return Readyz(server).find(" 503") != std::string::npos; }));
  EXPECT_THAT(Readyz(server), HasSubstr("the CA key's token is unavailable"));
  EXPECT_EQ(server.Metric("meshid_ca_key_available"), 0);

  ASSERT_OK(hsm_->InitToken("meshid-ca", kPin));
  ASSERT_OK(hsm_->ImportKey("meshid-ca", kPin, root_key.get(), "root", "01"));
  const int before = issued;
  EXPECT_TRUE(testing::Eventually([&] { return Readyz(server).find("ready\n 200") != std::string::npos; }));
  EXPECT_TRUE(testing::Eventually([&] { return issued > before + 10; }));
  EXPECT_EQ(server.Metric("meshid_ca_key_available"), 1);
  stop = true;
  caller.join();
  EXPECT_EQ(other.load(), 0) << other_error;
  EXPECT_THAT(server.Log(), HasSubstr("the CA key's token is unavailable"));
  IssueAndVerify(server, server.root_file());
}

}  // namespace
}  // namespace meshid
