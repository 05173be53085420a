// Authentication semantics: v1alpha1 Policy/MeshPolicy (precedence, port selectors, peers,
// origins with JWT, principal binding) and v1beta1 PeerAuthentication/RequestAuthentication,
// as Istio 1.5 applies them, and their effect on authorization.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "common/jwt.h"
#include "common/keys.h"
#include "tests/authz/policy_test_util.h"
#include "tests/support/fake_clock.h"
#include "tests/support/temp_dir.h"

namespace meshid::authz::testing {
namespace {

using ::meshid::testing::FakeClock;

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

std::string AuthnPolicy(const std::string& name, const std::string& ns, const std::string& spec,
                        const std::string& extra_meta = "") {
  return absl::StrCat("---\napiVersion: authentication.istio.io/v1alpha1\nkind: Policy\nmetadata: {name: ", name,
                      ", namespace: ", ns, extra_meta, "}\nspec:\n", spec);
}
std::string MeshPolicy(const std::string& spec) {
  return "---\napiVersion: authentication.istio.io/v1alpha1\nkind: MeshPolicy\nmetadata: {name: default}\nspec:\n" +
         spec;
}
std::string Beta(const std::string& kind, const std::string& name, const std::string& ns, const std::string& spec) {
  return absl::StrCat("---\napiVersion: security.istio.io/v1beta1\nkind: ", kind, "\nmetadata: {name: ", name,
                      ", namespace: ", ns, "}\nspec:\n", spec);
}
const char* kServiceB = R"(
---
apiVersion: v1
kind: Service
metadata: {name: b, namespace: ns}
spec:
  selector: {app: b}
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: grpc-api, port: 9000}
  - {name: tcp-db, port: 5432}
)";
// A v1beta1 policy that shows which identities reached authorization.
const char* kShowIdentity = R"(
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: need-peer, namespace: ns}
spec:
  rules:
  - from: [{source: {principals: ['*']}}]
  - to: [{operation: {paths: [/open*]}}]
)";

TEST(AuthnPolicySelection, ServiceBeatsNamespaceBeatsMesh) {
  auto e = MustEngine(std::string(kServiceB) + MeshPolicy("  peers: [{mtls: {}}]\n") +
                      AuthnPolicy("default", "ns", "  peers: [{mtls: {mode: PERMISSIVE}}]\n") +
                      AuthnPolicy("b-strict", "ns", "  targets: [{name: b}]\n  peers: [{mtls: {}}]\n"));
  RunCases(e,
           {
               {"service_policy_strict_plaintext_401", Http().Port(8080),
                WithReason(Unauthenticated(), "Peer authentication failed.")},
               {"namespace_policy_permissive_for_other_service", Http().To("c.ns.svc.cluster.local", 8080), Allow("")},
               {"mesh_policy_strict_for_other_namespace", Http().To("c.other.svc.cluster.local"),
                WithReason(Unauthenticated(), "Peer authentication failed.")},
               {"mesh_policy_strict_mtls_ok", Http().To("c.other.svc.cluster.local").From("cluster.local/ns/a/sa/a"),
                Allow("")},
           });
  auto d = e->Check(Http().Port(8080).in);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->policy, "ns/b-strict");
  auto mesh = e->Check(Http().To("c.other.svc.cluster.local").in);
  ASSERT_TRUE(mesh.ok());
  EXPECT_EQ(mesh->policy, "/default");
}

TEST(AuthnPolicySelection, Istio15PortSelectorBeatsOlderPortlessPolicy) {
  auto e = MustEngine(
      std::string(kServiceB) +
      AuthnPolicy("old-portless", "ns", "  targets: [{name: b}]\n  peers: [{mtls: {mode: PERMISSIVE}}]\n",
                  ", creationTimestamp: '2020-01-01T00:00:00Z'") +
      AuthnPolicy("new-port-80", "ns", "  targets: [{name: b, ports: [{number: 80}]}]\n  peers: [{mtls: {}}]\n",
                  ", creationTimestamp: '2020-02-01T00:00:00Z'") +
      AuthnPolicy("by-name", "ns", "  targets: [{name: b, ports: [{name: grpc-api}]}]\n  peers: [{mtls: {}}]\n",
                  ", creationTimestamp: '2020-03-01T00:00:00Z'"));
  RunCases(e, {
                  {"workload_port_8080_is_service_port_80", Http().Port(8080), Unauthenticated()},
                  {"named_port_selector", Http().Port(9000), Unauthenticated()},
                  {"other_port_uses_portless_policy", Http().Port(5432), Allow("")},
              });
  auto d = e->Check(Http().Port(8080).in);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->policy, "ns/new-port-80");
}

TEST(AuthnPolicySelection, OldestWinsAmongEquals) {
  auto e = MustEngine(std::string(kServiceB) +
                      AuthnPolicy("young", "ns", "  targets: [{name: b}]\n  peers: [{mtls: {}}]\n",
                                  ", creationTimestamp: '2021-01-01T00:00:00Z'") +
                      AuthnPolicy("old", "ns", "  targets: [{name: b}]\n  peers: [{mtls: {mode: PERMISSIVE}}]\n",
                                  ", creationTimestamp: '2020-01-01T00:00:00Z'"));
  RunCases(e, {{"oldest_policy_applies", Http().Port(8080), Allow("")}});
}

TEST(AuthnPeers, StrictPermissiveOptionalAndTcp) {
  auto e = MustEngine(
      std::string(kServiceB) + kShowIdentity +
      AuthnPolicy("strict", "ns", "  targets: [{name: b, ports: [{number: 80}]}]\n  peers: [{mtls: {}}]\n") +
      AuthnPolicy("permissive", "ns",
                  "  targets: [{name: b, ports: [{number: 9000}]}]\n  peers: [{mtls: {mode: PERMISSIVE}}]\n") +
      AuthnPolicy("optional", "ns",
                  "  targets: [{name: b, ports: [{number: 5432}]}]\n  peers: [{mtls: {}}]\n  peerIsOptional: true\n") +
      AuthnPolicy("jwt-only", "ns",
                  "  targets: [{name: c}]\n  origins: [{jwt: {issuer: x, jwks: '{\"keys\":[]}'}}]\n  originIsOptional: "
                  "true\n"));
  RunCases(e, {
                  {"strict_plaintext_http_401", Http("GET", "/open").Port(8080),
                   WithReason(Unauthenticated(), "Peer authentication failed.")},
                  {"strict_mtls_identity_reaches_rbac", Http("GET", "/x").Port(8080).From("cluster.local/ns/a/sa/a"),
                   Allow("ns/need-peer", "rules[0]")},
                  {"strict_tcp_plaintext_connection_closed", Tcp().Port(8080),
                   WithReason(Deny("ns/strict"), "connection closed")},
                  {"strict_tcp_mtls", Tcp().Port(8080).From("cluster.local/ns/a/sa/a"), Allow("ns/need-peer")},
                  {"permissive_plaintext_passes_without_identity", Http("GET", "/x").Port(9000), Deny("")},
                  {"permissive_plaintext_open_path", Http("GET", "/open").Port(9000), Allow("ns/need-peer")},
                  {"permissive_mtls_identity", Http("GET", "/x").Port(9000).From("cluster.local/ns/a/sa/a"),
                   Allow("ns/need-peer")},
                  {"peer_is_optional_plaintext_passes", Http("GET", "/open").Port(5432), Allow("ns/need-peer")},
                  {"no_peers_no_identity_even_with_mtls",
                   Http("GET", "/x").To("c.ns.svc.cluster.local").From("cluster.local/ns/a/sa/a"), Deny("")},
              });
}

TEST(AuthnPeers, Istio15NoPolicyDefaultsToPermissive) {
  auto e = MustEngine(kShowIdentity);
  RunCases(
      e,
      {
          {"no_policy_mtls_identity_used", Http("GET", "/x").From("cluster.local/ns/a/sa/a"), Allow("ns/need-peer")},
          {"no_policy_plaintext_no_identity", Http("GET", "/x"), Deny("")},
          {"plaintext_cannot_claim_identity", Http("GET", "/x").From("cluster.local/ns/a/sa/a").Mtls(false), Error()},
      });
}

TEST(AuthnPeers, TrustDomainMustMatchTheLocalOne) {
  auto e = MustEngine(AuthnPolicy("default", "ns", "  peers: [{mtls: {}}]\n") + kShowIdentity);
  RunCases(e, {
                  {"same_trust_domain",
                   Http("GET", "/x").From("cluster.local/ns/a/sa/a").DstPrincipal("spiffe://cluster.local/ns/ns/sa/b"),
                   Allow("ns/need-peer")},
                  {"foreign_trust_domain_401",
                   Http("GET", "/x").From("evil.td/ns/a/sa/a").DstPrincipal("spiffe://cluster.local/ns/ns/sa/b"),
                   WithReason(Unauthenticated(), "trust domain")},
                  {"unknown_local_trust_domain_skips_check", Http("GET", "/x").From("evil.td/ns/a/sa/a"),
                   Allow("ns/need-peer")},
              });
}

TEST(PeerAuthentication, MeshNamespaceWorkloadAndPortLevel) {
  auto e = MustEngine(std::string(kServiceB) + kShowIdentity +
                      Beta("PeerAuthentication", "mesh", "istio-system", "  mtls: {mode: STRICT}\n") +
                      Beta("PeerAuthentication", "ns-permissive", "ns", "  mtls: {mode: PERMISSIVE}\n") +
                      Beta("PeerAuthentication", "b-ports", "ns",
                           "  selector: {matchLabels: {app: b}}\n  mtls: {mode: UNSET}\n  portLevelMtls:\n    8080: "
                           "{mode: STRICT}\n    9000: {mode: DISABLE}\n") +
                      Beta("PeerAuthentication", "ignored-root-selector", "istio-system",
                           "  selector: {matchLabels: {app: b}}\n  mtls: {mode: DISABLE}\n") +
                      AuthnPolicy("alpha-ignored", "ns", "  targets: [{name: b}]\n  peers: [{mtls: {}}]\n"));
  RunCases(
      e,
      {
          {"mesh_strict_other_namespace", Http("GET", "/open").To("x.other.svc.cluster.local"), Unauthenticated()},
          {"namespace_overrides_mesh", Http("GET", "/open").To("c.ns.svc.cluster.local"), Allow("ns/need-peer")},
          {"workload_unset_inherits_namespace", Http("GET", "/open").Port(5432), Allow("ns/need-peer")},
          {"port_level_strict_by_workload_port", Http("GET", "/open").Port(8080), Unauthenticated()},
          {"port_level_disable_drops_identity", Http("GET", "/x").Port(9000).From("cluster.local/ns/a/sa/a"), Deny("")},
          {"port_level_strict_tcp_closed", Tcp().Port(8080), Deny("ns/b-ports")},
          {"root_namespace_selector_ignored", Http("GET", "/x").Port(5432).From("cluster.local/ns/a/sa/a"),
           Allow("ns/need-peer")},
      });
}

TEST(PeerAuthentication, Istio15FallsBackToAlphaPolicyWhenNoneApplies) {
  auto e = MustEngine(Beta("PeerAuthentication", "other", "other", "  mtls: {mode: DISABLE}\n") +
                      AuthnPolicy("default", "ns", "  peers: [{mtls: {}}]\n"));
  RunCases(e, {
                  {"alpha_strict_applies", Http(), Unauthenticated()},
                  {"beta_applies_in_its_namespace", Http().To("x.other.svc.cluster.local"), Allow("")},
              });
}

class JwtFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    key_ = *GenerateKey(KeyAlgorithm::kEcdsaP256);
    key2_ = *GenerateKey(KeyAlgorithm::kEcdsaP256);
    other_ = *GenerateKey(KeyAlgorithm::kEcdsaP256);
    jwks_ = Jwks::FromPublicKey(key_.get(), "k1")->ToJson();
    jwks2_ = Jwks::FromPublicKey(key2_.get(), "k2")->ToJson();
    clock_ = std::make_unique<FakeClock>(kNow);
  }

  std::string Token(const std::string& iss, nlohmann::json extra = {}, EVP_PKEY* key = nullptr,
                    const std::string& kid = "k1") {
    nlohmann::json claims = {{"iss", iss},
                             {"sub", "alice"},
                             {"aud", "api"},
                             {"exp", absl::ToUnixSeconds(kNow) + 600},
                             {"iat", absl::ToUnixSeconds(kNow) - 10}};
    for (auto it = extra.begin(); it != extra.end(); ++it) {
      if (it->is_null()) {
        claims.erase(it.key());
      } else {
        claims[it.key()] = *it;
      }
    }
    return *SignJwt(claims, key ? key : key_.get(), kid);
  }

  PolicyEngineOptions Options() {
    PolicyEngineOptions o;
    return o;
  }

  EvpPkeyPtr key_, key2_, other_;
  std::string jwks_, jwks2_;
  std::unique_ptr<FakeClock> clock_;
};

TEST_F(JwtFixture, OriginJwtCases) {
  const std::string yaml = AuthnPolicy("default", "ns",
                                       absl::StrCat(R"(  origins:
  - jwt:
      issuer: https://issuer-one
      audiences: [api, other-api]
      jwks: ')",
                                                    jwks_, R"('
  - jwt:
      issuer: https://issuer-two
      jwks: ')",
                                                    jwks2_, R"('
      triggerRules:
      - excludedPaths: [{exact: /health}]
        includedPaths: [{prefix: /api}, {regex: '/v[0-9]+/.*'}]
  principalBinding: USE_ORIGIN
)")) + R"(
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: who, namespace: ns}
spec:
  rules:
  - when: [{key: request.auth.principal, values: ['https://issuer-one/alice']}]
  - when: [{key: request.auth.principal, values: ['https://issuer-two/*']}]
  - to: [{operation: {paths: [/health, /public]}}]
)";
  auto e = MustEngine(yaml, Options(), *clock_);
  const std::string good = Token("https://issuer-one");
  RunCases(
      e, {
             {"valid_token_principal_is_iss_slash_sub", Http("GET", "/x").Bearer(good), Allow("ns/who", "rules[0]")},
             {"missing_token_401", Http("GET", "/x"), WithReason(Unauthenticated(), "Origin authentication failed.")},
             {"expired_token_401",
              Http("GET", "/x").Bearer(Token("https://issuer-one", {{"exp", absl::ToUnixSeconds(kNow) - 3600}})),
              WithReason(Unauthenticated(), "Jwt is expired")},
             {"expiry_within_skew_ok",
              Http("GET", "/x").Bearer(Token("https://issuer-one", {{"exp", absl::ToUnixSeconds(kNow) - 30}})),
              Allow("ns/who")},
             {"not_yet_valid_401",
              Http("GET", "/x").Bearer(Token("https://issuer-one", {{"nbf", absl::ToUnixSeconds(kNow) + 3600}})),
              Unauthenticated()},
             {"no_exp_is_accepted", Http("GET", "/x").Bearer(Token("https://issuer-one", {{"exp", nullptr}})),
              Allow("ns/who")},
             {"wrong_issuer_401", Http("GET", "/x").Bearer(Token("https://issuer-evil")),
              WithReason(Unauthenticated(), "Origin authentication failed.")},
             {"wrong_audience_401", Http("GET", "/x").Bearer(Token("https://issuer-one", {{"aud", "someone-else"}})),
              WithReason(Unauthenticated(), "Audiences in Jwt are not allowed")},
             {"second_audience_accepted",
              Http("GET", "/x").Bearer(Token("https://issuer-one", {{"aud", {"x", "other-api"}}})), Allow("ns/who")},
             {"bad_signature_401", Http("GET", "/x").Bearer(Token("https://issuer-one", {}, other_.get())),
              WithReason(Unauthenticated(), "Jwt verification fails")},
             {"tampered_payload_401", Http("GET", "/x").Bearer([&] {
                std::string t = good;
                size_t dot = t.find('.');
                t[dot + 5] = t[dot + 5] == 'A' ? 'B' : 'A';
                return t;
              }()),
              Unauthenticated()},
             {"garbage_token_401", Http("GET", "/x").Bearer("not-a-jwt"), Unauthenticated()},
             {"token_in_access_token_param", Http("GET", "/x?access_token=" + good), Allow("ns/who")},
             {"lowercase_bearer_scheme", Http("GET", "/x").Header("authorization", "bearer " + good), Allow("ns/who")},
             {"two_issuers_second_on_triggered_path",
              Http("GET", "/api/items").Bearer(Token("https://issuer-two", {{"aud", nullptr}}, key2_.get(), "k2")),
              Allow("ns/who", "rules[1]")},
             {"two_issuers_second_on_regex_path",
              Http("GET", "/v2/items").Bearer(Token("https://issuer-two", {{"aud", nullptr}}, key2_.get(), "k2")),
              Allow("ns/who", "rules[1]")},
             {"second_issuer_key_cannot_sign_for_first",
              Http("GET", "/x").Bearer(Token("https://issuer-one", {}, key2_.get(), "k2")), Unauthenticated()},
         });
}

TEST_F(JwtFixture, TriggerRulesDecideWhetherAJwtIsRequired) {
  const std::string yaml = AuthnPolicy("default", "ns",
                                       absl::StrCat(R"(  origins:
  - jwt:
      issuer: iss
      jwks: ')",
                                                    jwks_, R"('
      triggerRules:
      - excludedPaths: [{exact: /health}, {suffix: .css}]
      - includedPaths: [{prefix: /always}]
)"));
  auto e = MustEngine(yaml, Options(), *clock_);
  RunCases(e, {
                  {"excluded_exact_path_no_token_needed", Http("GET", "/health"), Allow("")},
                  {"excluded_path_ignores_query", Http("GET", "/health?probe=1"), Allow("")},
                  {"excluded_suffix", Http("GET", "/static/site.css"), Allow("")},
                  {"other_path_requires_token", Http("GET", "/data"), Unauthenticated()},
                  {"second_rule_includes_even_excluded_suffix", Http("GET", "/always/x.css"), Unauthenticated()},
                  {"triggered_with_token", Http("GET", "/data").Bearer(Token("iss")), Allow("")},
                  {"excluded_path_with_bad_token_still_ok", Http("GET", "/health").Bearer("junk"), Allow("")},
              });
}

TEST_F(JwtFixture, HeadersParamsOptionalAndCors) {
  const std::string yaml = AuthnPolicy("default", "ns",
                                       absl::StrCat(R"(  origins:
  - jwt:
      issuer: iss
      jwks: ')",
                                                    jwks_, R"('
      jwtHeaders: [x-jwt-assertion]
      jwtParams: [token]
)")) + AuthnPolicy("optional", "ns",
                   absl::StrCat(R"(  targets: [{name: c}]
  origins:
  - jwt:
      issuer: iss
      jwks: ')",
                                jwks_, R"('
  originIsOptional: true
)"));
  auto e = MustEngine(yaml, Options(), *clock_);
  const std::string t = Token("iss");
  RunCases(e, {
                  {"custom_header_carries_raw_token", Http().Header("x-jwt-assertion", t), Allow("")},
                  {"custom_param", Http("GET", "/p?a=1&token=" + t), Allow("")},
                  {"default_authorization_not_used_with_custom_locations", Http().Bearer(t), Unauthenticated()},
                  {"cors_preflight_bypasses_origin_authn",
                   Http("OPTIONS", "/x").Header("origin", "https://ui").Header("access-control-request-method", "POST"),
                   Allow("")},
                  {"options_without_cors_headers_needs_token", Http("OPTIONS", "/x"), Unauthenticated()},
                  {"origin_is_optional_missing_ok", Http().To("c.ns.svc.cluster.local"), Allow("")},
                  {"origin_is_optional_invalid_ok", Http().To("c.ns.svc.cluster.local").Bearer("junk"), Allow("")},
              });
}

TEST_F(JwtFixture, PrincipalBindingAndClaimsReachRbac) {
  const std::string yaml =
      AuthnPolicy(
          "use-peer", "ns",
          absl::StrCat(
              "  targets: [{name: b}]\n  peers: [{mtls: {mode: PERMISSIVE}}]\n  origins: [{jwt: {issuer: iss, jwks: '",
              jwks_, "'}}]\n")) +
      AuthnPolicy(
          "use-origin", "ns",
          absl::StrCat(
              "  targets: [{name: c}]\n  peers: [{mtls: {mode: PERMISSIVE}}]\n  origins: [{jwt: {issuer: iss, jwks: '",
              jwks_, "'}}]\n  principalBinding: USE_ORIGIN\n")) +
      AuthnPolicy("no-origins-use-origin", "ns", "  targets: [{name: d}]\n  principalBinding: USE_ORIGIN\n") + R"(
---
apiVersion: rbac.istio.io/v1alpha1
kind: ClusterRbacConfig
metadata: {name: default}
spec: {mode: 'ON'}
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: r, namespace: ns}
spec:
  rules: [{services: ['*']}]
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRoleBinding
metadata: {name: by-request-principal, namespace: ns}
spec:
  roleRef: {kind: ServiceRole, name: r}
  subjects:
  - properties: {request.auth.principal: iss/alice}
  - properties: {request.auth.principal: cluster.local/ns/a/sa/peer}
  - group: admins
  - properties: {'request.auth.claims[scope]': write}
  - properties: {request.auth.audiences: first}
  - properties: {request.auth.presenter: web-ui}
)";
  auto e = MustEngine(yaml, Options(), *clock_);
  RunCases(
      e,
      {
          {"use_origin_principal_is_iss_sub", Http().To("c.ns.svc.cluster.local").Bearer(Token("iss")),
           Allow("ns/r", "rules[0]; binding ns/by-request-principal subjects[0]")},
          {"use_peer_request_principal_is_peer",
           Http().Bearer(Token("iss", {{"sub", "nobody"}})).From("cluster.local/ns/a/sa/peer"),
           Allow("ns/r", "rules[0]; binding ns/by-request-principal subjects[1]")},
          {"use_peer_ignores_token_identity", Http().Bearer(Token("iss")), Deny("")},
          {"group_from_groups_claim_list", Http().Bearer(Token("iss", {{"sub", "x"}, {"groups", {"dev", "admins"}}})),
           Allow("ns/r", "rules[0]; binding ns/by-request-principal subjects[2]")},
          {"space_separated_string_claim_split", Http().Bearer(Token("iss", {{"sub", "x"}, {"scope", "read write"}})),
           Allow("ns/r", "rules[0]; binding ns/by-request-principal subjects[3]")},
          {"istio_1_5_audiences_first_only", Http().Bearer(Token("iss", {{"sub", "x"}, {"aud", {"first", "second"}}})),
           Allow("ns/r", "rules[0]; binding ns/by-request-principal subjects[4]")},
          {"istio_1_5_audiences_second_not_seen",
           Http().Bearer(Token("iss", {{"sub", "x"}, {"aud", {"second", "first"}}})), Deny("")},
          {"presenter_is_azp", Http().Bearer(Token("iss", {{"sub", "x"}, {"azp", "web-ui"}})),
           Allow("ns/r", "rules[0]; binding ns/by-request-principal subjects[5]")},
          {"use_origin_without_origins_401", Http().To("d.ns.svc.cluster.local"), Unauthenticated()},
      });
}

TEST_F(JwtFixture, RequestAuthenticationInvalidIs401MissingPasses) {
  const std::string yaml = Beta("RequestAuthentication", "jwt", "ns",
                                absl::StrCat(R"(  selector: {matchLabels: {app: b}}
  jwtRules:
  - issuer: iss
    jwks: ')",
                                             jwks_, R"('
  - issuer: iss2
    jwks: ')",
                                             jwks2_, R"('
    fromHeaders: [{name: x-token, prefix: 'Token '}]
)")) + R"(
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: require-jwt, namespace: ns}
spec:
  selector: {matchLabels: {app: b}}
  rules:
  - from: [{source: {requestPrincipals: ['*']}}]
    to: [{operation: {paths: [/secure*]}}]
  - to: [{operation: {paths: [/open*]}}]
)";
  auto e = MustEngine(yaml, Options(), *clock_);
  RunCases(
      e,
      {
          {"valid_token", Http("GET", "/secure").Label("app", "b").Bearer(Token("iss")),
           Allow("ns/require-jwt", "rules[0]")},
          {"second_rule_custom_header_prefix",
           Http("GET", "/secure").Label("app", "b").Header("x-token", "Token " + Token("iss2", {}, key2_.get(), "k2")),
           Allow("ns/require-jwt")},
          {"missing_token_passes_authn", Http("GET", "/open").Label("app", "b"), Allow("ns/require-jwt", "rules[1]")},
          {"missing_token_then_rbac_403", Http("GET", "/secure").Label("app", "b"), Deny("")},
          {"invalid_token_401_even_on_open_path", Http("GET", "/open").Label("app", "b").Bearer("junk"),
           Unauthenticated()},
          {"expired_token_401",
           Http("GET", "/open").Label("app", "b").Bearer(Token("iss", {{"exp", absl::ToUnixSeconds(kNow) - 999}})),
           WithReason(Unauthenticated(), "Jwt is expired")},
          {"unknown_issuer_401", Http("GET", "/open").Label("app", "b").Bearer(Token("nobody")),
           WithReason(Unauthenticated(), "Jwt issuer is not configured")},
          {"token_for_issuer2_in_default_header_rejected",
           Http("GET", "/open").Label("app", "b").Bearer(Token("iss2", {}, key2_.get(), "k2")), Unauthenticated()},
          {"unselected_workload_ignores_token", Http("GET", "/x").Label("app", "z").Bearer("junk"), Allow("")},
      });
}

TEST_F(JwtFixture, JwksFromFileUriAndFetchFailures) {
  ::meshid::testing::TempDir temp_dir("meshid-jwks");
  const std::filesystem::path dir = temp_dir.path();
  const std::string path = (dir / "jwks.json").string();
  std::ofstream(path) << jwks_;
  const std::string yaml =
      Beta("RequestAuthentication", "file", "ns",
           absl::StrCat("  jwtRules:\n  - issuer: iss\n    jwksUri: file://", path, "\n")) +
      Beta("RequestAuthentication", "missing", "other",
           absl::StrCat("  jwtRules:\n  - issuer: iss\n    jwksUri: file://", (dir / "nope.json").string(), "\n"));
  auto set = Parse(yaml);
  ASSERT_TRUE(set.ok()) << set.status();
  auto engine = PolicyEngine::Create(std::move(*set), *clock_, Options());
  ASSERT_TRUE(engine.ok()) << engine.status();
  ASSERT_EQ((*engine)->warnings().size(), 1u);
  EXPECT_NE((*engine)->warnings()[0].find("nope.json"), std::string::npos) << (*engine)->warnings()[0];
  RunCases(*engine,
           {
               {"file_uri_jwks_verifies", Http().Bearer(Token("iss")), Allow("")},
               {"unfetchable_jwks_rejects_every_token", Http().To("b.other.svc.cluster.local").Bearer(Token("iss")),
                WithReason(Unauthenticated(), "Jwks remote fetch is failed")},
               {"unfetchable_jwks_missing_token_still_passes", Http().To("b.other.svc.cluster.local"), Allow("")},
           });
}

class MapFetcher : public JwksFetcher {
 public:
  std::map<std::string, std::string> docs;
  absl::StatusOr<std::string> Fetch(const std::string& uri) const override {
    auto it = docs.find(uri);
    if (it == docs.end()) return absl::NotFoundError("no such document: " + uri);
    return it->second;
  }
};

TEST_F(JwtFixture, HttpJwksUriAndOpenIdDiscovery) {
  auto fetcher = std::make_shared<MapFetcher>();
  fetcher->docs["https://keys.example/jwks"] = jwks_;
  fetcher->docs["https://accounts.example/.well-known/openid-configuration"] =
      R"({"issuer":"https://accounts.example","jwks_uri":"https://accounts.example/certs"})";
  fetcher->docs["https://accounts.example/certs"] = jwks2_;
  auto options = Options();
  options.jwks_fetcher = fetcher;
  auto e = MustEngine(Beta("RequestAuthentication", "r", "ns",
                           "  jwtRules:\n  - issuer: iss\n    jwksUri: https://keys.example/jwks\n"
                           "  - issuer: https://accounts.example\n"),
                      options, *clock_);
  RunCases(e,
           {
               {"http_jwks_uri", Http().Bearer(Token("iss")), Allow("")},
               {"discovered_jwks", Http().Bearer(Token("https://accounts.example", {}, key2_.get(), "k2")), Allow("")},
               {"discovered_jwks_wrong_key", Http().Bearer(Token("https://accounts.example")), Unauthenticated()},
           });
}

}  // namespace
}  // namespace meshid::authz::testing
