// `meshid proxy` end to end: real `meshid server`, `meshid agent` and proxies on loopback, an
// HTTP echo app and a TCP echo app, clients with certificates minted from the mesh's CA (and a
// foreign one), curl and openssl s_client.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_replace.h"
#include "common/jwt.h"
#include "common/x509.h"
#include "tests/meshproxy/mesh_harness.h"

namespace meshid::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kTd[] = "spiffe://cluster.local";

std::string Id(const std::string& sa, const std::string& ns = "default") {
  return absl::StrCat(kTd, "/ns/", ns, "/sa/", sa);
}

class MeshTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    signal(SIGPIPE, SIG_IGN);  // TLS writes to a connection the proxy closed
    temp_dir_ = new TempDir("meshproxy-e2e");
    dir_ = new std::string(temp_dir_->path());
    server_ = new ServerProcess(*dir_ + "/ca");
    ASSERT_TRUE(server_->ok()) << server_->Log();
    agent_ = new AgentProcess(*server_, MeshAgentOptions(*dir_));
    ASSERT_TRUE(agent_->ok()) << agent_->Log();
    for (const char* sa : {"reviews", "productpage"}) {
      WriteTestFile(*dir_ + "/" + sa + ".token", server_->Token("default", sa));
    }
  }
  static void TearDownTestSuite() {
    delete agent_;
    delete server_;
    delete dir_;
    delete temp_dir_;
  }

  void SetUp() override {
    test_dir_ = absl::StrCat(*dir_, "/", ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(test_dir_);
  }

  // Client certificates from the mesh's own CA.
  CertFiles MeshCert(const std::string& sa) {
    return WriteCert(test_dir_, sa, TestCa::FromDataDir(*dir_ + "/ca")->Leaf({Id(sa)}));
  }
  std::string WritePolicy(const std::string& name, const std::string& yaml,
                          const std::map<std::string, std::string>& vars = {}) {
    std::string text = yaml;
    for (const auto& [k, v] : vars) text = absl::StrReplaceAll(text, {{k, v}});
    return WriteTestFile(test_dir_ + "/" + name, text);
  }
  std::vector<std::string> ProxyArgs(const std::string& service, const std::string& token) {
    return {"--sds-socket", agent_->socket(), "--token-file", *dir_ + "/" + token + ".token",
            "--service",    service,          "--namespace",  "default"};
  }
  std::string Log(const std::string& name) { return test_dir_ + "/" + name + ".log"; }

  static TempDir* temp_dir_;
  static std::string* dir_;
  static ServerProcess* server_;
  static AgentProcess* agent_;
  std::string test_dir_;
};

TempDir* MeshTest::temp_dir_ = nullptr;
std::string* MeshTest::dir_ = nullptr;
ServerProcess* MeshTest::server_ = nullptr;
AgentProcess* MeshTest::agent_ = nullptr;

void Append(std::vector<std::string>& args, std::initializer_list<std::string> more) {
  args.insert(args.end(), more.begin(), more.end());
}

Client::Options Mtls(const CertFiles& cert) {
  Client::Options o;
  o.tls = true;
  o.cert = cert;
  return o;
}

// ---- authorization: identities × methods × paths × ports ----

constexpr char kMatrixPolicy[] = R"(
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports:
  - {name: http-web, port: 9080, targetPort: HTTP_PORT}
  - {name: tcp-db, port: 9090, targetPort: TCP_PORT}
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: reviews-viewer, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/default/sa/productpage"]}}]
    to: [{operation: {methods: ["GET", "HEAD"], paths: ["/reviews/*"]}}]
  - from: [{source: {principals: ["cluster.local/ns/default/sa/admin"]}}]
    to: [{operation: {paths: ["/admin/*", "/reviews/*"]}}]
  - from: [{source: {principals: ["cluster.local/ns/default/sa/ratings"]}}]
    to: [{operation: {ports: ["TCP_PORT"]}}]
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: no-deletes, namespace: default}
spec:
  action: DENY
  rules:
  # On TCP a DENY rule loses its HTTP-only fields and matches more (Istio 1.5+): without the
  # port this would close every TCP connection.
  - to: [{operation: {methods: ["DELETE"], ports: ["HTTP_PORT"]}}]
)";

TEST_F(MeshTest, AllowDenyMatrixOverIdentitiesMethodsPathsAndPorts) {
  EchoApp app;
  TcpEchoApp tcp_app;
  const std::string policy =
      WritePolicy("policy.yaml", kMatrixPolicy,
                  {{"HTTP_PORT", std::to_string(app.port())}, {"TCP_PORT", std::to_string(tcp_app.port())}});
  auto args = ProxyArgs("reviews", "reviews");
  Append(args, {"--inbound", "127.0.0.1:0", "--app", absl::StrCat("127.0.0.1:", app.port()), "--inbound", "127.0.0.1:0",
                "--app", absl::StrCat("127.0.0.1:", tcp_app.port()), "--config", policy});
  ProxyProcess proxy(Log("reviews"), args);
  ASSERT_TRUE(proxy.ok()) << proxy.Log();

  const CertFiles productpage = MeshCert("productpage");
  const CertFiles admin = MeshCert("admin");
  const CertFiles ratings = MeshCert("ratings");
  const CertFiles other = MeshCert("other");
  struct Case {
    const char* who;
    CertFiles cert;
    std::string method;
    std::string path;
    int status;
  };
  const std::vector<Case> cases = {
      {"productpage", productpage, "GET", "/reviews/1", 200},
      {"productpage", productpage, "HEAD", "/reviews/1", 200},
      {"productpage", productpage, "GET", "/reviews/1?page=2", 200},
      {"productpage", productpage, "POST", "/reviews/1", 403},
      {"productpage", productpage, "GET", "/admin/x", 403},
      {"productpage", productpage, "GET", "/reviews/../admin/x", 403},  // normalised before the decision
      {"productpage", productpage, "GET", "/reviews/%2E%2E/admin/x", 403},
      {"productpage", productpage, "DELETE", "/reviews/1", 403},
      {"admin", admin, "GET", "/admin/x", 200},
      {"admin", admin, "POST", "/admin/x", 200},
      {"admin", admin, "PUT", "/reviews/1", 200},
      {"admin", admin, "DELETE", "/admin/x", 403},  // the DENY policy wins
      {"admin", admin, "GET", "/other", 403},
      {"ratings", ratings, "GET", "/reviews/1", 403},  // its rule names the TCP port only
      {"other", other, "GET", "/reviews/1", 403},
  };
  for (const auto& c : cases) {
    HttpResult r = Request(proxy.inbound(0), Mtls(c.cert), c.method, c.path);
    EXPECT_EQ(r.status, c.status) << c.who << " " << c.method << " " << c.path << ": " << r.error << r.body;
    if (c.status == 403) {
      EXPECT_EQ(r.body, "RBAC: access denied") << c.who << " " << c.method << " " << c.path;
    }
    if (c.status == 200 && c.method != "HEAD") {
      EXPECT_THAT(r.body, HasSubstr(absl::StrCat(";URI=", Id(c.who), "\n"))) << c.who;
      EXPECT_THAT(r.body, HasSubstr(absl::StrCat("xfcc=By=", Id("reviews"), ";Hash=")));
      EXPECT_THAT(r.body, HasSubstr("method=" + c.method + "\n"));
    }
  }
  // What the app saw was the normalised path.
  HttpResult normalised = Request(proxy.inbound(0), Mtls(admin), "GET", "/reviews/a/../1//x");
  EXPECT_THAT(normalised.body, HasSubstr("path=/reviews/1/x\n"));

  // TCP port: identity and port rules only.
  auto tcp_echo = [&](const CertFiles& cert) {
    std::string error;
    auto c = Client::Dial(proxy.inbound(1), Mtls(cert), &error);
    if (!c || !c->Write("ping\n")) return std::string("no connection: ") + error;
    std::string got;
    while (got.size() < 5) {
      std::string more = c->ReadSome();
      if (more.empty()) return got.empty() ? std::string("closed") : got;
      got += more;
    }
    return got;
  };
  EXPECT_EQ(tcp_echo(ratings), "ping\n");
  EXPECT_EQ(tcp_echo(productpage), "closed");  // its rule has HTTP-only fields: dropped on TCP
  EXPECT_EQ(tcp_echo(admin), "closed");
  EXPECT_EQ(tcp_echo(other), "closed");

  // A certificate from another CA never gets to the policy.
  const CertFiles foreign = WriteCert(test_dir_, "foreign", TestCa::Create()->Leaf({Id("productpage")}));
  EXPECT_EQ(Request(proxy.inbound(0), Mtls(foreign), "GET", "/reviews/1").status, 0);

  EXPECT_EQ(proxy.Metric(R"(meshid_proxy_rbac_denied_total{protocol="http"})"), 9);
  EXPECT_EQ(proxy.Metric(R"(meshid_proxy_rbac_denied_total{protocol="tcp"})"), 3);
  EXPECT_EQ(proxy.Metric(R"(meshid_proxy_rbac_allowed_total{protocol="tcp"})"), 1);
  EXPECT_EQ(proxy.Metric(R"(meshid_proxy_requests_total{listener="inbound",response_code="403"})"), 9);
  EXPECT_GE(proxy.Metric(R"(meshid_proxy_tls_handshake_failures_total{listener="inbound"})"), 1);
}

// ---- STRICT vs PERMISSIVE, with curl and openssl s_client ----

constexpr char kModesPolicy[] = R"(
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports:
  - {name: http-strict, port: 9080, targetPort: STRICT_PORT}
  - {name: http-permissive, port: 9081, targetPort: PERMISSIVE_PORT}
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: reviews, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  mtls: {mode: PERMISSIVE}
  portLevelMtls:
    STRICT_PORT: {mode: STRICT}
)";

TEST_F(MeshTest, StrictAndPermissiveWithCurlAndOpensslSClient) {
  EchoApp strict_app, permissive_app;
  const std::string policy = WritePolicy(
      "policy.yaml", kModesPolicy,
      {{"STRICT_PORT", std::to_string(strict_app.port())}, {"PERMISSIVE_PORT", std::to_string(permissive_app.port())}});
  auto args = ProxyArgs("reviews", "reviews");
  Append(args, {"--inbound", "127.0.0.1:0", "--app", absl::StrCat("127.0.0.1:", strict_app.port()), "--inbound",
                "127.0.0.1:0", "--app", absl::StrCat("127.0.0.1:", permissive_app.port()), "--config", policy});
  ProxyProcess proxy(Log("reviews"), args);
  ASSERT_TRUE(proxy.ok()) << proxy.Log();
  const int strict = proxy.inbound(0);
  const int permissive = proxy.inbound(1);
  auto policy_json = proxy.Json("/policy");
  EXPECT_EQ(policy_json["inbound"][0]["mtls"], "STRICT");
  EXPECT_EQ(policy_json["inbound"][1]["mtls"], "PERMISSIVE");

  const auto mesh = TestCa::FromDataDir(*dir_ + "/ca");
  ASSERT_TRUE(mesh.ok()) << mesh.status();
  const CertFiles valid = WriteCert(test_dir_, "valid", mesh->Leaf({Id("productpage")}));
  const CertFiles foreign = WriteCert(test_dir_, "foreign", TestCa::Create()->Leaf({Id("productpage")}));
  const CertFiles expired =
      WriteCert(test_dir_, "expired",
                mesh->Leaf({Id("productpage")}, absl::Now() - absl::Hours(2), absl::Now() - absl::Hours(1)));
  auto curl = [&](const std::string& args, int port, bool tls) {
    return RunShell(absl::StrCat("curl -s --max-time 10 -H 'x-forwarded-client-cert: By=spoofed;URI=spiffe://evil' ",
                                 args, " ", tls ? "https" : "http", "://127.0.0.1:", port, "/hello"));
  };
  const std::string with_valid = absl::StrCat("-k --cert ", valid.cert, " --key ", valid.key);
  const std::string with_foreign = absl::StrCat("-k --cert ", foreign.cert, " --key ", foreign.key);
  const std::string with_expired = absl::StrCat("-k --cert ", expired.cert, " --key ", expired.key);

  // Plaintext: refused under STRICT, served under PERMISSIVE (without a client identity).
  auto [strict_plain_rc, strict_plain] = curl("", strict, false);
  EXPECT_NE(strict_plain_rc, 0) << strict_plain;
  auto [plain_rc, plain] = curl("", permissive, false);
  EXPECT_EQ(plain_rc, 0);
  EXPECT_THAT(plain, HasSubstr("xfcc=-\n"));  // the caller's XFCC is stripped, none added
  // A valid mesh certificate: served on both, the identity forwarded.
  for (int port : {strict, permissive}) {
    auto [rc, out] = curl(with_valid, port, true);
    EXPECT_EQ(rc, 0) << out;
    EXPECT_THAT(out, HasSubstr(absl::StrCat("xfcc=By=", Id("reviews"), ";Hash=")));
    EXPECT_THAT(out, HasSubstr(absl::StrCat(";URI=", Id("productpage"), "\n")));
    EXPECT_THAT(out, Not(HasSubstr("spoofed")));
  }
  // TLS without a certificate, with a foreign CA's, with an expired one: refused on both.
  for (int port : {strict, permissive}) {
    for (const std::string& a : {std::string("-k"), with_foreign, with_expired}) {
      auto [rc, out] = curl(a, port, true);
      EXPECT_NE(rc, 0) << a << " -> " << out;
      EXPECT_THAT(out, Not(HasSubstr("method=")));
    }
  }
  // openssl s_client speaks HTTP by hand.
  auto s_client = [&](const CertFiles& cert, int port) {
    return RunShell(
        absl::StrCat("printf 'GET /s HTTP/1.1\\r\\nHost: reviews\\r\\nConnection: close\\r\\n\\r\\n' | "
                     "timeout 10 openssl s_client -quiet -connect 127.0.0.1:",
                     port, " -cert ", cert.cert, " -key ", cert.key));
  };
  EXPECT_THAT(s_client(valid, strict).second, HasSubstr("HTTP/1.1 200 OK"));
  EXPECT_THAT(s_client(valid, permissive).second, HasSubstr("path=/s"));
  auto [foreign_rc, foreign_out] = s_client(foreign, strict);
  EXPECT_THAT(foreign_out, Not(HasSubstr("HTTP/1.1")));
  EXPECT_THAT(foreign_out, HasSubstr("alert"));
  auto [expired_rc, expired_out] = s_client(expired, permissive);
  EXPECT_THAT(expired_out, Not(HasSubstr("HTTP/1.1")));
  EXPECT_THAT(expired_out, HasSubstr("alert"));

  EXPECT_GE(proxy.Metric("meshid_proxy_strict_plaintext_refused_total"), 1);
  EXPECT_GE(proxy.Metric(R"(meshid_proxy_tls_handshake_failures_total{listener="inbound"})"), 8);
}

// ---- JWT origin authentication ----

TEST_F(MeshTest, JwtOriginAuthentication) {
  EchoApp app;
  EvpPkeyPtr key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
  EvpPkeyPtr other_key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
  const std::string jwks = Jwks::FromPublicKey(key.get(), "k1")->ToJson();
  const std::string policy = WritePolicy("policy.yaml", R"(
apiVersion: security.istio.io/v1beta1
kind: RequestAuthentication
metadata: {name: jwt, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  jwtRules:
  - issuer: https://issuer.test
    jwks: 'JWKS'
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: require-jwt, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  rules:
  - from: [{source: {requestPrincipals: ["https://issuer.test/*"]}}]
    to: [{operation: {paths: ["/secure/*"]}}]
  - to: [{operation: {paths: ["/public/*"]}}]
)",
                                         {{"JWKS", jwks}});
  auto args = ProxyArgs("reviews", "reviews");
  Append(args, {"--label", "app=reviews", "--inbound", "127.0.0.1:0", "--app", absl::StrCat("127.0.0.1:", app.port()),
                "--config", policy});
  ProxyProcess proxy(Log("reviews"), args);
  ASSERT_TRUE(proxy.ok()) << proxy.Log();
  const int64_t now = absl::ToUnixSeconds(absl::Now());
  auto token = [&](EVP_PKEY* k, const std::string& iss, int64_t exp) {
    return *SignJwt({{"iss", iss}, {"sub", "alice"}, {"iat", now - 10}, {"exp", exp}}, k, "k1");
  };
  auto get = [&](const std::string& path, const std::string& jwt) {
    std::vector<std::pair<std::string, std::string>> headers;
    if (!jwt.empty()) headers.push_back({"authorization", "Bearer " + jwt});
    return Request(proxy.inbound(), Client::Options{}, "GET", path, "reviews", headers);  // PERMISSIVE: plaintext
  };
  const std::string good = token(key.get(), "https://issuer.test", now + 600);
  EXPECT_EQ(get("/public/x", "").status, 200);
  EXPECT_EQ(get("/secure/x", "").status, 403);  // a missing token passes authentication, not the ALLOW rule
  HttpResult ok = get("/secure/x", good);
  EXPECT_EQ(ok.status, 200);
  EXPECT_THAT(ok.body, HasSubstr("authorization=Bearer " + good));
  struct Bad {
    std::string jwt;
    std::string message;
  };
  for (const Bad& b : {Bad{token(key.get(), "https://issuer.test", now - 600), "Jwt is expired"},
                       Bad{token(other_key.get(), "https://issuer.test", now + 600), "Jwt verification fails"},
                       Bad{token(key.get(), "https://other.test", now + 600), "Jwt issuer is not configured"}}) {
    for (const char* path : {"/secure/x", "/public/x"}) {
      HttpResult r = get(path, b.jwt);
      EXPECT_EQ(r.status, 401) << b.message;
      EXPECT_EQ(r.body, b.message);
    }
  }
  EXPECT_GE(proxy.Metric("meshid_proxy_authn_failed_total"), 6);
}

// ---- the outbound side: routing by Host, the upstream's identity ----

TEST_F(MeshTest, OutboundChecksTheUpstreamIdentity) {
  EchoApp app;
  auto in_args = ProxyArgs("reviews", "reviews");
  Append(in_args, {"--inbound", "127.0.0.1:0", "--app", absl::StrCat("127.0.0.1:", app.port())});
  ProxyProcess reviews(Log("reviews"), in_args);
  ASSERT_TRUE(reviews.ok()) << reviews.Log();
  const std::string addr = absl::StrCat("127.0.0.1:", reviews.inbound());
  auto out_args = ProxyArgs("productpage", "productpage");
  Append(out_args, {"--outbound", "127.0.0.1:0", "--upstream", "reviews=" + addr,  // derived identity
                    "--upstream", absl::StrCat("details=", addr),                  // derived: sa/details
                    "--upstream", absl::StrCat("ratings.default=", addr, ",", Id("reviews"))});
  ProxyProcess productpage(Log("productpage"), out_args);
  ASSERT_TRUE(productpage.ok()) << productpage.Log();
  const int out = productpage.outbound();
  for (const char* host : {"reviews", "reviews:9080", "reviews.default", "reviews.default.svc",
                           "Reviews.Default.svc.cluster.local:9080", "ratings.default"}) {
    HttpResult r = Request(out, Client::Options{}, "GET", "/x", host);
    EXPECT_EQ(r.status, 200) << host << ": " << r.body;
    EXPECT_THAT(r.body, HasSubstr(absl::StrCat(";URI=", Id("productpage"), "\n"))) << host;
  }
  HttpResult wrong = Request(out, Client::Options{}, "GET", "/x", "details");
  EXPECT_EQ(wrong.status, 503);
  EXPECT_THAT(wrong.body, HasSubstr("is not the expected \"" + Id("details") + "\""));
  EXPECT_EQ(Request(out, Client::Options{}, "GET", "/x", "unknown").status, 404);
  EXPECT_GE(productpage.Metric("meshid_proxy_upstream_identity_mismatch_total"), 1);
  // Nothing listens on the outbound listener but loopback by default, and the app's traffic
  // is never forwarded in plaintext: a closed upstream is a 503.
  reviews.Stop();
  EXPECT_EQ(Request(out, Client::Options{}, "GET", "/x", "reviews").status, 503);
}

// ---- bodies: streaming both ways, keep-alive, pipelining, 100-continue ----

TEST_F(MeshTest, StreamsBodiesThroughAProxyPair) {
  EchoApp app;
  auto in_args = ProxyArgs("reviews", "reviews");
  Append(in_args, {"--inbound", "127.0.0.1:0", "--app", absl::StrCat("127.0.0.1:", app.port())});
  ProxyProcess reviews(Log("reviews"), in_args);
  ASSERT_TRUE(reviews.ok()) << reviews.Log();
  auto out_args = ProxyArgs("productpage", "productpage");
  out_args.push_back("--upstream");
  out_args.push_back(absl::StrCat("reviews=127.0.0.1:", reviews.inbound()));
  out_args.push_back("--outbound");
  out_args.push_back("127.0.0.1:0");
  ProxyProcess productpage(Log("productpage"), out_args);
  ASSERT_TRUE(productpage.ok()) << productpage.Log();

  std::string error;
  auto c = Client::Dial(productpage.outbound(), Client::Options{}, &error);
  ASSERT_NE(c, nullptr) << error;
  // A chunked upload of 8 MiB in uneven chunks.
  std::string head = "POST /upload HTTP/1.1\r\nhost: reviews\r\ntransfer-encoding: chunked\r\n\r\n";
  ASSERT_TRUE(c->Write(head));
  uint64_t sum = 0, total = 0;
  std::string chunk;
  for (int i = 0; total < (8u << 20); ++i) {
    chunk.assign(1 + (i * 7919) % 70000, static_cast<char>('a' + i % 26));
    for (unsigned char ch : chunk) sum += ch;
    total += chunk.size();
    ASSERT_TRUE(c->Write(absl::StrCat(absl::Hex(chunk.size()), "\r\n", chunk, "\r\n")));
  }
  ASSERT_TRUE(c->Write("0\r\n\r\n"));
  HttpResult up = c->ReadResponse("POST");
  EXPECT_EQ(up.status, 200) << up.error;
  EXPECT_THAT(up.body, HasSubstr(absl::StrCat("body_bytes=", total, "\nbody_sum=", sum, "\n")));
  // On the same connection: a large chunked download, then three pipelined requests.
  ASSERT_TRUE(c->Write(RequestText("GET", "/big/3000001", "reviews")));
  HttpResult down = c->ReadResponse();
  EXPECT_EQ(down.status, 200) << down.error;
  EXPECT_EQ(down.body.size(), 3000001u);
  ASSERT_TRUE(c->Write(RequestText("GET", "/p1", "reviews") + RequestText("POST", "/p2", "reviews", {}, "hello") +
                       RequestText("GET", "/p3", "reviews")));
  for (const char* p : {"path=/p1\n", "path=/p2\n", "path=/p3\n"}) {
    HttpResult r = c->ReadResponse(p[6] == '2' ? "POST" : "GET");
    EXPECT_EQ(r.status, 200) << r.error;
    EXPECT_THAT(r.body, HasSubstr(p));
  }
  // Expect: 100-continue is answered by the proxy; the body follows.
  ASSERT_TRUE(c->Write("PUT /f HTTP/1.1\r\nhost: reviews\r\nexpect: 100-continue\r\ncontent-length: 5\r\n\r\n"));
  std::string interim;
  while (interim.find("\r\n\r\n") == std::string::npos) {
    std::string more = c->ReadSome();
    ASSERT_FALSE(more.empty());
    interim += more;
  }
  EXPECT_THAT(interim, ::testing::StartsWith("HTTP/1.1 100 Continue\r\n"));
  ASSERT_TRUE(c->Write("abcde"));
  HttpResult put = c->ReadResponse("PUT");
  EXPECT_THAT(put.body, HasSubstr("body_bytes=5\n"));
  EXPECT_EQ(app.requests(), 6);
}

// ---- malformed requests ----

TEST_F(MeshTest, MalformedRequestCorpusIsRefusedWithoutHarm) {
  EchoApp app;
  // The port is declared HTTP: nothing is sniffed, everything goes through the HTTP parser.
  const std::string policy = WritePolicy("service.yaml", R"(
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  ports: [{name: http, port: 80, targetPort: APP_PORT}]
)",
                                         {{"APP_PORT", std::to_string(app.port())}});
  auto args = ProxyArgs("reviews", "reviews");
  Append(args, {"--inbound", "127.0.0.1:0", "--app", absl::StrCat("127.0.0.1:", app.port()), "--config", policy,
                "--max-request-headers-kb", "8", "--max-request-body-bytes", "1000"});
  ProxyProcess proxy(Log("reviews"), args);
  ASSERT_TRUE(proxy.ok()) << proxy.Log();
  struct Case {
    const char* name;
    std::string bytes;
    int status;
  };
  const std::string h = "host: reviews\r\n";
  std::string many_headers = "GET / HTTP/1.1\r\n" + h;
  for (int i = 0; i < 150; ++i) many_headers += absl::StrCat("x-", i, ": v\r\n");
  const std::vector<Case> cases = {
      {"oversized header", "GET / HTTP/1.1\r\n" + h + "x-big: " + std::string(9000, 'a') + "\r\n\r\n", 431},
      {"oversized target", "GET /" + std::string(9000, 'a') + " HTTP/1.1\r\n" + h + "\r\n", 431},
      {"too many headers", many_headers + "\r\n", 431},
      {"CL + TE", "POST / HTTP/1.1\r\n" + h + "content-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n", 400},
      {"TE + CL", "POST / HTTP/1.1\r\n" + h + "transfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n0\r\n\r\n", 400},
      {"duplicate CL", "POST / HTTP/1.1\r\n" + h + "content-length: 5\r\ncontent-length: 6\r\n\r\nhello!", 400},
      {"TE with space", "POST / HTTP/1.1\r\n" + h + "transfer-encoding : chunked\r\n\r\n0\r\n\r\n", 400},
      {"TE obs-fold", "POST / HTTP/1.1\r\n" + h + "transfer-encoding:\r\n chunked\r\n\r\n0\r\n\r\n", 400},
      {"TE chunked twice", "POST / HTTP/1.1\r\n" + h + "transfer-encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400},
      {"TE gzip", "POST / HTTP/1.1\r\n" + h + "transfer-encoding: gzip\r\n\r\n", 501},
      {"obs-fold", "GET / HTTP/1.1\r\n" + h + "x-a: a\r\n b\r\n\r\n", 400},
      {"bare LF", "GET / HTTP/1.1\n" + h + "\n", 400},
      {"bare LF in headers", "GET / HTTP/1.1\r\nhost: reviews\nx: y\r\n\r\n", 400},
      {"NUL in header", std::string("GET / HTTP/1.1\r\nhost: reviews\r\nx: \0\r\n\r\n", 40), 400},
      {"no host", "GET / HTTP/1.1\r\n\r\n", 400},
      {"two hosts", "GET / HTTP/1.1\r\n" + h + h + "\r\n", 400},
      {"HTTP/1.0", "GET / HTTP/1.0\r\n\r\n", 426},
      {"garbage", "\x01\x02\x03 / HTTP/1.1\r\n\r\n", 400},
      {"bad chunk size", "POST / HTTP/1.1\r\n" + h + "transfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400},
      {"chunk too long", "POST / HTTP/1.1\r\n" + h + "transfer-encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n", 400},
      {"chunk size overflow", "POST / HTTP/1.1\r\n" + h + "transfer-encoding: chunked\r\n\r\n1ffffffffffffffff\r\n",
       400},
      {"body limit (CL)", "POST / HTTP/1.1\r\n" + h + "content-length: 1001\r\n\r\n", 413},
      {"body limit (chunked)", "POST / HTTP/1.1\r\n" + h + "transfer-encoding: chunked\r\n\r\n3e9\r\n", 413},
      {"bad path escape", "GET /a%00b HTTP/1.1\r\n" + h + "\r\n", 400},
  };
  for (const auto& c : cases) {
    std::string error;
    auto conn = Client::Dial(proxy.inbound(), Client::Options{}, &error);
    ASSERT_NE(conn, nullptr) << error;
    conn->Write(c.bytes);
    HttpResult r = conn->ReadResponse();
    EXPECT_EQ(r.status, c.status) << c.name << ": " << r.error << " " << r.body;
    EXPECT_EQ(r.headers["connection"], c.status == 400 && absl::StrContains(c.name, "path") ? "" : "close") << c.name;
  }
  // A smuggled second request never reaches the app: the connection ends after the refusal.
  const int before = app.requests();
  {
    std::string error;
    auto conn = Client::Dial(proxy.inbound(), Client::Options{}, &error);
    ASSERT_NE(conn, nullptr) << error;
    conn->Write("POST / HTTP/1.1\r\n" + h + "content-length: 44\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n" +
                "GET /smuggled HTTP/1.1\r\n" + h + "\r\n");
    EXPECT_EQ(conn->ReadResponse().status, 400);
    EXPECT_EQ(conn->ReadResponse().status, 0);
  }
  EXPECT_EQ(app.requests(), before);
  // The proxy is still up and serving.
  EXPECT_EQ(Request(proxy.inbound(), Client::Options{}, "GET", "/fine").status, 200);
  EXPECT_GE(proxy.Metric(R"(meshid_proxy_bad_requests_total{listener="inbound"})"), 24);
}

// ---- certificate rotation under load ----

constexpr char kRotationPolicy[] = R"(
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports:
  - {name: http, port: 9080, targetPort: HTTP_PORT}
  - {name: tcp, port: 9090, targetPort: TCP_PORT}
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: reviews, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/default/sa/productpage"]}}]
)";

TEST_F(MeshTest, RotationEveryFewSecondsUnderLoadFailsNoRequest) {
  // An agent of its own that renews every ~2 s (4 s certificates, renewed at half-life).
  const std::string agent_dir = test_dir_ + "/agent";
  std::filesystem::create_directories(agent_dir);
  AgentProcess agent(*server_, MeshAgentOptions(agent_dir, "4s"));
  ASSERT_TRUE(agent.ok()) << agent.Log();
  EchoApp app;
  TcpEchoApp tcp_app;
  const std::string policy =
      WritePolicy("policy.yaml", kRotationPolicy,
                  {{"HTTP_PORT", std::to_string(app.port())}, {"TCP_PORT", std::to_string(tcp_app.port())}});
  auto in_args = ProxyArgs("reviews", "reviews");
  in_args[1] = agent.socket();
  Append(in_args, {"--inbound", "127.0.0.1:0", "--app", absl::StrCat("127.0.0.1:", app.port()), "--inbound",
                   "127.0.0.1:0", "--app", absl::StrCat("127.0.0.1:", tcp_app.port()), "--config", policy});
  ProxyProcess reviews(Log("reviews"), in_args);
  ASSERT_TRUE(reviews.ok()) << reviews.Log();
  auto out_args = ProxyArgs("productpage", "productpage");
  out_args[1] = agent.socket();
  Append(
      out_args,
      {"--outbound", "127.0.0.1:0", "--upstream", absl::StrCat("reviews=127.0.0.1:", reviews.inbound(0)), "--upstream",
       absl::StrCat("reviews-db=127.0.0.1:", reviews.inbound(1), ",", Id("reviews"), ",listen=127.0.0.1:0")});
  ProxyProcess productpage(Log("productpage"), out_args);
  ASSERT_TRUE(productpage.ok()) << productpage.Log();

  std::atomic<bool> stop{false};
  std::atomic<int> requests{0}, failures{0};
  absl::Mutex mu;
  std::vector<std::string> failure_notes;
  auto fail = [&](const std::string& note) {
    ++failures;
    absl::MutexLock lock(&mu);
    if (failure_notes.size() < 10) failure_notes.push_back(note);
  };
  std::vector<std::thread> load;
  for (int t = 0; t < 4; ++t) {
    load.emplace_back([&, t] {
      const bool keep_alive = t % 2 == 0;  // two kept-alive connections, two connecting per request
      std::unique_ptr<Client> c;
      while (!stop) {
        std::string error;
        if (!c) c = Client::Dial(productpage.outbound(), Client::Options{}, &error);
        if (!c) {
          fail("dial: " + error);
          continue;
        }
        const std::string req = RequestText("GET", absl::StrCat("/r/", t), "reviews",
                                            {{"connection", keep_alive ? "keep-alive" : "close"}});
        HttpResult r = c->Write(req) ? c->ReadResponse() : HttpResult{};
        ++requests;
        if (r.status != 200) fail(absl::StrCat("status ", r.status, " ", r.error, " ", r.body));
        if (!keep_alive || r.status != 200) c.reset();
      }
    });
  }
  // A long-lived TCP connection through the pair must survive every rotation.
  std::atomic<int> tcp_failures{0}, tcp_pings{0};
  std::thread tcp_thread([&] {
    std::string error;
    auto c = Client::Dial(productpage.tcp(), Client::Options{}, &error);
    if (!c) {
      ++tcp_failures;
      return;
    }
    for (int i = 0; !stop; ++i) {
      const std::string ping = absl::StrCat("ping ", i, "\n");
      std::string got;
      if (!c->Write(ping)) {
        ++tcp_failures;
        return;
      }
      while (got.size() < ping.size()) {
        std::string more = c->ReadSome();
        if (more.empty()) {
          ++tcp_failures;
          return;
        }
        got += more;
      }
      if (got != ping) ++tcp_failures;
      ++tcp_pings;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });
  // Watch both proxies' certificates change at least three times.
  std::set<std::string> reviews_serials, productpage_serials;
  Eventually(
      [&] {
        for (auto [p, serials] :
             {std::pair{&reviews, &reviews_serials}, std::pair{&productpage, &productpage_serials}}) {
          auto certs = p->Json("/certs");
          if (!certs.is_discarded()) {
            for (const auto& s : certs["certificates"]) {
              if (s["name"] == "default") serials->insert(s["cert_chain"][0]["serial_number"].get<std::string>());
            }
          }
        }
        return reviews_serials.size() >= 4 && productpage_serials.size() >= 4;
      },
      std::chrono::seconds(120));
  stop = true;
  for (auto& t : load) t.join();
  tcp_thread.join();
  EXPECT_GE(reviews_serials.size(), 4u);
  EXPECT_GE(productpage_serials.size(), 4u);
  EXPECT_GT(requests.load(), 100);
  EXPECT_EQ(failures.load(), 0) << ::testing::PrintToString(failure_notes);
  EXPECT_GT(tcp_pings.load(), 10);
  EXPECT_EQ(tcp_failures.load(), 0);
  EXPECT_GE(reviews.Metric(R"(meshid_proxy_secret_updates_total{secret="default"})"), 4);
  EXPECT_EQ(reviews.Metric(R"(meshid_sds_client_updates_total{resource="default",result="nack"})"), 0);
}

// ---- policy reload under load (file source) ----

constexpr char kAllowV1[] = R"(
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: reviews, namespace: default}
spec:
  rules:
  - to: [{operation: {paths: ["/v1/*"]}}]
)";

TEST_F(MeshTest, PolicyReloadUnderLoadKeepsTheLastGoodPolicy) {
  EchoApp app;
  const std::string policy = WritePolicy("policy.yaml", kAllowV1);
  auto args = ProxyArgs("reviews", "reviews");
  Append(args, {"--inbound", "127.0.0.1:0", "--app", absl::StrCat("127.0.0.1:", app.port()), "--config", policy,
                "--reload-interval", "100ms"});
  ProxyProcess proxy(Log("reviews"), args);
  ASSERT_TRUE(proxy.ok()) << proxy.Log();
  EXPECT_EQ(proxy.Json("/policy")["version"], "file-1");
  EXPECT_EQ(proxy.Json("/certs")["policy_version"], "file-1");

  std::atomic<bool> stop{false};
  std::atomic<int> unexpected{0}, v1_ok{0}, v1_denied{0};
  std::vector<std::thread> load;
  for (int t = 0; t < 3; ++t) {
    load.emplace_back([&] {
      std::string error;
      auto c = Client::Dial(proxy.inbound(), Client::Options{}, &error);  // one kept-alive connection each
      while (!stop && c) {
        HttpResult r = c->Write(RequestText("GET", "/v1/x", "reviews")) ? c->ReadResponse() : HttpResult{};
        if (r.status == 200) {
          ++v1_ok;
        } else if (r.status == 403) {
          ++v1_denied;
        } else {
          ++unexpected;
          c = Client::Dial(proxy.inbound(), Client::Options{}, &error);
        }
      }
      if (!c) ++unexpected;
    });
  }
  ASSERT_TRUE(Eventually([&] { return v1_ok > 50; }));
  // Swap the policy: /v1 denied, /v2 allowed; kept-alive connections see it on their next request.
  WritePolicy("policy.yaml.tmp", absl::StrReplaceAll(kAllowV1, {{"/v1/*", "/v2/*"}}));
  std::filesystem::rename(test_dir_ + "/policy.yaml.tmp", policy);
  ASSERT_TRUE(Eventually([&] { return proxy.Json("/policy")["version"] == "file-2"; })) << proxy.Log();
  const int denied_at_swap = v1_denied;
  ASSERT_TRUE(Eventually([&] { return v1_denied > denied_at_swap + 50; }));
  EXPECT_EQ(Request(proxy.inbound(), Client::Options{}, "GET", "/v2/x").status, 200);
  // A broken file (written atomically, as the swap above: a half-written file would be a
  // valid empty configuration): reported, not applied; the last good policy stays.
  WritePolicy("policy.yaml.tmp",
              "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: x}\n"
              "spec: {rules: [{to: [{operation: {bogus: 1}}]}]}\n");
  std::filesystem::rename(test_dir_ + "/policy.yaml.tmp", policy);
  ASSERT_TRUE(Eventually([&] { return proxy.Metric(R"(meshid_policy_reloads_total{result="error"})") >= 1; }));
  EXPECT_EQ(proxy.Json("/policy")["version"], "file-2");
  EXPECT_EQ(Request(proxy.inbound(), Client::Options{}, "GET", "/v2/x").status, 200);
  EXPECT_EQ(Request(proxy.inbound(), Client::Options{}, "GET", "/v1/x").status, 403);
  stop = true;
  for (auto& t : load) t.join();
  EXPECT_EQ(unexpected.load(), 0);
  EXPECT_GT(v1_ok.load(), 0);
}

// ---- admin and start-up ----

TEST_F(MeshTest, AdminEndpointsAndReadiness) {
  EchoApp app;
  // Without an agent there is no certificate: not ready, and no traffic is served.
  ProxyProcess waiting(Log("waiting"),
                       {"--sds-socket", test_dir_ + "/no-agent/socket", "--service", "reviews", "--inbound",
                        "127.0.0.1:0", "--app", absl::StrCat("127.0.0.1:", app.port())},
                       /*wait_ready=*/false);
  ASSERT_NE(waiting.admin(), 0) << waiting.Log();
  HttpResult not_ready = AdminGet(waiting.admin(), "/ready");
  EXPECT_EQ(not_ready.status, 503);
  EXPECT_THAT(not_ready.body, HasSubstr("waiting for certificate, root"));
  EXPECT_EQ(Request(waiting.inbound(), Client::Options{}, "GET", "/").status, 0);
  waiting.Stop();
  EXPECT_EQ(waiting.exit_code(), 0);

  auto args = ProxyArgs("reviews", "reviews");
  Append(args, {"--inbound", "127.0.0.1:0", "--app", absl::StrCat("127.0.0.1:", app.port())});
  ProxyProcess proxy(Log("reviews"), args);
  ASSERT_TRUE(proxy.ok()) << proxy.Log();
  EXPECT_EQ(AdminGet(proxy.admin(), "/ready").body, "LIVE\n");
  auto certs = proxy.Json("/certs");
  ASSERT_FALSE(certs.is_discarded());
  ASSERT_EQ(certs["certificates"].size(), 2u);
  EXPECT_EQ(certs["certificates"][0]["name"], "default");
  EXPECT_EQ(certs["certificates"][0]["status"], "ACTIVE");
  EXPECT_EQ(certs["certificates"][0]["cert_chain"][0]["spiffe_id"], Id("reviews"));
  EXPECT_EQ(certs["certificates"][0]["cert_chain"][0]["serial_number"].get<std::string>().size(), 32u);
  EXPECT_GT(certs["certificates"][0]["cert_chain"][0]["seconds_until_expiration"].get<int64_t>(), 0);
  EXPECT_EQ(certs["certificates"][1]["name"], "ROOTCA");
  EXPECT_EQ(certs["certificates"][1]["ca_cert"][0]["serial_number"],
            SerialHex(TestCa::FromDataDir(*dir_ + "/ca")->cert()));
  EXPECT_EQ(certs["policy_version"], "file-1");  // no --config: Istio's defaults, PERMISSIVE
  EXPECT_EQ(proxy.Json("/policy")["inbound"][0]["mtls"], "PERMISSIVE");
  EXPECT_GT(proxy.Metric("meshid_proxy_cert_expiry_seconds"), 0);
  EXPECT_EQ(proxy.Metric("meshid_proxy_ready"), 1);
  EXPECT_EQ(proxy.Metric(R"(meshid_sds_client_updates_total{resource="ROOTCA",result="ack"})"), 1);
  EXPECT_EQ(Request(proxy.inbound(), Client::Options{}, "GET", "/").status, 200);
  EXPECT_EQ(proxy.Metric(R"(meshid_proxy_requests_total{listener="inbound",response_code="200"})"), 1);
  proxy.Stop();
  EXPECT_EQ(proxy.exit_code(), 0);
}

}  // namespace
}  // namespace meshid::testing
