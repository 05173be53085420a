// End-to-end tests of `meshid server` as users run it: the real binary on loopback, the C++
// CA client, the openssl command line and Botan as independent checkers.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/status.h>
#include <gtest/gtest.h>
#include <openssl/hmac.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "ca/local_issuer.h"
#include "common/base64.h"
#include "common/crl.h"
#include "common/csr.h"
#include "common/files.h"
#include "common/jwt.h"
#include "common/keys.h"
#include "common/pem.h"
#include "common/x509.h"
#include "google/rpc/status.pb.h"
#include "nodeagent/ca_client.h"
#include "tests/integration/ca_harness.h"
#include "tests/support/poll.h"
#include "tests/support/processes.h"
#include "tests/support/subprocess.h"
#include "tests/support/temp_dir.h"

namespace meshid {
namespace {

using ::testing::HasSubstr;
using testing::LocalIssuerClaims;
using testing::LocalIssuerToken;
using testing::RunShell;
using testing::ServerProcess;
using testing::Subprocess;
using testing::WriteTestFile;

const std::string kMeshid = MESHID_BINARY;
const std::string kBotanCheck = BOTAN_SVID_CHECK;
const std::string kBotanCrlCheck = BOTAN_CRL_CHECK;
const char kCaller[] = "spiffe://cluster.local/ns/default/sa/sleep";

class CaServerTest : public ::testing::Test {
 protected:
  std::unique_ptr<CaClient> Client(const ServerProcess& server, const std::string& cert = "",
                                   const std::string& key = "") {
    return testing::ClientFor(server, cert, key);
  }

  testing::TempDir temp_dir_{"meshid-ca-it", testing::TempDir::Cleanup::kUnlessTestFailed};
  std::string base_ = temp_dir_.path();
};

TEST_F(CaServerTest, IssuesSvidsThatOpensslAndBotanAccept) {
  ServerProcess server(base_ + "/data");
  ASSERT_TRUE(server.ok()) << server.Log();
  std::string token = server.Token();
  for (KeyAlgorithm algorithm :
       {KeyAlgorithm::kEcdsaP256, KeyAlgorithm::kEcdsaP384, KeyAlgorithm::kRsa2048, KeyAlgorithm::kRsa4096}) {
    SCOPED_TRACE(KeyAlgorithmName(algorithm));
    auto key = *GenerateKey(algorithm);
    CsrOptions options;
    if (algorithm == KeyAlgorithm::kEcdsaP384) options.uri_sans = {kCaller};
    auto chain = Client(server)->CreateCertificate(*BuildCsrPem(key.get(), options), token, absl::Minutes(30));
    ASSERT_TRUE(chain.ok()) << chain.status();
    ASSERT_EQ(chain->size(), 2u) << "leaf, root";
    EXPECT_EQ(chain->back(), server.root());
    std::string chain_file =
        WriteTestFile(absl::StrCat(base_, "/chain-", KeyAlgorithmName(algorithm), ".pem"), (*chain)[0] + (*chain)[1]);

    auto [rc, out] =
        RunShell(absl::StrCat("openssl verify -CAfile ", server.root_file(), " -purpose sslclient ", chain_file));
    EXPECT_EQ(rc, 0) << out;
    std::tie(rc, out) =
        RunShell(absl::StrCat("openssl verify -CAfile ", server.root_file(), " -purpose sslserver ", chain_file));
    EXPECT_EQ(rc, 0) << out;
    std::tie(rc, out) =
        RunShell(absl::StrCat("openssl x509 -in ", chain_file,
                              " -noout -subject -ext subjectAltName,keyUsage,basicConstraints,extendedKeyUsage"));
    EXPECT_NE(out.find("subject=\n"), std::string::npos) << out;
    EXPECT_NE(out.find("X509v3 Subject Alternative Name: critical\n    URI:spiffe://cluster.local/ns/default/sa/sleep"),
              std::string::npos)
        << out;
    EXPECT_NE(out.find("X509v3 Basic Constraints: critical\n    CA:FALSE"), std::string::npos) << out;
    EXPECT_NE(out.find(IsRsa(algorithm) ? "Digital Signature, Key Encipherment"
                                        : "Key Usage: critical\n    Digital Signature\n"),
              std::string::npos)
        << out;
    EXPECT_NE(out.find("TLS Web Server Authentication, TLS Web Client Authentication"), std::string::npos) << out;
    std::tie(rc, out) = RunShell(absl::StrCat(kBotanCheck, " ", server.root_file(), " ", chain_file, " ", kCaller));
    EXPECT_EQ(rc, 0) << out;
    EXPECT_EQ(out, absl::StrCat("OK ", kCaller, "\n"));
    auto leaf = *CertFromPem((*chain)[0]);
    EXPECT_NEAR(absl::ToDoubleMinutes(NotAfter(leaf.get()) - NotBefore(leaf.get())), 32, 0.1)
        << "30 min + 2 min backdating";
  }
  EXPECT_EQ(server.Metric("citadel_server_success_cert_issuance_count"), 4);
  EXPECT_NE(server.Log().find("issued certificate spiffe_id=spiffe://cluster.local/ns/default/sa/sleep serial="),
            std::string::npos);
  EXPECT_EQ(server.Log().find("PRIVATE KEY"), std::string::npos) << "never log key material";
}

TEST_F(CaServerTest, RenewalWithOwnCertificateKeepsIdentityAndRestartKeepsRoot) {
  std::string serial_before;
  {
    ServerProcess server(base_ + "/data");
    ASSERT_TRUE(server.ok()) << server.Log();
    auto key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
    auto chain =
        *Client(server)->CreateCertificate(*BuildCsrPem(key.get()), server.Token("prod", "api"), absl::ZeroDuration());
    serial_before = SerialHex(CertFromPem(server.root())->get());
    // Renew with no token at all: the client certificate is the credential.
    auto new_key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
    auto renewed = Client(server, chain[0], std::string(PrivateKeyToPem(key.get())->view()))
                       ->CreateCertificate(*BuildCsrPem(new_key.get()), "", absl::ZeroDuration());
    ASSERT_TRUE(renewed.ok()) << renewed.status();
    EXPECT_EQ(UriSans(CertFromPem((*renewed)[0])->get()),
              std::vector<std::string>{"spiffe://cluster.local/ns/prod/sa/api"});
    EXPECT_NE(server.Log().find("auth=\"client-cert serial="), std::string::npos);
    // A renewal CSR for a different identity is refused.
    CsrOptions other;
    other.uri_sans = {"spiffe://cluster.local/ns/prod/sa/admin"};
    auto refused = Client(server, chain[0], std::string(PrivateKeyToPem(key.get())->view()))
                       ->CreateCertificate(*BuildCsrPem(new_key.get(), other), "", absl::ZeroDuration());
    EXPECT_TRUE(absl::IsInvalidArgument(refused.status())) << refused.status();
  }
  ServerProcess again(base_ + "/data");
  ASSERT_TRUE(again.ok()) << again.Log();
  EXPECT_EQ(SerialHex(CertFromPem(again.root())->get()), serial_before) << "the root survives restarts";
  EXPECT_EQ(std::filesystem::status(base_ + "/data/ca-key.pem").permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
}

struct BadCase {
  std::string name;
  grpc::StatusCode code;
  std::string message;
  std::string csr;
  std::string token;
  int64_t ttl_seconds = 0;
  std::string client_cert;
  std::string client_key;
};

TEST_F(CaServerTest, BadInputsGetTheirCodeAndMessageAndNoCertificate) {
  // A second, RSA-keyed issuer from a JWKS file, as a Kubernetes API server would be configured.
  auto rsa_issuer_key = *GenerateKey(KeyAlgorithm::kRsa2048);
  std::string jwks_file =
      WriteTestFile(base_ + "/k8s-jwks.json", Jwks::FromPublicKey(rsa_issuer_key.get(), "k8s-1")->ToJson());
  ServerProcess server(base_ + "/data", {"--jwt-issuer", "https://kubernetes.default.svc=" + jwks_file});
  ASSERT_TRUE(server.ok()) << server.Log();

  auto key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
  std::string good_csr = *BuildCsrPem(key.get());
  std::string good_token = server.Token();
  auto csr_for = [](EVP_PKEY* k, CsrOptions o = {}) { return *BuildCsrPem(k, o); };
  auto csr_with = [&](auto mutate) {
    CsrOptions o;
    mutate(o);
    return csr_for(key.get(), o);
  };
  EvpPkeyPtr rsa1024(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{1024}));
  EvpPkeyPtr p192(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-192"));
  EvpPkeyPtr ed448(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED448"));
  EvpPkeyPtr ed25519(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  std::string der = (*ParsePemBlocks(good_csr))[0].der;
  std::string broken = der;
  broken[broken.size() - 4] ^= 0x55;

  nlohmann::json c = LocalIssuerClaims();
  auto with = [&](const char* k, nlohmann::json v) {
    nlohmann::json copy = c;
    if (v.is_null())
      copy.erase(k);
    else
      copy[k] = v;
    return copy;
  };
  std::string alg_none = Base64UrlEncode(R"({"alg":"none","typ":"JWT"})") + "." + Base64UrlEncode(c.dump()) + ".";
  // HS256 "signed" with the issuer's public key as the HMAC secret (the classic confusion).
  std::string public_jwks = *ReadFile(jwks_file);
  std::string hs_input = Base64UrlEncode(R"({"alg":"HS256","kid":"k8s-1"})") + "." +
                         Base64UrlEncode(with("iss", "https://kubernetes.default.svc").dump());
  unsigned char mac[32];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), public_jwks.data(), static_cast<int>(public_jwks.size()),
       reinterpret_cast<const unsigned char*>(hs_input.data()), hs_input.size(), mac, &mac_len);
  std::string hs256 = hs_input + "." + Base64UrlEncode(std::string(reinterpret_cast<char*>(mac), mac_len));
  // ES256 signature relabelled as RS256.
  auto other_key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
  auto issuer = *LocalTokenIssuer::Load(base_ + "/data", false);
  std::string forged = *SignJwt(c, other_key.get(), issuer.kid());
  // ES256 under the kid of the RSA issuer's key: the algorithm does not fit that key.
  std::string alg_confused = *SignJwt(with("iss", "https://kubernetes.default.svc"), other_key.get(), "k8s-1");

  // A client certificate from another CA (a second server), and an expired one of ours.
  ServerProcess foreign(base_ + "/foreign");
  ASSERT_TRUE(foreign.ok());
  auto foreign_chain = *Client(foreign)->CreateCertificate(good_csr, foreign.Token(), absl::ZeroDuration());
  std::string key_pem(PrivateKeyToPem(key.get())->view());
  auto short_chain = *Client(server)->CreateCertificate(good_csr, good_token, absl::Seconds(1));
  double issued_before = server.Metric("citadel_server_success_cert_issuance_count");
  std::this_thread::sleep_for(std::chrono::milliseconds(2100));

  const std::vector<BadCase> cases = {
      {"malformed PEM", grpc::INVALID_ARGUMENT, "CSR is not valid PEM", "not a pem", good_token},
      {"empty CSR", grpc::INVALID_ARGUMENT, "CSR is empty", "", good_token},
      {"two CSRs", grpc::INVALID_ARGUMENT, "CSR must be one PEM block, found 2", good_csr + good_csr, good_token},
      {"certificate instead of CSR", grpc::INVALID_ARGUMENT, "expected \"CERTIFICATE REQUEST\"", server.root(),
       good_token},
      {"DER garbage", grpc::INVALID_ARGUMENT, "not a valid DER PKCS#10", EncodePem("CERTIFICATE REQUEST", "xyz"),
       good_token},
      {"broken signature", grpc::INVALID_ARGUMENT, "CSR", EncodePem("CERTIFICATE REQUEST", broken), good_token},
      {"RSA-1024", grpc::INVALID_ARGUMENT, "RSA key of 1024 bits is not allowed", csr_for(rsa1024.get()), good_token},
      {"P-192", grpc::INVALID_ARGUMENT, "curve \"prime192v1\" is not allowed", csr_for(p192.get()), good_token},
      {"Ed448", grpc::INVALID_ARGUMENT, "Ed448 key is not allowed", csr_for(ed448.get()), good_token},
      {"Ed25519", grpc::INVALID_ARGUMENT, "Ed25519 key is not allowed", csr_for(ed25519.get()), good_token},
      {"foreign SAN", grpc::INVALID_ARGUMENT,
       "but the caller is authenticated as spiffe://cluster.local/ns/default/sa/sleep",
       csr_with([](CsrOptions& o) { o.uri_sans = {"spiffe://cluster.local/ns/kube-system/sa/admin"}; }), good_token},
      {"extra DNS SAN", grpc::INVALID_ARGUMENT, "asks for a DNS SAN", csr_with([](CsrOptions& o) {
         o.uri_sans = {kCaller};
         o.dns_sans = {"evil.example.com"};
       }),
       good_token},
      {"CA:TRUE request", grpc::INVALID_ARGUMENT, "asks for CA:TRUE",
       csr_with([](CsrOptions& o) { o.request_ca = true; }), good_token},
      {"huge CSR", grpc::INVALID_ARGUMENT, "larger than the limit", std::string(40000, 'A'), good_token},
      {"TTL too long", grpc::INVALID_ARGUMENT, "requested TTL 86401s is greater than the max allowed TTL 86400s",
       good_csr, good_token, 86401},
      {"no token", grpc::UNAUTHENTICATED, "no credentials", good_csr, ""},
      {"malformed token", grpc::UNAUTHENTICATED, "JWT must have 3 dot-separated parts", good_csr, "abc"},
      {"expired token", grpc::UNAUTHENTICATED, "JWT expired at", good_csr,
       LocalIssuerToken(server, LocalIssuerClaims(-300))},
      {"token not yet valid", grpc::UNAUTHENTICATED, "JWT is not valid before", good_csr,
       LocalIssuerToken(server, with("nbf", absl::ToUnixSeconds(absl::Now()) + 600))},
      {"wrong audience", grpc::UNAUTHENTICATED, "has none of the accepted audiences [istio-ca]", good_csr,
       server.Token("default", "sleep", "--audience api.example.com")},
      {"wrong issuer", grpc::UNAUTHENTICATED, "JWT issuer \"https://evil.example\" is not trusted", good_csr,
       LocalIssuerToken(server, with("iss", "https://evil.example"))},
      {"unknown kid", grpc::UNAUTHENTICATED, "JWT kid \"rotated-away\" is not in the issuer's key set", good_csr,
       LocalIssuerToken(server, c, "rotated-away")},
      {"alg none", grpc::UNAUTHENTICATED, "JWT alg \"none\" is not allowed", good_csr, alg_none},
      {"HS256 with the public key as secret", grpc::UNAUTHENTICATED, "JWT alg \"HS256\" is not allowed", good_csr,
       hs256},
      {"algorithm not fitting the key", grpc::UNAUTHENTICATED, "does not fit", good_csr, alg_confused},
      {"bad token signature", grpc::UNAUTHENTICATED, "JWT signature is invalid", good_csr, forged},
      {"token for another trust domain", grpc::UNAUTHENTICATED, "is not in trust domain cluster.local", good_csr,
       LocalIssuerToken(server, with("sub", "spiffe://other.example/ns/default/sa/sleep"))},
      {"token without subject", grpc::UNAUTHENTICATED, "JWT has no \"sub\" claim", good_csr,
       LocalIssuerToken(server, with("sub", nullptr))},
      {"client cert from another CA", grpc::UNAUTHENTICATED, "client certificate is not a valid certificate of this CA",
       good_csr, "", 0, foreign_chain[0], key_pem},
      {"expired client cert", grpc::UNAUTHENTICATED, "certificate has expired", good_csr, "", 0, short_chain[0],
       key_pem},
  };
  ASSERT_GE(cases.size(), 25u);
  for (const BadCase& bad : cases) {
    SCOPED_TRACE(bad.name);
    auto result = Client(server, bad.client_cert, bad.client_key)
                      ->CreateCertificate(bad.csr, bad.token, absl::Seconds(bad.ttl_seconds));
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(static_cast<int>(result.status().code()), static_cast<int>(bad.code)) << result.status();
    EXPECT_NE(std::string(result.status().message()).find(bad.message), std::string::npos) << result.status();
  }

  // Plaintext to the TLS port fails at the transport.
  CaClientOptions plaintext;
  plaintext.address = server.address();
  plaintext.insecure_plaintext = true;
  plaintext.timeout = absl::Seconds(5);
  auto result = (*CaClient::Create(plaintext))->CreateCertificate(good_csr, good_token, absl::ZeroDuration());
  EXPECT_TRUE(absl::IsUnavailable(result.status())) << result.status();

  // A message above the 1 MiB limit.
  result = Client(server)->CreateCertificate(std::string(2 << 20, 'A'), good_token, absl::ZeroDuration());
  EXPECT_TRUE(absl::IsResourceExhausted(result.status())) << result.status();

  EXPECT_EQ(server.Metric("citadel_server_success_cert_issuance_count"), issued_before) << "nothing was issued";
  EXPECT_GE(server.Metric("citadel_server_authentication_failure_count"), 15);
  // The good inputs still work afterwards.
  EXPECT_TRUE(Client(server)->CreateCertificate(good_csr, good_token, absl::ZeroDuration()).ok());
}

TEST_F(CaServerTest, PluginCaFromOpensslServesLeafIntermediateRoot) {
  std::string cacerts = base_ + "/cacerts";
  ASSERT_TRUE(testing::MakePluginCa(cacerts));
  ServerProcess server(base_ + "/data", {"--cacerts-dir", cacerts});
  ASSERT_TRUE(server.ok()) << server.Log();
  EXPECT_EQ(server.root(), *ReadFile(cacerts + "/root-cert.pem")) << "trust bundle = root-cert.pem";
  auto key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
  auto chain = Client(server)->CreateCertificate(*BuildCsrPem(key.get()), server.Token(), absl::ZeroDuration());
  ASSERT_TRUE(chain.ok()) << chain.status();
  ASSERT_EQ(chain->size(), 3u);
  EXPECT_EQ(SerialHex(CertFromPem((*chain)[1])->get()),
            SerialHex(CertFromPem(*ReadFile(cacerts + "/ca-cert.pem"))->get()));
  std::string leaf = WriteTestFile(base_ + "/leaf.pem", (*chain)[0]);
  std::string full = WriteTestFile(base_ + "/full.pem", (*chain)[0] + (*chain)[1]);
  auto [rc, out] = RunShell(
      absl::StrCat("openssl verify -CAfile ", cacerts, "/root-cert.pem -untrusted ", cacerts, "/ca-cert.pem ", leaf));
  EXPECT_EQ(rc, 0) << out;
  std::tie(rc, out) = RunShell(absl::StrCat(kBotanCheck, " ", cacerts, "/root-cert.pem ", full, " ", kCaller));
  EXPECT_EQ(rc, 0) << out;
}

// `meshid certs revoke` on the server's store, then `meshid certs crl`: openssl accepts the CRL
// (signed by the signing certificate: the root, or the plug-in intermediate) and refuses the
// revoked leaf but not the other one; so does Botan.
TEST_F(CaServerTest, RevokedCertificatesAreRefusedByOpensslAndBotanWithTheCaCrl) {
  std::string cacerts = base_ + "/cacerts";
  ASSERT_TRUE(testing::MakePluginCa(cacerts));
  for (bool plugin : {false, true}) {
    SCOPED_TRACE(plugin ? "plug-in CA" : "self-signed CA");
    const std::string data = base_ + (plugin ? "/data-plugin" : "/data");
    std::vector<std::string> extra;
    if (plugin) extra = {"--cacerts-dir", cacerts};
    ServerProcess server(data, extra);
    ASSERT_TRUE(server.ok()) << server.Log();
    std::vector<std::string> leaves, serials;
    for (int i = 0; i < 2; ++i) {
      auto key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
      auto chain = Client(server)->CreateCertificate(*BuildCsrPem(key.get()), server.Token(), absl::ZeroDuration());
      ASSERT_TRUE(chain.ok()) << chain.status();
      serials.push_back(SerialHex(CertFromPem((*chain)[0])->get()));
      leaves.push_back(WriteTestFile(absl::StrCat(data, "-leaf", i, ".pem"), (*chain)[0]));
    }
    const std::string ca_flags = plugin ? " --cacerts-dir " + cacerts : "";
    auto [rc, out] = RunShell(
        absl::StrCat(kMeshid, " certs revoke --data-dir ", data, " --reason keyCompromise ", serials[0], " 2>&1"));
    ASSERT_EQ(rc, 0) << out;
    EXPECT_THAT(out, HasSubstr("revoked " + serials[0]));
    const std::string crl = data + "-crl.pem";
    std::tie(rc, out) =
        RunShell(absl::StrCat(kMeshid, " certs crl --data-dir ", data, ca_flags, " --out ", crl, " 2>&1"));
    ASSERT_EQ(rc, 0) << out;
    // The running server publishes the same revocation by itself: <data-dir>/crl.pem and /crl.
    const std::string issuer_cert = plugin ? cacerts + "/ca-cert.pem" : server.root_file();
    auto issuer_x509 = CertFromPem(*ReadFile(issuer_cert));
    ASSERT_TRUE(issuer_x509.ok());
    auto published_lists = [&](const absl::StatusOr<std::string>& der) {
      if (!der.ok()) return false;
      auto info = VerifyCrl(*der, issuer_x509->get(), absl::Now());
      return info.ok() && info->revoked.contains(serials[0]) && !info->revoked.contains(serials[1]);
    };
    EXPECT_TRUE(
        testing::Eventually([&] { return published_lists(CrlDerFromPem(ReadFile(data + "/crl.pem").value_or(""))); },
                            std::chrono::seconds(10)))
        << server.Log();
    std::tie(rc, out) = RunShell(absl::StrCat("curl -sf http://127.0.0.1:", server.monitoring_port(),
                                              "/crl | openssl crl -inform DER -outform PEM"));
    ASSERT_EQ(rc, 0) << out;
    EXPECT_TRUE(published_lists(CrlDerFromPem(out)));
    EXPECT_GE(server.Metric("meshid_ca_crl_entries"), 1);

    std::tie(rc, out) = RunShell(absl::StrCat("openssl crl -in ", crl, " -CAfile ", issuer_cert, " -noout 2>&1"));
    EXPECT_EQ(rc, 0) << out;
    EXPECT_THAT(out, HasSubstr("verify OK"));
    const std::string verify =
        plugin ? absl::StrCat("openssl verify -crl_check -CAfile ", cacerts, "/root-cert.pem -untrusted ", cacerts,
                              "/ca-cert.pem -CRLfile ", crl, " ")
               : absl::StrCat("openssl verify -crl_check -CAfile ", server.root_file(), " -CRLfile ", crl, " ");
    std::tie(rc, out) = RunShell(verify + leaves[0] + " 2>&1");
    EXPECT_NE(rc, 0);
    EXPECT_THAT(out, HasSubstr("certificate revoked"));
    std::tie(rc, out) = RunShell(verify + leaves[1] + " 2>&1");
    EXPECT_EQ(rc, 0) << out;

    // Botan, with the chain up to the root.
    const std::string roots = plugin ? cacerts + "/root-cert.pem" : server.root_file();
    const std::string above = plugin ? " " + cacerts + "/ca-cert.pem" : "";
    for (int i = 0; i < 2; ++i) {
      const std::string chain = absl::StrCat(data, "-chain", i, ".pem");
      ASSERT_EQ(RunShell(absl::StrCat("cat ", leaves[i], above, " > ", chain)).first, 0);
      std::tie(rc, out) = RunShell(absl::StrCat(kBotanCrlCheck, " ", roots, " ", crl, " ", chain));
      if (i == 0) {
        EXPECT_NE(rc, 0);
        EXPECT_THAT(out, HasSubstr("revoked"));
      } else {
        EXPECT_EQ(rc, 0) << out;
      }
    }
  }
}

TEST_F(CaServerTest, BrokenPluginCaAndBadFlagsFailWithOneClearLine) {
  std::string cacerts = base_ + "/cacerts";
  ASSERT_TRUE(testing::MakePluginCa(cacerts));
  std::filesystem::copy_file(cacerts + "/root-key.pem", cacerts + "/ca-key.pem",
                             std::filesystem::copy_options::overwrite_existing);
  struct Case {
    std::vector<std::string> args;
    std::string message;
  } cases[] = {
      {{"--cacerts-dir", cacerts},
       cacerts + "/ca-key.pem: private key does not match the certificate in " + cacerts + "/ca-cert.pem"},
      {{"--cacerts-dir", base_ + "/nope"}, "--cacerts-dir: " + base_ + "/nope is not a directory"},
      {{"--trust-domain", "Bad.Domain"}, "--trust-domain: trust domain \"Bad.Domain\" has a character outside"},
      {{"--self-signed-key", "dsa-1024"}, "--self-signed-key: unknown key type \"dsa-1024\""},
      {{"--max-workload-cert-ttl", "forever"}, "--max-workload-cert-ttl: invalid duration \"forever\""},
      {{"--ledger-commit-interval", "soon"}, "--ledger-commit-interval: invalid duration \"soon\""},
      {{"--ledger-commit-interval", "5s"}, "--ledger-commit-interval: must be between 0 and 1s"},
      {{"--jwt-issuer", "https://x=" + base_ + "/missing.json"},
       "--jwt-issuer https://x: " + base_ + "/missing.json: No such file"},
      {{"--trusted-node-accounts", "istio-system/ztunnel,ztunnel"},
       "--trusted-node-accounts: \"ztunnel\" is not <namespace>/<serviceaccount>"},
      {{"--trusted-node-accounts", "istio-system/"},
       "--trusted-node-accounts: \"istio-system/\" is not <namespace>/<serviceaccount>"},
      {{"--trusted-node-accounts", "istio-system/ztunnel", "--datastore", "none"},
       "--trusted-node-accounts: needs a datastore (not --datastore none)"},
      {{"--signing-rate-per-caller", "-1"}, "--signing-rate-per-caller: must be 0 (no limit) or more"},
      {{"--signing-rate-per-caller", "nan"}, "--signing-rate-per-caller: must be 0 (no limit) or more"},
      {{"--signing-burst-per-caller", "0.5"},
       "--signing-burst-per-caller: must be at least 1 when --signing-rate-per-caller is set"},
      {{"--max-concurrent-signing", "-4"}, "--max-concurrent-signing: must be 0 (no limit) or more"},
      {{"--max-concurrent-signing", "many"}, "--max-concurrent-signing"},
  };
  int i = 0;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.message);
    std::vector<std::string> argv = {kMeshid,    "server",      "--data-dir",        absl::StrCat(base_, "/d", i++),
                                     "--listen", "127.0.0.1:0", "--monitoring-addr", "127.0.0.1:0"};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    Subprocess proc(argv, absl::StrCat(base_, "/bad", i, ".log"));
    auto code = proc.Wait();
    ASSERT_TRUE(code.has_value()) << "server did not exit";
    EXPECT_NE(*code, 0);
    EXPECT_NE(proc.Log().find(c.message), std::string::npos) << proc.Log();
  }
}

TEST_F(CaServerTest, TlsOnlyUnlessInsecurePlaintextAndMonitoringEndpoints) {
  ServerProcess server(base_ + "/data");
  ASSERT_TRUE(server.ok()) << server.Log();
  // s_client exits non-zero either way (gRPC closes a connection that sends no HTTP/2), so judge
  // by what was negotiated.
  auto s_client = [&](const std::string& flags) {
    return RunShell(absl::StrCat("echo | timeout 10 openssl s_client -connect ", server.address(), " -CAfile ",
                                 server.root_file(), " -alpn h2 -servername localhost ", flags))
        .second;
  };
  for (const char* version : {"-tls1_2", "-tls1_3"}) {
    std::string out = s_client(version);
    EXPECT_NE(out.find("Verify return code: 0 (ok)"), std::string::npos) << out;
    EXPECT_EQ(out.find("Cipher is (NONE)"), std::string::npos) << out;
  }
  std::string out = s_client("-verify_hostname istiod.istio-system.svc");
  EXPECT_NE(out.find("Verify return code: 0 (ok)"), std::string::npos) << out;
  out = s_client("-verify_hostname other.example.com");
  EXPECT_NE(out.find("Verify return code: 62 (hostname mismatch)"), std::string::npos) << out;
  // Offer TLS 1.1 (allowed client-side by lowering the security level): the server refuses it.
  out = s_client("-tls1_1 -cipher DEFAULT:@SECLEVEL=0");
  EXPECT_NE(out.find("Cipher is (NONE)"), std::string::npos) << "TLS 1.1 must be refused: " << out;

  int rc;
  std::tie(rc, out) = RunShell(absl::StrCat("curl -sf http://127.0.0.1:", server.monitoring_port(), "/healthz"));
  EXPECT_EQ(out, "ok\n");
  std::tie(rc, out) = RunShell(absl::StrCat("curl -sf http://127.0.0.1:", server.monitoring_port(), "/readyz"));
  EXPECT_EQ(out, "ready\n");
  EXPECT_GT(server.Metric("citadel_server_root_cert_expiry_seconds"), 86400.0 * 3600);
  std::tie(rc, out) = RunShell(
      absl::StrCat("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:", server.monitoring_port(), "/nope"));
  EXPECT_EQ(out, "404");

  ServerProcess plaintext(base_ + "/plain", {"--insecure-plaintext"});
  ASSERT_TRUE(plaintext.ok()) << plaintext.Log();
  EXPECT_NE(plaintext.Log().find("WITHOUT TLS"), std::string::npos);
  CaClientOptions options;
  options.address = plaintext.address();
  options.insecure_plaintext = true;
  auto key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
  auto chain =
      (*CaClient::Create(options))->CreateCertificate(*BuildCsrPem(key.get()), plaintext.Token(), absl::ZeroDuration());
  EXPECT_TRUE(chain.ok()) << chain.status();
}

}  // namespace
}  // namespace meshid
