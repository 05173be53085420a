// The machine interfaces around the engine: the `authz check` JSON request/decision format
// (with negative tests for every malformed input), the ext_authz CheckRequest mapping and
// response, and hot reload keeping the last good engine.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "authz/ext_authz_client.h"
#include "authz/ext_authz_service.h"
#include "authz/jwks_fetcher.h"
#include "authz/request_json.h"
#include "common/http_status_server.h"
#include "policy/file_watcher.h"
#include "tests/authz/policy_test_util.h"
#include "tests/support/temp_dir.h"

namespace meshid::authz {
namespace {

TEST(RequestJson, FullRequest) {
  auto in = ParseRequestJson(R"({"protocol":"http","destination":{"service":"b.ns.svc.cluster.local","namespace":"ns",
    "labels":{"app":"b"},"ip":"10.0.0.2","port":8080,"principal":"spiffe://cluster.local/ns/ns/sa/b"},
    "source":{"principal":"spiffe://cluster.local/ns/a/sa/a","ip":"10.0.0.1"},"connection":{"mtls":true,"sni":"s"},
    "request":{"method":"GET","path":"/x?y=1","host":"h","headers":{"A":"1","b":["2","3"]}}})");
  ASSERT_TRUE(in.ok()) << in.status();
  EXPECT_EQ(in->destination_service, "b.ns.svc.cluster.local");
  EXPECT_EQ(in->destination_labels.at("app"), "b");
  EXPECT_EQ(in->destination_port, 8080u);
  EXPECT_EQ(in->source_principal, "spiffe://cluster.local/ns/a/sa/a");
  EXPECT_EQ(in->mtls, true);
  EXPECT_EQ(in->sni, "s");
  EXPECT_EQ(in->path, "/x?y=1");
  EXPECT_EQ(in->headers.size(), 3u);
  auto tcp = ParseRequestJson(R"({"protocol":"tcp","destination":{"service":"db.ns.svc.cluster.local","port":5432}})");
  ASSERT_TRUE(tcp.ok());
  EXPECT_EQ(tcp->protocol, rbac::Protocol::kTcp);
  EXPECT_FALSE(tcp->mtls.has_value());
}

TEST(RequestJson, MalformedInputsAreRefusedWithTheField) {
  const std::pair<const char*, const char*> cases[] = {
      {"", "not valid JSON"},
      {"{", "not valid JSON"},
      {"[1]", "a request must be a JSON object"},
      {"null", "a request must be a JSON object"},
      {R"({})", "destination: required"},
      {R"({"destination":"b"})", "destination: must be an object"},
      {R"({"destination":{"service":1}})", "destination.service: must be a string"},
      {R"({"destination":{"service":"b","port":-1}})", "destination.port: must be an integer 0-65535"},
      {R"({"destination":{"service":"b","port":70000}})", "destination.port: must be an integer 0-65535"},
      {R"({"destination":{"service":"b","port":"80"}})", "destination.port: must be an integer 0-65535"},
      {R"({"destination":{"service":"b","port":1.5}})", "destination.port: must be an integer 0-65535"},
      {R"({"destination":{"service":"b","labels":[]}})", "destination.labels: must be an object of strings"},
      {R"({"destination":{"service":"b","labels":{"a":1}}})", "destination.labels.a: must be a string"},
      {R"({"destination":{"service":"b","colour":"red"}})", "destination.colour: unknown field"},
      {R"({"destination":{"service":"b"},"protocol":"udp"})", "protocol: \"udp\" is not http or tcp"},
      {R"({"destination":{"service":"b"},"protocol":7})", "protocol: must be a string"},
      {R"({"destination":{"service":"b"},"source":{"principle":"x"}})", "source.principle: unknown field"},
      {R"({"destination":{"service":"b"},"connection":{"mtls":"yes"}})", "connection.mtls: must be true or false"},
      {R"({"destination":{"service":"b"},"request":{"headers":"x"}})", "request.headers: must be an object"},
      {R"({"destination":{"service":"b"},"request":{"headers":{"a":{"b":1}}}})",
       "request.headers.a: must be a string or a list"},
      {R"({"destination":{"service":"b"},"request":{"headers":{"a":[1]}}})",
       "request.headers.a: must be a string or a list"},
      {R"({"destination":{"service":"b"},"request":{"headers":{"":"x"}}})", "header names must not be empty"},
      {R"({"destination":{"service":"b"},"extra":1})", "extra: unknown field"},
  };
  for (const auto& [line, expected] : cases) {
    auto in = ParseRequestJson(line);
    ASSERT_FALSE(in.ok()) << line;
    EXPECT_TRUE(absl::IsInvalidArgument(in.status())) << line;
    EXPECT_NE(in.status().message().find(expected), std::string::npos) << line << " → " << in.status();
  }
  EXPECT_FALSE(ParseRequestJson(std::string(kMaxRequestLineBytes + 1, ' ')).ok());
}

TEST(RequestJson, SemanticErrorsFailClosedInTheEngine) {
  auto engine = testing::MustEngine("apiVersion: v1\nkind: Service\nmetadata: {name: b, namespace: ns}\nspec: {}\n");
  ASSERT_NE(engine, nullptr);
  const char* lines[] = {
      R"({"destination":{"service":""},"request":{"method":"GET","path":"/"}})",
      R"({"destination":{"service":"nodots"},"request":{"method":"GET","path":"/"}})",
      R"({"destination":{"service":"b.ns","ip":"300.1.1.1"},"request":{"method":"GET","path":"/"}})",
      R"({"destination":{"service":"b.ns"},"source":{"ip":"x"},"request":{"method":"GET","path":"/"}})",
      R"({"destination":{"service":"b.ns"},"source":{"principal":"spiffe://td/ns/a/sa/a"},"connection":{"mtls":false},"request":{"method":"GET","path":"/"}})",
      R"({"destination":{"service":"b.ns"},"request":{"path":"/"}})",
      R"({"destination":{"service":"b.ns"},"request":{"method":"GE T","path":"/"}})",
      R"({"destination":{"service":"b.ns"},"request":{"method":"GET"}})",
      R"({"destination":{"service":"b.ns"},"request":{"method":"GET","path":"relative"}})",
      R"({"protocol":"tcp","destination":{"service":"b.ns"},"request":{"method":"GET"}})",
  };
  for (const char* line : lines) {
    auto in = ParseRequestJson(line);
    ASSERT_TRUE(in.ok()) << line << ": " << in.status();
    auto d = engine->Check(*in);
    EXPECT_FALSE(d.ok()) << line;
    const std::string json = ErrorDecisionJson(d.status());
    EXPECT_EQ(json.rfind(R"({"allowed":false,"status":403,"policy":"","rule":"","reason":"request denied)", 0), 0u)
        << json;
  }
}

TEST(RequestJson, DecisionFormat) {
  Decision d;
  d.allowed = true;
  d.status = 200;
  d.policy = "ns/p";
  d.rule = "rules[0]";
  d.reason = "allowed by \"x\"";
  EXPECT_EQ(DecisionToJson(d),
            R"({"allowed":true,"status":200,"policy":"ns/p","rule":"rules[0]","reason":"allowed by \"x\""})");
  d.shadow = rbac::ShadowResult{false, "ns/dry", "rules[1]"};
  EXPECT_EQ(DecisionToJson(d),
            R"({"allowed":true,"status":200,"policy":"ns/p","rule":"rules[0]","reason":"allowed by \"x\"",)"
            R"("shadow":{"allowed":false,"policy":"ns/dry","rule":"rules[1]"}})");
  d.reason = std::string("bad utf8 \xff");
  EXPECT_NE(DecisionToJson(d).find("bad utf8"), std::string::npos) << "invalid UTF-8 must not throw";
}

namespace v3 = envoy::service::auth::v3;

TEST(ExtAuthz, RequestMapping) {
  v3::CheckRequest req;
  auto* a = req.mutable_attributes();
  a->mutable_source()->set_principal("spiffe://cluster.local/ns/a/sa/a");
  a->mutable_source()->mutable_address()->mutable_socket_address()->set_address("10.0.0.1");
  a->mutable_destination()->mutable_address()->mutable_socket_address()->set_address("10.0.0.2");
  a->mutable_destination()->mutable_address()->mutable_socket_address()->set_port_value(8080);
  (*a->mutable_destination()->mutable_labels())["version"] = "v1";
  a->mutable_tls_session()->set_sni("sni.example");
  auto* http = a->mutable_request()->mutable_http();
  http->set_method("POST");
  http->set_path("/a?b=c");
  http->set_host("b.example");
  (*http->mutable_headers())["x-a"] = "1";
  auto* hv = http->mutable_header_map()->add_headers();
  hv->set_key("x-raw");
  hv->set_raw_value("2");
  ExtAuthzDefaults defaults;
  defaults.service = "b.ns.svc.cluster.local";
  defaults.labels = {{"app", "b"}};
  auto in = RequestFromCheck(req, defaults);
  ASSERT_TRUE(in.ok()) << in.status();
  EXPECT_EQ(in->protocol, rbac::Protocol::kHttp);
  EXPECT_EQ(in->destination_service, "b.ns.svc.cluster.local");
  EXPECT_EQ(in->destination_labels.at("app"), "b");
  EXPECT_EQ(in->destination_labels.at("version"), "v1");
  EXPECT_EQ(in->destination_ip, "10.0.0.2");
  EXPECT_EQ(in->destination_port, 8080u);
  EXPECT_EQ(in->source_ip, "10.0.0.1");
  EXPECT_TRUE(in->mtls.value_or(false));
  EXPECT_EQ(in->sni, "sni.example");
  EXPECT_EQ(in->method, "POST");
  EXPECT_EQ(in->path, "/a?b=c");
  EXPECT_EQ(in->headers.size(), 2u);
  (*a->mutable_context_extensions())["service"] = "other.x.svc.cluster.local";
  (*a->mutable_context_extensions())["namespace"] = "x";
  in = RequestFromCheck(req, defaults);
  ASSERT_TRUE(in.ok());
  EXPECT_EQ(in->destination_service, "other.x.svc.cluster.local");
  EXPECT_EQ(in->destination_namespace, "x");
  a->mutable_request()->clear_http();
  in = RequestFromCheck(req, defaults);
  ASSERT_TRUE(in.ok());
  EXPECT_EQ(in->protocol, rbac::Protocol::kTcp);
  EXPECT_FALSE(RequestFromCheck(v3::CheckRequest(), ExtAuthzDefaults()).ok()) << "no service anywhere";
}

TEST(ExtAuthz, Responses) {
  Decision allow;
  allow.allowed = true;
  allow.status = 200;
  allow.policy = "ns/p";
  v3::CheckResponse ok;
  FillCheckResponse(allow, &ok);
  EXPECT_EQ(ok.status().code(), 0);
  EXPECT_TRUE(ok.has_ok_response());
  EXPECT_EQ(ok.dynamic_metadata().fields().at("policy").string_value(), "ns/p");

  Decision deny;
  deny.status = 403;
  deny.reason = "RBAC: access denied: x";
  v3::CheckResponse forbidden;
  FillCheckResponse(deny, &forbidden);
  EXPECT_EQ(forbidden.status().code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(forbidden.denied_response().status().code(), envoy::type::v3::Forbidden);
  EXPECT_EQ(forbidden.denied_response().body(), "RBAC: access denied");

  Decision unauth;
  unauth.status = 401;
  unauth.reason = "Origin authentication failed. (Jwt is expired)";
  v3::CheckResponse unauthorized;
  FillCheckResponse(unauth, &unauthorized);
  EXPECT_EQ(unauthorized.status().code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(unauthorized.denied_response().status().code(), envoy::type::v3::Unauthorized);
  EXPECT_EQ(unauthorized.denied_response().body(), unauth.reason);

  v3::CheckResponse failed;
  FillCheckResponse(absl::StatusOr<Decision>(absl::InternalError("boom")), &failed);
  EXPECT_EQ(failed.status().code(), grpc::StatusCode::PERMISSION_DENIED) << "an evaluation error fails closed";
  EXPECT_EQ(failed.denied_response().status().code(), envoy::type::v3::Forbidden);
}

TEST(ExtAuthz, ServiceUsesTheCurrentEngine) {
  std::shared_ptr<const PolicyEngine> current;
  MetricsRegistry metrics;
  ExtAuthzService service([&] { return current; }, {"b.ns.svc.cluster.local", "", {}, ""}, metrics, MakeNullLogger());
  v3::CheckRequest req;
  req.mutable_attributes()->mutable_request()->mutable_http()->set_method("GET");
  req.mutable_attributes()->mutable_request()->mutable_http()->set_path("/");
  v3::CheckResponse res;
  ASSERT_TRUE(service.Check(nullptr, &req, &res).ok());
  EXPECT_EQ(res.status().code(), grpc::StatusCode::PERMISSION_DENIED) << "no engine yet: fail closed";
  current = testing::MustEngine(
      "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: ns}\n"
      "spec: {rules: [{to: [{operation: {methods: [GET]}}]}]}\n");
  res.Clear();
  ASSERT_TRUE(service.Check(nullptr, &req, &res).ok());
  EXPECT_EQ(res.status().code(), 0);
  EXPECT_NE(metrics.RenderPrometheus().find("meshid_authz_decisions_total{result=\"allowed\"} 1"), std::string::npos)
      << metrics.RenderPrometheus();
}

// CUSTOM policies through a real gRPC ext_authz server (meshid's own, serving another policy).
TEST(ExtAuthz, CustomPolicyDelegatesToGrpcProvider) {
  auto backend_engine = testing::MustEngine(
      "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: ext, namespace: ns}\n"
      "spec: {rules: [{from: [{source: {principals: [cluster.local/ns/a/sa/a]}}], "
      "when: [{key: 'request.headers[x-ok]', values: ['*']}]}]}\n");
  MetricsRegistry backend_metrics;
  ExtAuthzService backend([&] { return backend_engine; }, {}, backend_metrics, MakeNullLogger());
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&backend);
  auto server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  auto provider = GrpcExtAuthzProvider::Create(
      {{"my-ext", absl::StrCat("127.0.0.1:", port)}, {"nobody-home", "unix:/nonexistent/meshid-test.sock"}},
      absl::Seconds(10));
  ASSERT_TRUE(provider.ok());
  PolicyEngineOptions options;
  options.custom = *provider;
  auto engine = testing::MustEngine(
      "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: custom, namespace: ns}\n"
      "spec: {action: CUSTOM, provider: {name: my-ext}, rules: [{to: [{operation: {paths: ['/ext*']}}]}]}\n---\n"
      "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: down, namespace: ns}\n"
      "spec: {action: CUSTOM, provider: {name: nobody-home}, rules: [{to: [{operation: {paths: ['/down']}}]}]}\n---\n"
      "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: unknown, namespace: ns}\n"
      "spec: {action: CUSTOM, provider: {name: typo}, rules: [{to: [{operation: {paths: ['/typo']}}]}]}\n",
      options);
  testing::RunCases(
      engine,
      {
          {"provider_allows", testing::Http("GET", "/ext/a").From("cluster.local/ns/a/sa/a").Header("x-ok", "1"),
           testing::Allow("")},
          {"provider_denies_missing_header", testing::Http("GET", "/ext/a").From("cluster.local/ns/a/sa/a"),
           testing::Deny("ns/custom")},
          {"provider_sees_the_peer_identity",
           testing::Http("GET", "/ext/a").From("cluster.local/ns/b/sa/b").Header("x-ok", "1"),
           testing::Deny("ns/custom")},
          {"unmatched_custom_not_consulted", testing::Http("GET", "/other"), testing::Allow("")},
          {"unreachable_provider_fails_closed", testing::Http("GET", "/down"), testing::Error()},
          {"unknown_provider_fails_closed", testing::Http("GET", "/typo"), testing::Error()},
      });
  server->Shutdown();
}

TEST(JwksFetcher, HttpAndFileAndErrors) {
  std::map<std::string, HttpHandler> handlers;
  handlers["/jwks"] = [](const std::string&) { return HttpReply{200, "application/json", R"({"keys":[]})"}; };
  handlers["/broken"] = [](const std::string&) { return HttpReply{500, "text/plain", "no"}; };
  auto server = HttpStatusServer::Create("127.0.0.1:0", handlers);
  ASSERT_TRUE(server.ok()) << server.status();
  DefaultJwksFetcher fetcher(absl::Seconds(10));
  const std::string base = absl::StrCat("http://127.0.0.1:", (*server)->port());
  auto ok = fetcher.Fetch(base + "/jwks");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(*ok, R"({"keys":[]})");
  auto status = fetcher.Fetch(base + "/broken");
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.status().message().find("HTTP status 500"), std::string::npos) << status.status();
  EXPECT_FALSE(fetcher.Fetch(base + "/missing").ok());
  EXPECT_FALSE(fetcher.Fetch("ftp://x/y").ok());
  EXPECT_FALSE(fetcher.Fetch("http://").ok());
  EXPECT_FALSE(fetcher.Fetch("http://host:99999/x").ok());
  EXPECT_FALSE(fetcher.Fetch("file://").ok());
  EXPECT_TRUE(absl::IsNotFound(fetcher.Fetch("file:///nonexistent/meshid/jwks.json").status()));
}

TEST(JwksFetcher, ServerThatNeverAnswersTimesOut) {
  // A listening socket nobody accepts on: the connection completes, the response never comes.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(fd, 4), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  auto r = HttpGet(absl::StrCat("http://127.0.0.1:", ntohs(addr.sin_port), "/jwks"), absl::Milliseconds(200));
  EXPECT_TRUE(absl::IsDeadlineExceeded(r.status())) << r.status();
  ::close(fd);
}

TEST(PolicyWatcher, BadConfigKeepsLastGoodEngine) {
  ::meshid::testing::TempDir temp_dir("meshid-watch");
  const std::filesystem::path dir = temp_dir.path();
  auto write = [&](const std::string& name, const std::string& text) { std::ofstream(dir / name) << text; };
  const std::string allow_get =
      "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: ns}\n"
      "spec: {rules: [{to: [{operation: {methods: [GET]}}]}]}\n";
  write("p.yaml", allow_get);
  policy::PolicyWatcher::Options options;
  options.paths = {dir.string()};
  MetricsRegistry metrics;
  auto w = policy::PolicyWatcher::Create(options, SystemClock::Instance(), metrics, MakeNullLogger());
  ASSERT_TRUE(w.ok()) << w.status();
  auto post = testing::Http("POST").in;
  auto first = (*w)->Current();
  EXPECT_FALSE(first->Check(post)->allowed);
  EXPECT_TRUE((*w)->Poll().ok()) << "unchanged files";
  EXPECT_EQ((*w)->generation(), 1);

  write("broken.yaml",
        "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: q, namespace: ns}\nspec: "
        "{action: MAYBE}\n");
  auto st = (*w)->Poll();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("broken.yaml:4"), std::string::npos) << st;
  EXPECT_EQ((*w)->Current(), first) << "the last good engine stays in force";
  EXPECT_EQ((*w)->generation(), 1);
  EXPECT_NE((*w)->last_error().find("MAYBE"), std::string::npos);

  std::filesystem::remove(dir / "broken.yaml");
  write("p.yaml", allow_get + "---\n" +
                      allow_get.substr(0, allow_get.find("spec:")).replace(allow_get.find("name: p"), 7, "name: q") +
                      "spec: {rules: [{to: [{operation: {methods: [POST]}}]}]}\n");
  ASSERT_TRUE((*w)->Poll().ok()) << (*w)->last_error();
  EXPECT_EQ((*w)->generation(), 2);
  EXPECT_TRUE((*w)->Current()->Check(post)->allowed);
  EXPECT_TRUE((*w)->last_error().empty());
  EXPECT_NE(metrics.RenderPrometheus().find("meshid_policy_reloads_total{result=\"error\"} 1"), std::string::npos);

  write("bad.yaml", "not: [yaml");
  std::filesystem::remove_all(dir / "p.yaml");
  EXPECT_FALSE((*w)->Poll().ok());
  EXPECT_TRUE((*w)->Current()->Check(post)->allowed);
  std::filesystem::remove_all(dir);
  EXPECT_FALSE(policy::PolicyWatcher::Create(options, SystemClock::Instance(), metrics, MakeNullLogger()).ok())
      << "no initial configuration, no watcher";
}

}  // namespace
}  // namespace meshid::authz
