// `meshid authz check` request lines come from users and scripts: fuzz the JSON parser and
// the evaluation of whatever parses, against a policy set that uses every matcher kind.
#include <cstddef>
#include <cstdint>
#include <string>

#include "authz/policy_engine.h"
#include "authz/policy_set.h"
#include "authz/request_json.h"

namespace {
const char* kPolicies = R"(
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: deny, namespace: ns}
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: ['/admin*'], notMethods: [GET]}}]
    when: [{key: 'request.headers[x-a]', values: ['*']}]
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: allow, namespace: ns}
spec:
  rules:
  - from: [{source: {principals: ['*/sa/a'], ipBlocks: ['10.0.0.0/8'], namespaces: [a]}}]
  - to: [{operation: {hosts: ['*.example.com'], ports: ['8080']}}]
  - when: [{key: 'request.auth.claims[groups]', values: [x]}, {key: destination.ip, values: ['::1']}]
---
apiVersion: rbac.istio.io/v1alpha1
kind: ClusterRbacConfig
metadata: {name: default}
spec: {mode: 'ON'}
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: r, namespace: other}
spec:
  rules: [{services: ['*'], paths: ['*.json'], constraints: [{key: 'destination.labels[v]', values: [v1]}]}]
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRoleBinding
metadata: {name: b, namespace: other}
spec:
  roleRef: {kind: ServiceRole, name: r}
  subjects: [{user: '*', properties: {source.namespace: 'a*'}}]
---
apiVersion: security.istio.io/v1beta1
kind: RequestAuthentication
metadata: {name: jwt, namespace: ns}
spec:
  jwtRules: [{issuer: iss, jwks: '{"keys":[{"kty":"EC","crv":"P-256","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM","kid":"1"}]}'}]
---
apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata: {name: default, namespace: other}
spec:
  peers: [{mtls: {mode: PERMISSIVE}}]
  origins: [{jwt: {issuer: iss, jwks: '{"keys":[]}', triggerRules: [{excludedPaths: [{regex: '/h.*'}]}]}}]
  originIsOptional: true
)";

const meshid::authz::PolicyEngine& Engine() {
  static const std::shared_ptr<const meshid::authz::PolicyEngine> engine = [] {
    meshid::rbac::Diagnostics diag;
    auto set = meshid::authz::ParsePolicySet(kPolicies, "fuzz.yaml", {}, diag);
    if (!set.ok()) __builtin_trap();
    auto e = meshid::authz::PolicyEngine::Create(std::move(*set), meshid::SystemClock::Instance());
    if (!e.ok()) __builtin_trap();
    return *e;
  }();
  return *engine;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string line(reinterpret_cast<const char*>(data), size);
  auto request = meshid::authz::ParseRequestJson(line);
  if (!request.ok()) {
    (void)meshid::authz::ErrorDecisionJson(request.status());
    return 0;
  }
  auto decision = Engine().Check(*request);
  if (decision.ok()) {
    if (decision->allowed != (decision->status == 200)) __builtin_trap();
    (void)meshid::authz::DecisionToJson(*decision);
  } else {
    (void)meshid::authz::ErrorDecisionJson(decision.status());
  }
  return 0;
}
