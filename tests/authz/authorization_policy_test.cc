// v1beta1 AuthorizationPolicy semantics: CUSTOM → DENY → ALLOW, selectors and the root
// namespace, from/to/when with every not-variant, allow-nothing / allow-all, TCP handling
// (Istio 1.5+), dry-run shadow, and precedence over v1alpha1 (Istio 1.5 builder).
#include <gtest/gtest.h>

#include <atomic>

#include "tests/authz/policy_test_util.h"

namespace meshid::authz::testing {
namespace {

std::string Policy(const std::string& name, const std::string& ns, const std::string& spec,
                   const std::string& extra_meta = "") {
  return absl::StrCat("---\napiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: ", name,
                      ", namespace: ", ns, extra_meta, "}\nspec:\n", spec);
}

TEST(AuthzPolicyActions, DenyBeatsAllow) {
  auto e =
      MustEngine(Policy("allow-all", "ns", "  rules: [{}]\n") +
                 Policy("deny-admin", "ns", "  action: DENY\n  rules: [{to: [{operation: {paths: ['/admin*']}}]}]\n"));
  RunCases(e, {
                  {"allow_all_rule", Http("GET", "/x"), Allow("ns/allow-all", "rules[0]")},
                  {"deny_wins_over_allow", Http("GET", "/admin/x"), Deny("ns/deny-admin", "rules[0]")},
                  {"deny_after_normalisation", Http("GET", "/x/../admin"), Deny("ns/deny-admin")},
              });
}

TEST(AuthzPolicyActions, NoAllowPolicyMeansAllowUnlessDenied) {
  auto e = MustEngine(Policy("deny-post", "ns", "  action: DENY\n  rules: [{to: [{operation: {methods: [POST]}}]}]\n"));
  RunCases(e, {
                  {"only_deny_policies_allow_rest", Http("GET"), WithReason(Allow(""), "no ALLOW policy")},
                  {"deny_matches", Http("POST"), Deny("ns/deny-post")},
              });
}

TEST(AuthzPolicyActions, AllowNothingAndAllowAll) {
  auto nothing = MustEngine(Policy("allow-nothing", "ns", "  {}\n"));
  RunCases(nothing, {
                        {"allow_nothing_denies_get", Http("GET"), Deny("")},
                        {"allow_nothing_denies_authenticated", Http().From("cluster.local/ns/a/sa/a"), Deny("")},
                        {"allow_nothing_denies_tcp", Tcp(), Deny("")},
                        {"allow_nothing_other_namespace_untouched", Http().To("b.other.svc.cluster.local"), Allow("")},
                    });
  auto all = MustEngine(Policy("allow-all", "ns", "  rules:\n  - {}\n"));
  RunCases(all, {
                    {"allow_all_plaintext", Http("DELETE", "/x"), Allow("ns/allow-all")},
                    {"allow_all_tcp", Tcp(), Allow("ns/allow-all")},
                });
  auto deny_empty = MustEngine(Policy("deny-none", "ns", "  action: DENY\n"));
  RunCases(deny_empty, {{"deny_without_rules_never_matches", Http(), Allow("")}});
  auto both = MustEngine(Policy("allow-nothing", "ns", "  {}\n") +
                         Policy("allow-get", "ns", "  rules: [{to: [{operation: {methods: [GET]}}]}]\n"));
  RunCases(both, {
                     {"allow_policies_are_ored", Http("GET"), Allow("ns/allow-get")},
                     {"allow_nothing_keeps_rest_denied", Http("PUT"), Deny("")},
                 });
}

class FakeCustom : public rbac::CustomAuthorizer {
 public:
  absl::StatusOr<bool> Check(absl::string_view provider, const rbac::RequestAttributes& a) const override {
    calls++;
    if (provider == "broken") return absl::UnavailableError("provider down");
    return a.Header("x-ext-allow") != nullptr;
  }
  mutable std::atomic<int> calls{0};
};

TEST(AuthzPolicyActions, CustomRunsBeforeDenyAndAllow) {
  const std::string yaml =
      Policy("ext", "ns",
             "  action: CUSTOM\n  provider: {name: my-ext}\n  rules: [{to: [{operation: {paths: ['/ext*']}}]}]\n") +
      Policy("broken", "ns",
             "  action: CUSTOM\n  provider: {name: broken}\n  rules: [{to: [{operation: {paths: ['/broken']}}]}]\n") +
      Policy("deny", "ns", "  action: DENY\n  rules: [{to: [{operation: {paths: ['/ext/deny']}}]}]\n") +
      Policy("allow", "ns", "  rules: [{to: [{operation: {paths: ['/ext*', '/open']}}]}]\n");
  auto custom = std::make_shared<FakeCustom>();
  PolicyEngineOptions options;
  options.custom = custom;
  auto e = MustEngine(yaml, options);
  RunCases(e,
           {
               {"custom_denies_first", Http("GET", "/ext/a"), Deny("ns/ext")},
               {"custom_allows_then_allow_policy", Http("GET", "/ext/a").Header("x-ext-allow", "1"), Allow("ns/allow")},
               {"custom_allows_then_deny_policy", Http("GET", "/ext/deny").Header("x-ext-allow", "1"), Deny("ns/deny")},
               {"custom_not_matching_not_consulted", Http("GET", "/open"), Allow("ns/allow")},
               {"custom_provider_error_fails_closed", Http("GET", "/broken"), Error()},
           });
  EXPECT_EQ(custom->calls.load(), 4);
  auto unconfigured = MustEngine(yaml);
  RunCases(unconfigured, {
                             {"custom_without_provider_fails_closed", Http("GET", "/ext/a"), Error()},
                             {"custom_without_provider_unmatched_fine", Http("GET", "/open"), Allow("ns/allow")},
                         });
}

TEST(AuthzPolicyActions, AuditNeverChangesTheDecision) {
  auto e = MustEngine(Policy("audit", "ns", "  action: AUDIT\n  rules: [{}]\n") +
                      Policy("allow-get", "ns", "  rules: [{to: [{operation: {methods: [GET]}}]}]\n"));
  RunCases(e, {
                  {"audit_match_get_allowed", Http("GET"), Allow("ns/allow-get")},
                  {"audit_match_post_denied", Http("POST"), Deny("")},
              });
}

TEST(AuthzPolicySelectors, WorkloadAndRootNamespace) {
  auto e = MustEngine(
      Policy("v1-only", "ns",
             "  selector: {matchLabels: {app: b, version: v1}}\n  rules: [{to: [{operation: {paths: [/v1]}}]}]\n") +
      Policy("app-b", "ns", "  selector: {matchLabels: {app: b}}\n  rules: [{to: [{operation: {paths: [/b]}}]}]\n") +
      Policy("mesh-deny", "istio-system", "  action: DENY\n  rules: [{to: [{operation: {paths: [/mesh-deny]}}]}]\n") +
      Policy(
          "mesh-labelled", "istio-system",
          "  selector: {matchLabels: {app: c}}\n  action: DENY\n  rules: [{to: [{operation: {paths: [/c-deny]}}]}]\n") +
      Policy("other-ns", "other", "  rules: [{to: [{operation: {paths: [/other]}}]}]\n"));
  RunCases(e, {
                  {"selector_subset_matches",
                   Http("GET", "/v1").Label("app", "b").Label("version", "v1").Label("x", "y"), Allow("ns/v1-only")},
                  {"selector_needs_every_label", Http("GET", "/v1").Label("app", "b").Label("version", "v2"), Deny("")},
                  {"selector_single_label", Http("GET", "/b").Label("app", "b"), Allow("ns/app-b")},
                  {"unselected_workload_no_allow_policy", Http("GET", "/v1").Label("app", "z"), Allow("")},
                  {"root_namespace_applies_everywhere", Http("GET", "/mesh-deny").Label("app", "z"),
                   Deny("istio-system/mesh-deny")},
                  {"root_namespace_applies_other_namespace", Http("GET", "/mesh-deny").To("q.other.svc.cluster.local"),
                   Deny("istio-system/mesh-deny")},
                  {"root_namespace_selector_mesh_wide",
                   Http("GET", "/c-deny").To("c.zz.svc.cluster.local").Label("app", "c"),
                   Deny("istio-system/mesh-labelled")},
                  {"root_namespace_selector_not_matching", Http("GET", "/c-deny").Label("app", "d"), Allow("")},
                  {"policy_of_other_namespace_ignored", Http("GET", "/other").Label("app", "z"), Allow("")},
              });
}

TEST(AuthzPolicySelectors, LabelsFromServiceSelector) {
  auto e = MustEngine(R"(
apiVersion: v1
kind: Service
metadata: {name: b, namespace: ns}
spec:
  selector: {app: b}
  ports: [{name: http, port: 80}]
)" + Policy("app-b", "ns", "  selector: {matchLabels: {app: b}}\n  rules: [{to: [{operation: {methods: [GET]}}]}]\n"));
  RunCases(e, {
                  {"service_selector_labels_select_policy", Http("POST"), Deny("")},
                  {"service_selector_labels_allow", Http("GET"), Allow("ns/app-b")},
              });
}

TEST(AuthzPolicySource, AllFieldsAndNotVariants) {
  auto e = MustEngine(Policy("p", "ns", R"(  rules:
  - from: [{source: {principals: [cluster.local/ns/a/sa/a, '*/sa/suffix', 'td/ns/pre*']}}]
    to: [{operation: {paths: [/principals]}}]
  - from: [{source: {notPrincipals: [cluster.local/ns/a/sa/evil]}}]
    to: [{operation: {paths: [/not-principals]}}]
  - from: [{source: {principals: ['*']}}]
    to: [{operation: {paths: [/any-principal]}}]
  - from: [{source: {notPrincipals: ['*']}}]
    to: [{operation: {paths: [/plaintext-only]}}]
  - from: [{source: {namespaces: [a, 'team-*']}}]
    to: [{operation: {paths: [/namespaces]}}]
  - from: [{source: {notNamespaces: [evil]}}]
    to: [{operation: {paths: [/not-namespaces]}}]
  - from: [{source: {ipBlocks: ['10.0.0.0/8', '2001:db8::/32']}}]
    to: [{operation: {paths: [/ip]}}]
  - from: [{source: {notIpBlocks: ['10.6.6.6']}}]
    to: [{operation: {paths: [/not-ip]}}]
  - from: [{source: {remoteIpBlocks: ['172.16.0.0/12']}}]
    to: [{operation: {paths: [/remote-ip]}}]
  - from: [{source: {requestPrincipals: ['*']}}]
    to: [{operation: {paths: [/request-principal]}}]
  - from: [{source: {notRequestPrincipals: ['*']}}]
    to: [{operation: {paths: [/no-request-principal]}}]
  - from:
    - source: {principals: [cluster.local/ns/a/sa/x], namespaces: [a]}
    - source: {ipBlocks: ['192.168.0.1']}
    to: [{operation: {paths: [/sources-ored-fields-anded]}}]
)"));
  RunCases(
      e,
      {
          {"principal_exact", Http("GET", "/principals").From("cluster.local/ns/a/sa/a"), Allow("ns/p", "rules[0]")},
          {"principal_suffix", Http("GET", "/principals").From("x/ns/y/sa/suffix"), Allow("ns/p")},
          {"principal_prefix", Http("GET", "/principals").From("td/ns/prefixed/sa/z"), Allow("ns/p")},
          {"principal_other", Http("GET", "/principals").From("cluster.local/ns/a/sa/b"), Deny("")},
          {"principal_plaintext", Http("GET", "/principals"), Deny("")},
          {"not_principals_other", Http("GET", "/not-principals").From("cluster.local/ns/a/sa/b"), Allow("ns/p")},
          {"not_principals_plaintext_matches", Http("GET", "/not-principals"), Allow("ns/p")},
          {"not_principals_listed", Http("GET", "/not-principals").From("cluster.local/ns/a/sa/evil"), Deny("")},
          {"star_principal_needs_identity", Http("GET", "/any-principal"), Deny("")},
          {"star_principal_any_identity", Http("GET", "/any-principal").From("x/ns/y/sa/z"), Allow("ns/p")},
          {"not_star_principal_plaintext", Http("GET", "/plaintext-only"), Allow("ns/p")},
          {"not_star_principal_mtls", Http("GET", "/plaintext-only").From("x/ns/y/sa/z"), Deny("")},
          {"namespaces_exact", Http("GET", "/namespaces").From("cluster.local/ns/a/sa/q"), Allow("ns/p")},
          {"namespaces_prefix", Http("GET", "/namespaces").From("cluster.local/ns/team-x/sa/q"), Allow("ns/p")},
          {"namespaces_other", Http("GET", "/namespaces").From("cluster.local/ns/b/sa/q"), Deny("")},
          {"not_namespaces", Http("GET", "/not-namespaces").From("cluster.local/ns/evil/sa/q"), Deny("")},
          {"not_namespaces_plaintext", Http("GET", "/not-namespaces"), Allow("ns/p")},
          {"ip_v4", Http("GET", "/ip").SrcIp("10.2.3.4"), Allow("ns/p")},
          {"ip_v6", Http("GET", "/ip").SrcIp("2001:db8::1"), Allow("ns/p")},
          {"ip_outside", Http("GET", "/ip").SrcIp("11.0.0.1"), Deny("")},
          {"not_ip_listed", Http("GET", "/not-ip").SrcIp("10.6.6.6"), Deny("")},
          {"not_ip_other", Http("GET", "/not-ip").SrcIp("10.6.6.7"), Allow("ns/p")},
          {"remote_ip_is_peer_without_trusted_proxies", Http("GET", "/remote-ip").SrcIp("172.20.0.1"), Allow("ns/p")},
          {"request_principal_missing", Http("GET", "/request-principal"), Deny("")},
          {"not_request_principal_missing", Http("GET", "/no-request-principal"), Allow("ns/p")},
          {"sources_fields_anded_ok", Http("GET", "/sources-ored-fields-anded").From("cluster.local/ns/a/sa/x"),
           Allow("ns/p")},
          {"sources_fields_anded_fail", Http("GET", "/sources-ored-fields-anded").From("cluster.local/ns/b/sa/x"),
           Deny("")},
          {"sources_ored", Http("GET", "/sources-ored-fields-anded").SrcIp("192.168.0.1"), Allow("ns/p")},
      });
}

TEST(AuthzPolicyOperation, AllFieldsAndNotVariants) {
  auto e = MustEngine(Policy("p", "ns", R"(  rules:
  - to: [{operation: {hosts: [api.example.com, '*.internal', 'www.*'], paths: [/hosts]}}]
  - to: [{operation: {notHosts: [admin.example.com], paths: [/not-hosts]}}]
  - to: [{operation: {ports: ['8080'], paths: [/ports]}}]
  - to: [{operation: {notPorts: ['9090'], paths: [/not-ports]}}]
  - to: [{operation: {methods: [GET, HEAD], paths: [/methods]}}]
  - to: [{operation: {notMethods: [DELETE], paths: [/not-methods]}}]
  - to: [{operation: {paths: ['/prefix/*', '*.png', /exact]}}]
  - to: [{operation: {notPaths: ['/private*'], methods: [PUT]}}]
  - to:
    - operation: {methods: [PATCH]}
    - operation: {paths: [/ored]}
)"));
  RunCases(e,
           {
               {"hosts_exact", Http("GET", "/hosts").Host("api.example.com"), Allow("ns/p", "rules[0]")},
               {"hosts_suffix", Http("GET", "/hosts").Host("db.internal"), Allow("ns/p")},
               {"hosts_prefix", Http("GET", "/hosts").Host("www.example.org"), Allow("ns/p")},
               {"hosts_case_insensitive_cve_2021_39155", Http("GET", "/hosts").Host("API.EXAMPLE.COM"), Allow("ns/p")},
               {"hosts_port_not_stripped", Http("GET", "/hosts").Host("api.example.com:80"), Deny("")},
               {"hosts_other", Http("GET", "/hosts").Host("evil.example.com"), Deny("")},
               {"not_hosts_listed", Http("GET", "/not-hosts").Host("admin.example.com"), Deny("")},
               {"not_hosts_listed_upper_case", Http("GET", "/not-hosts").Host("Admin.Example.Com"), Deny("")},
               {"not_hosts_other", Http("GET", "/not-hosts").Host("x.example.com"), Allow("ns/p")},
               {"ports_listed", Http("GET", "/ports").Port(8080), Allow("ns/p")},
               {"ports_other", Http("GET", "/ports").Port(8081), Deny("")},
               {"not_ports_listed", Http("GET", "/not-ports").Port(9090), Deny("")},
               {"not_ports_other", Http("GET", "/not-ports").Port(80), Allow("ns/p")},
               {"methods_listed", Http("HEAD", "/methods"), Allow("ns/p")},
               {"methods_other", Http("POST", "/methods"), Deny("")},
               {"not_methods_listed", Http("DELETE", "/not-methods"), Deny("")},
               {"not_methods_other", Http("POST", "/not-methods"), Allow("ns/p")},
               {"paths_prefix", Http("GET", "/prefix/a"), Allow("ns/p")},
               {"paths_suffix", Http("GET", "/img/x.png"), Allow("ns/p")},
               {"paths_exact", Http("GET", "/exact"), Allow("ns/p")},
               {"istio_1_5_paths_exclude_query", Http("GET", "/exact?q=1"), Allow("ns/p")},
               {"paths_other", Http("GET", "/exactly"), Deny("")},
               {"not_paths_outside", Http("PUT", "/public"), Allow("ns/p")},
               {"not_paths_inside", Http("PUT", "/private/x"), Deny("")},
               {"not_paths_dot_dot_cannot_bypass", Http("PUT", "/public/../private/x"), Deny("")},
               {"not_paths_encoded_cannot_bypass", Http("PUT", "/public/%2E%2E/private"), Deny("")},
               {"not_paths_slashes_cannot_bypass", Http("PUT", "//private"), Deny("")},
               {"operations_ored_first", Http("PATCH", "/zzz"), Allow("ns/p")},
               {"operations_ored_second", Http("GET", "/ored"), Allow("ns/p")},
           });
}

TEST(AuthzPolicyWhen, ConditionKeys) {
  auto e = MustEngine(Policy("p", "ns", R"(  rules:
  - to: [{operation: {paths: [/hdr]}}]
    when: [{key: 'request.headers[X-Tenant]', values: [blue, 'green*']}]
  - to: [{operation: {paths: [/not-hdr]}}]
    when: [{key: 'request.headers[x-tenant]', notValues: [red]}]
  - to: [{operation: {paths: [/both]}}]
    when: [{key: 'request.headers[x-tenant]', values: ['*'], notValues: [red]}]
  - to: [{operation: {paths: [/sip]}}]
    when: [{key: source.ip, values: ['10.0.0.0/8']}]
  - to: [{operation: {paths: [/sns]}}]
    when: [{key: source.namespace, values: [a]}]
  - to: [{operation: {paths: [/sp]}}]
    when: [{key: source.principal, values: ['*']}]
  - to: [{operation: {paths: [/dip]}}]
    when: [{key: destination.ip, values: ['10.9.0.0/16']}]
  - to: [{operation: {paths: [/dport]}}]
    when: [{key: destination.port, notValues: ['15000']}]
  - to: [{operation: {paths: [/sni]}}]
    when: [{key: connection.sni, values: [b.example.com]}]
  - to: [{operation: {paths: [/and]}}]
    when:
    - {key: 'request.headers[a]', values: ['1']}
    - {key: 'request.headers[b]', values: ['2']}
  - to: [{operation: {paths: [/claims]}}]
    when: [{key: 'request.auth.claims[groups]', values: [admins]}]
)"));
  RunCases(e, {
                  {"header_value", Http("GET", "/hdr").Header("x-tenant", "blue"), Allow("ns/p")},
                  {"header_prefix", Http("GET", "/hdr").Header("x-tenant", "greenish"), Allow("ns/p")},
                  {"header_other", Http("GET", "/hdr").Header("x-tenant", "red"), Deny("")},
                  {"header_absent", Http("GET", "/hdr"), Deny("")},
                  {"not_values_other", Http("GET", "/not-hdr").Header("x-tenant", "blue"), Allow("ns/p")},
                  {"not_values_absent_header_matches", Http("GET", "/not-hdr"), Allow("ns/p")},
                  {"not_values_listed", Http("GET", "/not-hdr").Header("x-tenant", "red"), Deny("")},
                  {"values_and_not_values", Http("GET", "/both").Header("x-tenant", "blue"), Allow("ns/p")},
                  {"values_and_not_values_absent", Http("GET", "/both"), Deny("")},
                  {"source_ip", Http("GET", "/sip").SrcIp("10.1.1.1"), Allow("ns/p")},
                  {"source_namespace", Http("GET", "/sns").From("cluster.local/ns/a/sa/s"), Allow("ns/p")},
                  {"source_namespace_plaintext", Http("GET", "/sns"), Deny("")},
                  {"source_principal_star_needs_identity", Http("GET", "/sp"), Deny("")},
                  {"source_principal_star", Http("GET", "/sp").From("x/ns/y/sa/z"), Allow("ns/p")},
                  {"destination_ip", Http("GET", "/dip").DstIp("10.9.8.7"), Allow("ns/p")},
                  {"destination_port_not_values", Http("GET", "/dport").Port(15000), Deny("")},
                  {"destination_port_not_values_other", Http("GET", "/dport").Port(80), Allow("ns/p")},
                  {"sni", Http("GET", "/sni").Sni("b.example.com"), Allow("ns/p")},
                  {"conditions_anded", Http("GET", "/and").Header("a", "1").Header("b", "2"), Allow("ns/p")},
                  {"conditions_anded_missing_one", Http("GET", "/and").Header("a", "1"), Deny("")},
                  {"claims_without_token", Http("GET", "/claims"), Deny("")},
              });
}

TEST(AuthzPolicyTcp, Istio15AllowDropsAndDenyWidens) {
  auto e =
      MustEngine(Policy("allow-http-only", "ns",
                        "  rules:\n  - from: [{source: {principals: [cluster.local/ns/a/sa/a]}}]\n    to: [{operation: "
                        "{methods: [GET]}}]\n"
                        "  - from: [{source: {principals: [cluster.local/ns/a/sa/tcp]}}]\n    to: [{operation: {ports: "
                        "['3306']}}]\n") +
                 Policy("deny-http-only", "ns",
                        "  action: DENY\n  rules:\n  - from: [{source: {principals: [cluster.local/ns/a/sa/evil]}}]\n"
                        "    to: [{operation: {methods: [DELETE]}}]\n"));
  RunCases(
      e, {
             {"http_allow_rule_applies", Http("GET").From("cluster.local/ns/a/sa/a"),
              Allow("ns/allow-http-only", "rules[0]")},
             {"tcp_allow_rule_with_http_fields_dropped", Tcp().From("cluster.local/ns/a/sa/a"), Deny("")},
             {"tcp_allow_rule_without_http_fields_kept", Tcp().Port(3306).From("cluster.local/ns/a/sa/tcp"),
              Allow("ns/allow-http-only", "rules[1]")},
             {"http_deny_needs_method", Http("GET").From("cluster.local/ns/a/sa/evil"), Deny("")},
             {"http_deny_matches_method", Http("DELETE").From("cluster.local/ns/a/sa/evil"), Deny("ns/deny-http-only")},
             {"tcp_deny_widened_ignores_method", Tcp().Port(3306).From("cluster.local/ns/a/sa/evil"),
              Deny("ns/deny-http-only")},
         });
  auto only_deny = MustEngine(
      Policy("deny-get", "ns", "  action: DENY\n  rules: [{to: [{operation: {methods: [GET]}}]}]\n") +
      Policy("deny-jwt", "other", "  action: DENY\n  rules: [{from: [{source: {requestPrincipals: ['*']}}]}]\n"));
  RunCases(only_deny,
           {
               {"tcp_deny_with_only_http_fields_denies_all", Tcp(), Deny("ns/deny-get")},
               {"http_deny_with_only_http_fields", Http("POST"), Allow("")},
               {"tcp_deny_request_principals_widened", Tcp().To("x.other.svc.cluster.local"), Deny("other/deny-jwt")},
           });
}

TEST(AuthzPolicyDryRun, ShadowOnly) {
  auto e = MustEngine(Policy("dry-deny", "ns", "  action: DENY\n  rules: [{to: [{operation: {paths: [/x]}}]}]\n",
                             ", annotations: {istio.io/dry-run: 'true'}") +
                      Policy("allow", "ns", "  rules: [{}]\n"));
  auto d = e->Check(Http("GET", "/x").in);
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->allowed) << "a dry-run DENY must not deny";
  ASSERT_TRUE(d->shadow.has_value());
  EXPECT_FALSE(d->shadow->allowed);
  EXPECT_EQ(d->shadow->policy, "ns/dry-deny");
  auto other = e->Check(Http("GET", "/y").in);
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE(other->shadow.has_value());
  EXPECT_TRUE(other->shadow->allowed);
  auto none = MustEngine(Policy("allow", "ns", "  rules: [{}]\n"));
  auto no_shadow = none->Check(Http().in);
  ASSERT_TRUE(no_shadow.ok());
  EXPECT_FALSE(no_shadow->shadow.has_value());
}

TEST(AuthzPolicyVersions, Istio15V1beta1ReplacesV1alpha1ForSelectedWorkloads) {
  auto e = MustEngine(R"(
apiVersion: rbac.istio.io/v1alpha1
kind: ClusterRbacConfig
metadata: {name: default}
spec: {mode: 'ON'}
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: all, namespace: ns}
spec:
  rules: [{services: ['*'], methods: [GET]}]
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRoleBinding
metadata: {name: all, namespace: ns}
spec:
  subjects: [{user: '*'}]
  roleRef: {kind: ServiceRole, name: all}
)" + Policy("beta", "ns",
            "  selector: {matchLabels: {app: beta}}\n  rules: [{to: [{operation: {methods: [POST]}}]}]\n"));
  RunCases(e, {
                  {"v1alpha1_for_unselected_get", Http("GET").Label("app", "alpha"), Allow("ns/all")},
                  {"v1alpha1_for_unselected_post", Http("POST").Label("app", "alpha"), Deny("")},
                  {"v1beta1_replaces_v1alpha1_get", Http("GET").Label("app", "beta"), Deny("")},
                  {"v1beta1_replaces_v1alpha1_post", Http("POST").Label("app", "beta"), Allow("ns/beta")},
              });
}

}  // namespace
}  // namespace meshid::authz::testing
