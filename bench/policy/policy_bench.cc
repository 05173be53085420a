// Policy evaluation cost: one decision = request normalisation (path, headers) + authentication
// + authorization, through the same PolicyEngine `meshid authz check` and ext_authz use.
//
// Mesh: 1,000 services in 100 namespaces (10 each, every Service with its selector). Policies:
// v1beta1 AuthorizationPolicies spread over the services (selector app=<service>, three rules:
// principal+methods, namespace+paths, a header condition; every tenth a DENY), plus one
// namespace-wide policy per namespace once there are enough; or, for the v1alpha1 runs,
// ServiceRole/ServiceRoleBinding pairs under ClusterRbacConfig ON. Requests cycle over 4,096
// pre-built requests to random services with random callers, so lookups are not cache-warm
// for a single service.
#include <benchmark/benchmark.h>

#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "authz/policy_engine.h"
#include "authz/policy_set.h"
#include "rbac/engine.h"

namespace meshid::authz {
namespace {

constexpr int kServices = 1000;
constexpr int kNamespaces = 100;

std::string Ns(int svc) { return absl::StrCat("ns-", svc % kNamespaces); }
std::string Name(int svc) { return absl::StrCat("svc-", svc); }
std::string Host(int svc) { return absl::StrCat(Name(svc), ".", Ns(svc), ".svc.cluster.local"); }

std::string ServicesYaml() {
  std::string y;
  for (int s = 0; s < kServices; ++s) {
    absl::StrAppend(&y, "---\napiVersion: v1\nkind: Service\nmetadata: {name: ", Name(s), ", namespace: ", Ns(s),
                    "}\nspec:\n  selector: {app: ", Name(s),
                    "}\n  ports: [{name: http, port: 80, targetPort: 8080}]\n");
  }
  return y;
}

std::string BetaYaml(int policies) {
  std::string y = ServicesYaml();
  for (int p = 0; p < policies; ++p) {
    const int svc = p % kServices;
    const bool deny = p % 10 == 9;
    absl::StrAppend(&y, "---\napiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: p-", p,
                    ", namespace: ", Ns(svc), "}\nspec:\n  selector: {matchLabels: {app: ", Name(svc), "}}\n",
                    deny ? "  action: DENY\n" : "", "  rules:\n",
                    "  - from: [{source: {principals: ['cluster.local/ns/", Ns(p + 1), "/sa/client-", p % 7,
                    "']}}]\n    to: [{operation: {methods: [GET, HEAD], paths: ['/api/v", p % 3, "/*']}}]\n",
                    "  - from: [{source: {namespaces: ['", Ns(p + 2),
                    "']}}]\n    to: [{operation: {paths: ['/public*', '*.css']}}]\n",
                    "  - when: [{key: 'request.headers[x-tenant]', values: ['t", p % 5, "']}]\n");
  }
  // With many policies, namespaces also carry namespace-wide ones (as real meshes do).
  if (policies >= 1000) {
    for (int n = 0; n < kNamespaces; ++n) {
      absl::StrAppend(&y,
                      "---\napiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: "
                      "ns-wide, namespace: ns-",
                      n,
                      "}\nspec:\n  rules: [{from: [{source: {principals: ['cluster.local/ns/ops/sa/prober']}}], to: "
                      "[{operation: {paths: [/healthz]}}]}]\n");
    }
  }
  return y;
}

std::string AlphaYaml(int policies) {
  std::string y = ServicesYaml() +
                  "---\napiVersion: rbac.istio.io/v1alpha1\nkind: ClusterRbacConfig\nmetadata: {name: default}\nspec: "
                  "{mode: 'ON'}\n";
  for (int p = 0; p < policies; ++p) {
    const int svc = p % kServices;
    absl::StrAppend(&y, "---\napiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRole\nmetadata: {name: r-", p,
                    ", namespace: ", Ns(svc), "}\nspec:\n  rules:\n  - services: ['", Host(svc),
                    "']\n    methods: [GET, HEAD]\n    paths: ['/api/v", p % 3, "/*']\n",
                    "---\napiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRoleBinding\nmetadata: {name: b-", p,
                    ", namespace: ", Ns(svc), "}\nspec:\n  roleRef: {kind: ServiceRole, name: r-", p,
                    "}\n  subjects:\n  - user: cluster.local/ns/", Ns(p + 1), "/sa/client-", p % 7,
                    "\n  - properties: {source.namespace: ", Ns(p + 2), "}\n");
  }
  return y;
}

std::shared_ptr<const PolicyEngine> Build(const std::string& yaml) {
  Diagnostics diag;
  auto set = ParsePolicySet(yaml, "bench.yaml", {}, diag);
  if (!set.ok()) {
    fprintf(stderr, "%s\n", std::string(set.status().message()).c_str());
    std::abort();
  }
  auto engine = PolicyEngine::Create(std::move(*set), SystemClock::Instance());
  if (!engine.ok()) std::abort();
  return *engine;
}

std::shared_ptr<const PolicyEngine> Cached(bool beta, int policies) {
  static std::map<std::pair<bool, int>, std::shared_ptr<const PolicyEngine>> cache;
  auto& e = cache[{beta, policies}];
  if (!e) e = Build(beta ? BetaYaml(policies) : AlphaYaml(policies));
  return e;
}

const std::vector<RequestInput>& Requests() {
  static const std::vector<RequestInput> requests = [] {
    std::mt19937 rng(42);
    std::vector<RequestInput> out;
    const char* paths[] = {"/api/v0/items", "/api/v1/items/42?x=1", "/public/index.html", "/static/site.css",
                           "/admin",        "/api/v2/../v1/a"};
    for (int i = 0; i < 4096; ++i) {
      const int svc = static_cast<int>(rng() % kServices);
      RequestInput in;
      in.destination_service = Host(svc);
      in.destination_port = 8080;
      in.source_principal =
          absl::StrCat("spiffe://cluster.local/ns/", Ns(static_cast<int>(rng() % kServices)), "/sa/client-", rng() % 7);
      in.source_ip = "10.1.2.3";
      in.method = rng() % 4 == 0 ? "POST" : "GET";
      in.path = paths[rng() % 6];
      in.headers = {{"x-tenant", absl::StrCat("t", rng() % 8)}, {"user-agent", "bench"}, {"accept", "*/*"}};
      out.push_back(std::move(in));
    }
    return out;
  }();
  return requests;
}

void Decide(benchmark::State& state, bool beta) {
  const int policies = static_cast<int>(state.range(0));
  auto engine = Cached(beta, policies);
  const auto& requests = Requests();
  size_t i = 0, allowed = 0;
  for (auto _ : state) {
    auto d = engine->Check(requests[i++ & 4095]);
    allowed += d.ok() && d->allowed;
    benchmark::DoNotOptimize(d);
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["ns_per_decision"] = benchmark::Counter(static_cast<double>(state.iterations()),
                                                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["allowed_share"] = static_cast<double>(allowed) / static_cast<double>(state.iterations());
  state.SetLabel(
      absl::StrCat(policies, beta ? " AuthorizationPolicies" : " ServiceRole+Binding pairs", ", 1000 services"));
}

void BM_DecisionV1beta1(benchmark::State& state) { Decide(state, true); }
void BM_DecisionV1alpha1(benchmark::State& state) { Decide(state, false); }

// Authorization alone on prepared attributes (no parsing, normalisation or authentication).
void BM_RbacEvaluateOnly(benchmark::State& state) {
  const int policies = static_cast<int>(state.range(0));
  auto engine = Cached(true, policies);
  std::vector<rbac::RequestAttributes> attrs;
  for (const auto& in : Requests()) {
    auto a = engine->Attributes(in);
    if (!a.ok()) std::abort();
    a->source_principal = std::string(rbac::StripSpiffeScheme(in.source_principal));
    a->source_namespace = rbac::NamespaceFromPrincipal(a->source_principal);
    attrs.push_back(std::move(*a));
  }
  Diagnostics diag;
  auto set = ParsePolicySet(BetaYaml(policies), "bench.yaml", {}, diag);
  auto rbac = rbac::RbacEngine::Create(set->rbac);
  size_t i = 0;
  for (auto _ : state) {
    auto r = (*rbac)->Evaluate(attrs[i++ & 4095]);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["ns_per_decision"] = benchmark::Counter(static_cast<double>(state.iterations()),
                                                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// Loading and compiling the whole configuration (what a hot reload costs).
void BM_LoadAndCompile(benchmark::State& state) {
  const std::string yaml = BetaYaml(static_cast<int>(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(Build(yaml));
  state.SetLabel(absl::StrCat(yaml.size() / 1024, " KiB of YAML"));
}

BENCHMARK(BM_DecisionV1beta1)->Arg(10)->Arg(100)->Arg(1000)->Arg(10000);
BENCHMARK(BM_DecisionV1alpha1)->Arg(10)->Arg(100)->Arg(1000)->Arg(10000);
BENCHMARK(BM_RbacEvaluateOnly)->Arg(10)->Arg(1000)->Arg(10000);
BENCHMARK(BM_LoadAndCompile)->Arg(100)->Arg(1000)->Arg(10000)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace meshid::authz

BENCHMARK_MAIN();
