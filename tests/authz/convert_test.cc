// `meshid authz convert`: the v1beta1 policies it prints decide the same request set exactly
// as the v1alpha1 RBAC they came from (evaluated through the same engine), and what cannot be
// expressed is refused with a clear error.
#include "rbac/convert.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "tests/authz/policy_test_util.h"

namespace meshid::authz::testing {
namespace {

std::string ReadRepoFile(const std::string& rel) {
  std::ifstream in(std::string(MESHID_SOURCE_DIR) + "/" + rel);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const char* kServices = R"(
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec:
  selector: {app: api, tier: backend}
  ports: [{name: http, port: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  selector: {app: db}
  ports: [{name: tcp-pg, port: 5432}]
---
apiVersion: v1
kind: Service
metadata: {name: admin-api, namespace: shop}
spec:
  selector: {app: admin-api}
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: stats, namespace: ops}
spec:
  selector: {app: stats}
  ports: [{name: http, port: 9090}]
)";

const char* kRoles = R"(
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: public-read, namespace: shop}
spec:
  rules:
  - services: ["web.shop.svc.cluster.local"]
    methods: [GET]
  - services: ["*"]
    paths: ["/healthz"]
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRoleBinding
metadata: {name: everyone, namespace: shop}
spec:
  subjects: [{user: "*"}]
  roleRef: {kind: ServiceRole, name: public-read}
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: api-writer, namespace: shop}
spec:
  rules:
  - services: ["api.shop.svc.cluster.local", "admin-*"]
    methods: [GET, POST]
    not_paths: ["/admin*"]
    constraints:
    - {key: 'request.headers[x-user]', values: ['alice', 'b*']}
  - services: ["*.shop.svc.cluster.local"]
    paths: ["/api/*"]
    constraints:
    - {key: destination.port, values: ['8080']}
    - {key: destination.name, values: [api]}
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRoleBinding
metadata: {name: writers, namespace: shop}
spec:
  subjects:
  - user: cluster.local/ns/shop/sa/web
  - user: allAuthenticatedUsers
    properties: {source.ip: 192.168.0.0/16}
  - namespaces: [ops]
    not_names: [cluster.local/ns/ops/sa/intruder]
  - properties: {source.user: cluster.local/ns/shop/sa/legacy}
  roleRef: {kind: ServiceRole, name: api-writer}
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: db-access, namespace: shop}
spec:
  rules:
  - services: ["db.shop.svc.cluster.local"]
    ports: [5432]
  - services: ["db.shop.svc.cluster.local"]
    methods: ["*"]
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRoleBinding
metadata: {name: db-clients, namespace: shop}
spec:
  subjects:
  - user: "*/sa/api"
  - user: cluster.local/ns/shop/sa/web
    properties: {'request.headers[x-debug]': '1'}
  roleRef: {kind: ServiceRole, name: db-access}
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRoleBinding
metadata: {name: trial, namespace: shop}
spec:
  mode: PERMISSIVE
  subjects: [{user: cluster.local/ns/shop/sa/trial}]
  roleRef: {kind: ServiceRole, name: db-access}
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: stats-read, namespace: ops}
spec:
  rules:
  - services: ["*"]
    methods: [GET]
    constraints: [{key: 'destination.labels[app]', values: [stats]}]
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRoleBinding
metadata: {name: stats-readers, namespace: ops}
spec:
  subjects: [{properties: {source.namespace: 'sh*'}}]
  roleRef: {kind: ServiceRole, name: stats-read}
)";

std::string Config(const std::string& mode) {
  return "apiVersion: rbac.istio.io/v1alpha1\nkind: ClusterRbacConfig\nmetadata: {name: default}\nspec:\n" + mode;
}

std::vector<RequestInput> RequestSet() {
  const std::vector<std::pair<std::string, uint32_t>> targets = {
      {"web.shop.svc.cluster.local", 8080},     {"api.shop.svc.cluster.local", 8080},
      {"db.shop.svc.cluster.local", 5432},      {"admin-api.shop.svc.cluster.local", 80},
      {"stats.ops.svc.cluster.local", 9090},    {"unknown.shop.svc.cluster.local", 80},
      {"other.elsewhere.svc.cluster.local", 80}};
  const std::vector<std::string> sources = {"",
                                            "cluster.local/ns/shop/sa/web",
                                            "cluster.local/ns/shop/sa/api",
                                            "cluster.local/ns/ops/sa/monitor",
                                            "cluster.local/ns/ops/sa/intruder",
                                            "cluster.local/ns/shop/sa/legacy",
                                            "cluster.local/ns/shop/sa/trial"};
  std::vector<RequestInput> out;
  for (const auto& [svc, port] : targets) {
    for (const auto& src : sources) {
      for (const char* ip : {"10.0.0.1", "192.168.3.4"}) {
        RequestInput tcp;
        tcp.protocol = rbac::Protocol::kTcp;
        tcp.destination_service = svc;
        tcp.destination_port = port;
        if (!src.empty()) tcp.source_principal = "spiffe://" + src;
        tcp.source_ip = ip;
        out.push_back(tcp);
        for (const char* method : {"GET", "POST", "DELETE"}) {
          for (const char* path : {"/", "/healthz", "/api/x", "/admin/x", "/x/../admin"}) {
            for (const char* user : {"", "alice", "bob", "mallory"}) {
              RequestInput in = tcp;
              in.protocol = rbac::Protocol::kHttp;
              in.method = method;
              in.path = path;
              if (*user) in.headers.emplace_back("x-user", user);
              if (std::string(user) == "bob") in.headers.emplace_back("x-debug", "1");
              out.push_back(in);
            }
          }
        }
      }
    }
  }
  return out;
}

std::string Describe(const RequestInput& in) {
  return absl::StrCat(in.protocol == rbac::Protocol::kTcp ? "tcp " : "http ", in.method, " ", in.destination_service,
                      ":", in.destination_port, in.path, " from '", in.source_principal, "' ip ", in.source_ip,
                      in.headers.empty() ? "" : absl::StrCat(" x-user=", in.headers[0].second));
}

void ExpectEquivalent(const std::string& name, const std::string& v1alpha1_yaml, const std::string& services_yaml) {
  SCOPED_TRACE(name);
  auto alpha_set = Parse(v1alpha1_yaml);
  ASSERT_TRUE(alpha_set.ok()) << alpha_set.status();
  auto converted = rbac::ConvertToV1beta1(alpha_set->rbac);
  ASSERT_TRUE(converted.ok()) << converted.status();
  auto beta_set = Parse(services_yaml + "\n" + converted->yaml);
  ASSERT_TRUE(beta_set.ok()) << beta_set.status() << "\n" << converted->yaml;
  EXPECT_TRUE(beta_set->rbac.roles.empty());
  auto alpha = PolicyEngine::Create(std::move(*alpha_set), SystemClock::Instance());
  auto beta = PolicyEngine::Create(std::move(*beta_set), SystemClock::Instance());
  ASSERT_TRUE(alpha.ok() && beta.ok());
  size_t allowed = 0, denied = 0, mismatches = 0;
  for (const auto& in : RequestSet()) {
    auto a = (*alpha)->Check(in);
    auto b = (*beta)->Check(in);
    ASSERT_TRUE(a.ok() && b.ok()) << Describe(in);
    (a->allowed ? allowed : denied)++;
    if (a->allowed != b->allowed && mismatches++ < 10) {
      ADD_FAILURE() << name << ": " << Describe(in) << ": v1alpha1 " << (a->allowed ? "allows" : "denies") << " ("
                    << a->reason << "), converted v1beta1 " << (b->allowed ? "allows" : "denies") << " (" << b->reason
                    << ")";
    }
  }
  EXPECT_EQ(mismatches, 0u) << converted->yaml;
  // A request set where everything is allowed (or denied) would prove nothing.
  EXPECT_GT(allowed, 50u) << name;
  EXPECT_GT(denied, 50u) << name;
}

TEST(Convert, EquivalentModeOn) { ExpectEquivalent("on", Config("  mode: 'ON'\n") + kServices + kRoles, kServices); }

TEST(Convert, EquivalentInclusionByNamespace) {
  ExpectEquivalent("inclusion_ns",
                   Config("  mode: ON_WITH_INCLUSION\n  inclusion: {namespaces: [shop]}\n") + kServices + kRoles,
                   kServices);
}

TEST(Convert, EquivalentInclusionByService) {
  ExpectEquivalent(
      "inclusion_svc",
      Config(
          "  mode: ON_WITH_INCLUSION\n  inclusion: {services: [api.shop.svc.cluster.local, db.shop.svc.cluster.local], "
          "namespaces: [ops]}\n") +
          kServices + kRoles,
      kServices);
}

TEST(Convert, EquivalentExclusion) {
  ExpectEquivalent(
      "exclusion",
      Config("  mode: ON_WITH_EXCLUSION\n  exclusion: {namespaces: [ops], services: [web.shop.svc.cluster.local]}\n") +
          kServices + kRoles,
      kServices);
}

TEST(Convert, EquivalentBookinfoExample) {
  const std::string services = ReadRepoFile("examples/policy/bookinfo-services.yaml");
  ASSERT_FALSE(services.empty());
  auto alpha_set = Parse(services + "\n---\n" + ReadRepoFile("examples/policy/v1alpha1-rbac.yaml"));
  ASSERT_TRUE(alpha_set.ok()) << alpha_set.status();
  auto converted = rbac::ConvertToV1beta1(alpha_set->rbac);
  ASSERT_TRUE(converted.ok()) << converted.status();
  auto beta_set = Parse(services + "\n" + converted->yaml);
  ASSERT_TRUE(beta_set.ok()) << beta_set.status();
  auto alpha = PolicyEngine::Create(std::move(*alpha_set), SystemClock::Instance());
  auto beta = PolicyEngine::Create(std::move(*beta_set), SystemClock::Instance());
  ASSERT_TRUE(alpha.ok() && beta.ok());
  std::ifstream lines(std::string(MESHID_SOURCE_DIR) + "/examples/policy/requests.jsonl");
  std::string line;
  size_t n = 0;
  for (const char* svc : {"productpage", "reviews", "ratings", "details", "mongodb"}) {
    for (const char* sa : {"", "bookinfo-productpage", "bookinfo-reviews", "bookinfo-ratings-v2", "other"}) {
      for (bool tcp : {false, true}) {
        RequestInput in;
        in.protocol = tcp ? rbac::Protocol::kTcp : rbac::Protocol::kHttp;
        in.destination_service = absl::StrCat(svc, ".default.svc.cluster.local");
        in.destination_port = std::string(svc) == "mongodb" ? 27017 : 9080;
        if (*sa) in.source_principal = absl::StrCat("spiffe://cluster.local/ns/default/sa/", sa);
        if (!tcp) {
          in.method = "GET";
          in.path = "/";
        }
        auto a = (*alpha)->Check(in);
        auto b = (*beta)->Check(in);
        ASSERT_TRUE(a.ok() && b.ok());
        EXPECT_EQ(a->allowed, b->allowed) << Describe(in) << "\n" << a->reason << "\n" << b->reason;
        ++n;
      }
    }
  }
  EXPECT_EQ(n, 50u);
}

TEST(Convert, OffConvertsToNothing) {
  auto set = Parse(Config("  mode: 'OFF'\n") + kServices + kRoles);
  ASSERT_TRUE(set.ok());
  auto converted = rbac::ConvertToV1beta1(set->rbac);
  ASSERT_TRUE(converted.ok());
  EXPECT_EQ(converted->yaml, "");
  EXPECT_EQ(converted->policies, 0u);
  ASSERT_EQ(converted->notes.size(), 1u);
  EXPECT_NE(converted->notes[0].find("OFF"), std::string::npos);
}

TEST(Convert, PermissiveBindingsBecomeDryRun) {
  auto set = Parse(Config("  mode: 'ON'\n") + kServices + kRoles);
  ASSERT_TRUE(set.ok());
  auto converted = rbac::ConvertToV1beta1(set->rbac);
  ASSERT_TRUE(converted.ok());
  EXPECT_NE(converted->yaml.find("name: db-access--db--dry-run"), std::string::npos) << converted->yaml;
  EXPECT_NE(converted->yaml.find("istio.io/dry-run: \"true\""), std::string::npos);
}

TEST(Convert, RefusesWhatV1beta1CannotExpress) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"(
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: r, namespace: shop}
spec:
  rules: [{services: ['*'], constraints: [{key: destination.user, values: [web]}]}]
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRoleBinding
metadata: {name: b, namespace: shop}
spec: {subjects: [{user: '*'}], roleRef: {kind: ServiceRole, name: r}}
)",
       "ServiceRole shop/r spec.rules[0]: constraint destination.user"},
      {R"(
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: r, namespace: shop}
spec:
  rules: [{services: ['*'], constraints: [{key: 'destination.labels[v]', values: [v1, v2]}]}]
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRoleBinding
metadata: {name: b, namespace: shop}
spec: {subjects: [{user: '*'}], roleRef: {kind: ServiceRole, name: r}}
)",
       "must have exactly one exact value to become a workload selector"},
      {R"(
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: r, namespace: shop}
spec:
  rules: [{services: [ghost.shop.svc.cluster.local]}]
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRoleBinding
metadata: {name: b, namespace: shop}
spec: {subjects: [{user: '*'}], roleRef: {kind: ServiceRole, name: r}}
)",
       "service ghost.shop.svc.cluster.local has no Service document"},
  };
  for (const auto& [yaml, expected] : cases) {
    auto set = Parse(Config("  mode: 'ON'\n") + kServices + yaml);
    ASSERT_TRUE(set.ok()) << set.status();
    auto converted = rbac::ConvertToV1beta1(set->rbac);
    ASSERT_FALSE(converted.ok()) << expected;
    EXPECT_NE(converted.status().message().find(expected), std::string::npos) << converted.status();
  }
}

}  // namespace
}  // namespace meshid::authz::testing
