// v1alpha1 RBAC semantics (ClusterRbacConfig/RbacConfig, ServiceRole, ServiceRoleBinding), as
// Istio 1.4/1.5 generate them into Envoy's RBAC filter.
#include <gtest/gtest.h>

#include "tests/authz/policy_test_util.h"

namespace meshid::authz::testing {
namespace {

std::string OnFor(const std::string& mode_and_targets) {
  return R"(
apiVersion: rbac.istio.io/v1alpha1
kind: ClusterRbacConfig
metadata: {name: default}
spec:
)" + mode_and_targets;
}

// One role on b.ns allowing GET for user a, bound in ns.
const char* kRoleAndBinding = R"(
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: reader, namespace: ns}
spec:
  rules:
  - services: ["b.ns.svc.cluster.local"]
    methods: ["GET"]
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRoleBinding
metadata: {name: bind-reader, namespace: ns}
spec:
  subjects: [{user: "cluster.local/ns/a/sa/a"}]
  roleRef: {kind: ServiceRole, name: reader}
)";

TEST(RbacModes, Off) {
  auto e = MustEngine(OnFor("  mode: 'OFF'\n") + kRoleAndBinding);
  RunCases(e, {
                  {"off_allows_unbound_caller", Http().From("cluster.local/ns/z/sa/z"), Allow("")},
                  {"off_allows_plaintext_post", Http("POST"), Allow("")},
              });
}

TEST(RbacModes, NoConfigMeansOff) {
  auto e = MustEngine(std::string(kRoleAndBinding).substr(5));
  RunCases(e, {{"no_rbac_config_allows", Http("DELETE").From("cluster.local/ns/z/sa/z"), Allow("")}});
}

TEST(RbacModes, On) {
  auto e = MustEngine(OnFor("  mode: 'ON'\n") + kRoleAndBinding);
  RunCases(e, {
                  {"bound_user_get_allowed", Http().From("cluster.local/ns/a/sa/a"), Allow("ns/reader", "rules[0]")},
                  {"bound_user_post_denied", Http("POST").From("cluster.local/ns/a/sa/a"), Deny("")},
                  {"other_user_denied", Http().From("cluster.local/ns/a/sa/other"), Deny("")},
                  {"plaintext_denied", Http(), Deny("")},
                  {"other_service_default_deny", Http().To("c.ns.svc.cluster.local").From("cluster.local/ns/a/sa/a"),
                   Deny("")},
                  {"other_namespace_default_deny",
                   Http().To("b.other.svc.cluster.local").From("cluster.local/ns/a/sa/a"), Deny("")},
              });
}

TEST(RbacModes, OnWithInclusionNamespaces) {
  auto e = MustEngine(OnFor("  mode: ON_WITH_INCLUSION\n  inclusion: {namespaces: [ns]}\n") + kRoleAndBinding);
  RunCases(e, {
                  {"included_namespace_enforced", Http().From("cluster.local/ns/a/sa/z"), Deny("")},
                  {"included_namespace_bound_allowed", Http().From("cluster.local/ns/a/sa/a"), Allow("ns/reader")},
                  {"other_namespace_not_enforced",
                   Http().To("x.other.svc.cluster.local").From("cluster.local/ns/a/sa/z"), Allow("")},
              });
}

TEST(RbacModes, OnWithInclusionServicesExactMatchOnly) {
  auto e = MustEngine(OnFor("  mode: ON_WITH_INCLUSION\n  inclusion: {services: [b.ns.svc.cluster.local, 'c*']}\n") +
                      kRoleAndBinding);
  RunCases(e, {
                  {"included_service_enforced", Http().From("cluster.local/ns/a/sa/z"), Deny("")},
                  {"sibling_service_not_enforced", Http().To("d.ns.svc.cluster.local"), Allow("")},
                  {"target_list_has_no_wildcards", Http().To("c.ns.svc.cluster.local"), Allow("")},
                  {"short_name_is_not_the_fqdn", Http().To("b.ns.svc.cluster.local.other"), Allow("")},
              });
}

TEST(RbacModes, OnWithInclusionEmptyIncludesNothing) {
  auto e = MustEngine(OnFor("  mode: ON_WITH_INCLUSION\n  inclusion: {}\n") + kRoleAndBinding);
  RunCases(e, {{"empty_inclusion_enforces_nothing", Http("POST"), Allow("")}});
}

TEST(RbacModes, OnWithExclusion) {
  auto e = MustEngine(
      OnFor("  mode: ON_WITH_EXCLUSION\n  exclusion: {namespaces: [skip], services: [c.ns.svc.cluster.local]}\n") +
      kRoleAndBinding);
  RunCases(e, {
                  {"not_excluded_enforced", Http("POST").From("cluster.local/ns/a/sa/a"), Deny("")},
                  {"excluded_namespace_open", Http("POST").To("x.skip.svc.cluster.local"), Allow("")},
                  {"excluded_service_open", Http("POST").To("c.ns.svc.cluster.local"), Allow("")},
                  {"bound_allowed", Http().From("cluster.local/ns/a/sa/a"), Allow("ns/reader")},
              });
}

TEST(RbacModes, ClusterRbacConfigOverridesRbacConfig) {
  auto e = MustEngine(R"(
apiVersion: rbac.istio.io/v1alpha1
kind: RbacConfig
metadata: {name: default, namespace: istio-system}
spec: {mode: 'OFF'}
---
apiVersion: rbac.istio.io/v1alpha1
kind: ClusterRbacConfig
metadata: {name: default}
spec: {mode: 'ON'}
)" + std::string(kRoleAndBinding));
  RunCases(e, {{"cluster_config_wins", Http("POST"), Deny("")}});
}

TEST(RbacModes, SeedSpellingRBACConfigAccepted) {
  auto e = MustEngine(R"(
apiVersion: rbac.istio.io/v1alpha1
kind: RBACConfig
metadata: {name: default, namespace: istio-system}
spec: {mode: 'ON'}
)" + std::string(kRoleAndBinding));
  RunCases(e, {
                  {"rbacconfig_spelling_enables", Http("POST").From("cluster.local/ns/a/sa/a"), Deny("")},
                  {"rbacconfig_spelling_allows_bound", Http().From("cluster.local/ns/a/sa/a"), Allow("ns/reader")},
              });
}

TEST(RbacModes, EnumAsNumber) {
  auto e = MustEngine(OnFor("  mode: 1\n") + kRoleAndBinding);
  RunCases(e, {{"mode_1_is_on", Http("POST"), Deny("")}});
}

TEST(RbacNamespaces, RolesAndBindingsOnlyInServiceNamespace) {
  auto e = MustEngine(OnFor("  mode: 'ON'\n") + R"(
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: r, namespace: other}
spec:
  rules: [{services: ["*"]}]
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRoleBinding
metadata: {name: b, namespace: other}
spec:
  subjects: [{user: "*"}]
  roleRef: {kind: ServiceRole, name: r}
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: only-role, namespace: ns}
spec:
  rules: [{services: ["*"]}]
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRoleBinding
metadata: {name: cross, namespace: ns}
spec:
  subjects: [{user: "*"}]
  roleRef: {kind: ServiceRole, name: r}
)");
  RunCases(e,
           {
               {"role_in_other_namespace_does_not_apply", Http(), Deny("")},
               {"binding_cannot_reference_other_namespace_role", Http().From("cluster.local/ns/x/sa/y"), Deny("")},
               {"role_without_binding_grants_nothing", Http("GET", "/x"), Deny("")},
               {"other_namespace_open_through_its_own_role", Http().To("q.other.svc.cluster.local"), Allow("other/r")},
           });
}

TEST(RbacServices, Patterns) {
  auto e = MustEngine(OnFor("  mode: 'ON'\n") + R"(
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: prefix, namespace: ns}
spec:
  rules: [{services: ["pre*"], paths: ["/prefix"]}]
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: suffix, namespace: ns}
spec:
  rules: [{services: ["*.ns.svc.cluster.local"], paths: ["/suffix"]}]
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: all, namespace: ns}
spec:
  rules: [{services: ["*"], paths: ["/all"]}]
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: exact, namespace: ns}
spec:
  rules: [{services: ["b.ns.svc.cluster.local", "c.ns.svc.cluster.local"], paths: ["/exact"]}]
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: infix, namespace: ns}
spec:
  rules: [{services: ["b*ns.svc.cluster.local"], paths: ["/infix"]}]
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRoleBinding
metadata: {name: everyone, namespace: ns}
spec:
  subjects: [{user: "*"}]
  actions: [{services: ["none"], paths: ["/none"]}]
)" + [] {
    std::string out;
    for (const char* r : {"prefix", "suffix", "all", "exact", "infix"}) {
      out += absl::StrCat(
          "---\napiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRoleBinding\nmetadata: {name: b-", r,
          ", namespace: ns}\nspec:\n  subjects: [{user: \"*\"}]\n  roleRef: {kind: ServiceRole, name: ", r, "}\n");
    }
    return out;
  }());
  RunCases(e,
           {
               {"prefix_matches", Http("GET", "/prefix").To("pre-x.ns.svc.cluster.local"), Allow("ns/prefix")},
               {"prefix_not_matching", Http("GET", "/prefix").To("b.ns.svc.cluster.local"), Deny("")},
               {"suffix_matches", Http("GET", "/suffix"), Allow("ns/suffix")},
               {"suffix_not_matching", Http("GET", "/suffix").To("b.ns.svc.other").Ns("ns"), Deny("")},
               {"star_matches_all_in_namespace", Http("GET", "/all").To("zzz.ns.svc.cluster.local"), Allow("ns/all")},
               {"exact_first", Http("GET", "/exact"), Allow("ns/exact")},
               {"exact_second", Http("GET", "/exact").To("c.ns.svc.cluster.local"), Allow("ns/exact")},
               {"exact_not_other", Http("GET", "/exact").To("d.ns.svc.cluster.local"), Deny("")},
               {"infix_star_is_literal", Http("GET", "/infix"), Deny("")},
               {"inline_actions_binding", Http("GET", "/none").To("none.ns.svc.cluster.local"), Deny("")},
           });
}

// A role per field; subjects "*" so only the rule decides.
std::string RoleFor(const std::string& name, const std::string& rule) {
  return absl::StrCat(
      "---\napiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRole\nmetadata: {name: ", name,
      ", namespace: ns}\nspec:\n  rules:\n  - services: [\"b.ns.svc.cluster.local\"]\n", rule,
      "---\napiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRoleBinding\nmetadata: {name: bind-", name,
      ", namespace: ns}\nspec:\n  subjects: [{user: \"*\"}]\n  roleRef: {kind: ServiceRole, name: ", name, "}\n");
}

std::shared_ptr<const PolicyEngine> SingleRole(const std::string& rule) {
  return MustEngine(OnFor("  mode: 'ON'\n") + RoleFor("r", rule));
}

TEST(RbacRuleFields, Methods) {
  auto e = SingleRole("    methods: [GET, HEAD]\n");
  RunCases(e, {
                  {"get", Http("GET"), Allow("ns/r")},
                  {"head", Http("HEAD"), Allow("ns/r")},
                  {"post", Http("POST"), Deny("")},
                  {"methods_are_case_sensitive", Http("get"), Deny("")},
              });
  auto star = SingleRole("    methods: ['*']\n");
  RunCases(star, {{"star_method_any_http", Http("PATCH"), Allow("ns/r")}});
  auto notm = SingleRole("    not_methods: [DELETE]\n");
  RunCases(notm, {
                     {"not_methods_other", Http("GET"), Allow("ns/r")},
                     {"not_methods_listed", Http("DELETE"), Deny("")},
                 });
  auto camel = SingleRole("    notMethods: [DELETE]\n");
  RunCases(camel, {{"camel_case_json_name_accepted", Http("DELETE"), Deny("")}});
}

TEST(RbacRuleFields, Paths) {
  auto e = SingleRole("    paths: [/exact, '/prefix/*', '*.json']\n");
  RunCases(e, {
                  {"exact", Http("GET", "/exact"), Allow("ns/r")},
                  {"exact_trailing_slash_differs", Http("GET", "/exact/"), Deny("")},
                  {"prefix", Http("GET", "/prefix/a/b"), Allow("ns/r")},
                  {"prefix_needs_slash", Http("GET", "/prefix"), Deny("")},
                  {"suffix", Http("GET", "/x/y.json"), Allow("ns/r")},
                  {"istio_1_5_query_not_part_of_path", Http("GET", "/exact?a=b"), Allow("ns/r")},
                  {"istio_1_5_query_cannot_fake_suffix", Http("GET", "/x?y.json"), Deny("")},
                  {"other", Http("GET", "/other"), Deny("")},
              });
  auto star = SingleRole("    paths: ['*']\n");
  RunCases(star, {{"star_path_present", Http("GET", "/anything"), Allow("ns/r")}});
  auto notp = SingleRole("    not_paths: ['/admin*']\n");
  RunCases(notp, {
                     {"not_paths_outside", Http("GET", "/public"), Allow("ns/r")},
                     {"not_paths_inside", Http("GET", "/admin/users"), Deny("")},
                     {"not_paths_dot_dot_bypass_blocked", Http("GET", "/public/../admin/users"), Deny("")},
                     {"not_paths_encoded_dot_dot_bypass_blocked", Http("GET", "/public/%2E%2E/admin"), Deny("")},
                     {"not_paths_double_slash_bypass_blocked", Http("GET", "//admin"), Deny("")},
                 });
}

TEST(RbacRuleFields, PathNormalization) {
  auto e = SingleRole("    paths: ['/public/*']\n");
  RunCases(e, {
                  {"plain", Http("GET", "/public/a"), Allow("ns/r")},
                  {"dot_dot_escapes_prefix", Http("GET", "/public/../secret"), Deny("")},
                  {"encoded_dot_dot_escapes_prefix", Http("GET", "/public/%2e%2e/secret"), Deny("")},
                  {"mixed_encoding", Http("GET", "/public/.%2E/secret"), Deny("")},
                  {"dot_segment_removed", Http("GET", "/./public/./a"), Allow("ns/r")},
                  {"double_slash_merged", Http("GET", "//public//a"), Allow("ns/r")},
                  {"backslash_is_slash", Http("GET", "/public\\..\\secret"), Deny("")},
                  {"encoded_unreserved_decoded", Http("GET", "/%70ublic/a"), Allow("ns/r")},
                  {"encoded_slash_not_decoded", Http("GET", "/public%2Fa"), Deny("")},
                  {"relative_path_rejected", Http("GET", "public/a"), Error()},
                  {"nul_rejected", Http("GET", "/public/%00"), Error()},
              });
}

TEST(RbacRuleFields, HostsAndPorts) {
  auto e = SingleRole("    hosts: [b.example.com, '*.internal']\n");
  RunCases(e, {
                  {"host_exact", Http().Host("b.example.com"), Allow("ns/r")},
                  {"host_suffix", Http().Host("x.internal"), Allow("ns/r")},
                  {"host_from_header", Http().Header("host", "b.example.com"), Allow("ns/r")},
                  {"host_case_insensitive_cve_2021_39155", Http().Host("B.Example.COM"), Allow("ns/r")},
                  {"host_other", Http().Host("c.example.com"), Deny("")},
                  {"host_with_port_is_different", Http().Host("b.example.com:80"), Deny("")},
              });
  auto noth = SingleRole("    not_hosts: [admin.example.com]\n");
  RunCases(noth, {
                     {"not_hosts_listed", Http().Host("admin.example.com"), Deny("")},
                     {"not_hosts_case_insensitive", Http().Host("ADMIN.example.com"), Deny("")},
                     {"not_hosts_other", Http().Host("www.example.com"), Allow("ns/r")},
                 });
  auto ports = SingleRole("    ports: [8080, 9090]\n");
  RunCases(ports, {
                      {"port_listed", Http().Port(8080), Allow("ns/r")},
                      {"port_other", Http().Port(80), Deny("")},
                      {"port_applies_to_tcp", Tcp().Port(9090), Allow("ns/r")},
                  });
  auto notports = SingleRole("    not_ports: [15000]\n");
  RunCases(notports, {
                         {"not_ports_listed", Http().Port(15000), Deny("")},
                         {"not_ports_other", Http().Port(80), Allow("ns/r")},
                     });
}

TEST(RbacConstraints, EveryDocumentedKey) {
  auto e = MustEngine(
      OnFor("  mode: 'ON'\n") +
      RoleFor("dip",
              "    paths: [/dip]\n    constraints: [{key: destination.ip, values: ['10.0.0.0/24', '192.168.1.1']}]\n") +
      RoleFor("dport", "    paths: [/dport]\n    constraints: [{key: destination.port, values: ['8080']}]\n") +
      RoleFor("dlabel",
              "    paths: [/dlabel]\n    constraints: [{key: 'destination.labels[version]', values: [v1, v2]}]\n") +
      RoleFor("dlabelany",
              "    paths: [/dlabelany]\n    constraints: [{key: 'destination.labels[canary]', values: ['*']}]\n") +
      RoleFor("dname", "    paths: [/dname]\n    constraints: [{key: destination.name, values: [b]}]\n") +
      RoleFor("dns", "    paths: [/dns]\n    constraints: [{key: destination.namespace, values: [ns]}]\n") +
      RoleFor("duser", "    paths: [/duser]\n    constraints: [{key: destination.user, values: [b-sa]}]\n") +
      RoleFor(
          "hdr",
          "    paths: [/hdr]\n    constraints: [{key: 'request.headers[X-Version]', values: ['v1*', '*-beta']}]\n") +
      RoleFor("hdrany", "    paths: [/hdrany]\n    constraints: [{key: 'request.headers[x-token]', values: ['*']}]\n") +
      RoleFor("sni", "    paths: [/sni]\n    constraints: [{key: connection.sni, values: ['*.example.com']}]\n") +
      RoleFor("and",
              "    paths: [/and]\n    constraints:\n    - {key: destination.port, values: ['80']}\n    - {key: "
              "'request.headers[a]', values: ['1']}\n"));
  RunCases(e, {
                  {"destination_ip_cidr", Http("GET", "/dip").DstIp("10.0.0.7"), Allow("ns/dip")},
                  {"destination_ip_single", Http("GET", "/dip").DstIp("192.168.1.1"), Allow("ns/dip")},
                  {"destination_ip_outside", Http("GET", "/dip").DstIp("10.0.1.7"), Deny("")},
                  {"destination_ip_absent", Http("GET", "/dip"), Deny("")},
                  {"destination_port", Http("GET", "/dport").Port(8080), Allow("ns/dport")},
                  {"destination_port_other", Http("GET", "/dport").Port(80), Deny("")},
                  {"destination_labels_value", Http("GET", "/dlabel").Label("version", "v2"), Allow("ns/dlabel")},
                  {"destination_labels_other_value", Http("GET", "/dlabel").Label("version", "v3"), Deny("")},
                  {"destination_labels_missing", Http("GET", "/dlabel"), Deny("")},
                  {"destination_labels_star_requires_presence", Http("GET", "/dlabelany").Label("canary", "x"),
                   Allow("ns/dlabelany")},
                  {"destination_labels_star_absent", Http("GET", "/dlabelany"), Deny("")},
                  {"destination_name_short_service_name", Http("GET", "/dname"), Allow("ns/dname")},
                  {"destination_name_other", Http("GET", "/dname").To("bb.ns.svc.cluster.local"), Deny("")},
                  {"destination_namespace", Http("GET", "/dns"), Allow("ns/dns")},
                  {"destination_user_from_destination_principal",
                   Http("GET", "/duser").DstPrincipal("spiffe://cluster.local/ns/ns/sa/b-sa"), Allow("ns/duser")},
                  {"destination_user_other", Http("GET", "/duser").DstPrincipal("spiffe://cluster.local/ns/ns/sa/x"),
                   Deny("")},
                  {"header_prefix", Http("GET", "/hdr").Header("x-version", "v1.2"), Allow("ns/hdr")},
                  {"header_name_case_insensitive", Http("GET", "/hdr").Header("X-VERSION", "v1"), Allow("ns/hdr")},
                  {"header_suffix", Http("GET", "/hdr").Header("x-version", "v2-beta"), Allow("ns/hdr")},
                  {"header_mismatch", Http("GET", "/hdr").Header("x-version", "v2"), Deny("")},
                  {"header_star_present", Http("GET", "/hdrany").Header("x-token", ""), Allow("ns/hdrany")},
                  {"header_star_absent", Http("GET", "/hdrany"), Deny("")},
                  {"sni", Http("GET", "/sni").Sni("api.example.com"), Allow("ns/sni")},
                  {"sni_other", Http("GET", "/sni").Sni("api.example.org"), Deny("")},
                  {"keys_are_anded", Http("GET", "/and").Header("a", "1"), Allow("ns/and")},
                  {"keys_are_anded_one_fails", Http("GET", "/and").Header("a", "2"), Deny("")},
              });
}

std::string BindingFor(const std::string& name, const std::string& subject) {
  return absl::StrCat(
      "---\napiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRole\nmetadata: {name: ", name,
      ", namespace: ns}\nspec:\n  rules: [{services: [\"*\"], paths: [\"/", name,
      "\"]}]\n---\napiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRoleBinding\nmetadata: {name: bind-", name,
      ", namespace: ns}\nspec:\n  roleRef: {kind: ServiceRole, name: ", name, "}\n  subjects:\n", subject);
}

TEST(RbacSubjects, UserForms) {
  auto e = MustEngine(
      OnFor("  mode: 'ON'\n") + BindingFor("star", "  - user: '*'\n") + BindingFor("allusers", "  - user: allUsers\n") +
      BindingFor("authn", "  - user: allAuthenticatedUsers\n") +
      BindingFor("exact", "  - user: cluster.local/ns/a/sa/a\n") +
      BindingFor("scheme", "  - user: spiffe://cluster.local/ns/a/sa/a\n") +
      BindingFor("prefix", "  - user: 'cluster.local/ns/a/*'\n") + BindingFor("suffix", "  - user: '*/sa/a'\n") +
      BindingFor("two", "  - user: cluster.local/ns/a/sa/x\n  - user: cluster.local/ns/a/sa/y\n"));
  RunCases(e, {
                  {"star_user_allows_plaintext", Http("GET", "/star"), Allow("ns/star")},
                  {"star_user_allows_mtls", Http("GET", "/star").From("cluster.local/ns/q/sa/q"), Allow("ns/star")},
                  {"allUsers_allows_plaintext", Http("GET", "/allusers"), Allow("ns/allusers")},
                  {"allAuthenticatedUsers_denies_plaintext", Http("GET", "/authn"), Deny("")},
                  {"allAuthenticatedUsers_allows_mtls", Http("GET", "/authn").From("cluster.local/ns/q/sa/q"),
                   Allow("ns/authn")},
                  {"exact_user", Http("GET", "/exact").From("cluster.local/ns/a/sa/a"), Allow("ns/exact")},
                  {"exact_user_other", Http("GET", "/exact").From("cluster.local/ns/a/sa/b"), Deny("")},
                  {"exact_user_plaintext_has_no_identity", Http("GET", "/exact"), Deny("")},
                  {"user_with_spiffe_scheme_never_matches_http", Http("GET", "/scheme").From("cluster.local/ns/a/sa/a"),
                   Deny("")},
                  {"prefix_user", Http("GET", "/prefix").From("cluster.local/ns/a/sa/z"), Allow("ns/prefix")},
                  {"prefix_user_other_ns", Http("GET", "/prefix").From("cluster.local/ns/b/sa/z"), Deny("")},
                  {"suffix_user", Http("GET", "/suffix").From("other.td/ns/x/sa/a"), Allow("ns/suffix")},
                  {"subjects_are_ored_first", Http("GET", "/two").From("cluster.local/ns/a/sa/x"),
                   Allow("ns/two", "rules[0]; binding ns/bind-two subjects[0]")},
                  {"subjects_are_ored_second", Http("GET", "/two").From("cluster.local/ns/a/sa/y"),
                   Allow("ns/two", "rules[0]; binding ns/bind-two subjects[1]")},
              });
}

TEST(RbacSubjects, HiddenFirstClassFields) {
  auto e = MustEngine(OnFor("  mode: 'ON'\n") +
                      BindingFor("names", "  - names: [cluster.local/ns/a/sa/a, cluster.local/ns/a/sa/b]\n") +
                      BindingFor("notnames", "  - not_names: [cluster.local/ns/a/sa/evil]\n    user: '*'\n") +
                      BindingFor("ns", "  - namespaces: [a, 'team-*']\n") +
                      BindingFor("notns", "  - not_namespaces: [evil]\n    user: allAuthenticatedUsers\n") +
                      BindingFor("ips", "  - ips: ['10.1.0.0/16']\n") +
                      BindingFor("notips", "  - not_ips: ['10.9.9.9']\n    user: '*'\n"));
  RunCases(e, {
                  {"names", Http("GET", "/names").From("cluster.local/ns/a/sa/b"), Allow("ns/names")},
                  {"names_other", Http("GET", "/names").From("cluster.local/ns/a/sa/c"), Deny("")},
                  {"not_names_excluded", Http("GET", "/notnames").From("cluster.local/ns/a/sa/evil"), Deny("")},
                  {"not_names_plaintext_ok", Http("GET", "/notnames"), Allow("ns/notnames")},
                  {"namespaces", Http("GET", "/ns").From("cluster.local/ns/a/sa/x"), Allow("ns/ns")},
                  {"namespaces_prefix", Http("GET", "/ns").From("cluster.local/ns/team-red/sa/x"), Allow("ns/ns")},
                  {"namespaces_other", Http("GET", "/ns").From("cluster.local/ns/b/sa/x"), Deny("")},
                  {"namespaces_plaintext", Http("GET", "/ns"), Deny("")},
                  {"not_namespaces_excluded", Http("GET", "/notns").From("cluster.local/ns/evil/sa/x"), Deny("")},
                  {"not_namespaces_other", Http("GET", "/notns").From("cluster.local/ns/good/sa/x"), Allow("ns/notns")},
                  {"ips_cidr", Http("GET", "/ips").SrcIp("10.1.2.3"), Allow("ns/ips")},
                  {"ips_outside", Http("GET", "/ips").SrcIp("10.2.0.1"), Deny("")},
                  {"ips_absent", Http("GET", "/ips"), Deny("")},
                  {"not_ips_excluded", Http("GET", "/notips").SrcIp("10.9.9.9"), Deny("")},
                  {"not_ips_other", Http("GET", "/notips").SrcIp("10.9.9.8"), Allow("ns/notips")},
              });
}

TEST(RbacSubjects, Properties) {
  auto e = MustEngine(OnFor("  mode: 'ON'\n") + BindingFor("sip", "  - properties: {source.ip: 192.168.0.0/16}\n") +
                      BindingFor("sns", "  - properties: {source.namespace: a}\n") +
                      BindingFor("snsstar", "  - properties: {source.namespace: '*'}\n") +
                      BindingFor("sp", "  - properties: {source.principal: cluster.local/ns/a/sa/a}\n") +
                      BindingFor("spstar", "  - properties: {source.principal: '*'}\n") +
                      BindingFor("su", "  - properties: {source.user: cluster.local/ns/a/sa/a}\n") +
                      BindingFor("hdr", "  - properties: {'request.headers[x-user]': 'alice'}\n") +
                      BindingFor("and", "  - user: cluster.local/ns/a/sa/a\n    properties: {source.ip: 10.0.0.1}\n"));
  RunCases(e, {
                  {"source_ip", Http("GET", "/sip").SrcIp("192.168.3.4"), Allow("ns/sip")},
                  {"source_ip_other", Http("GET", "/sip").SrcIp("10.0.0.1"), Deny("")},
                  {"source_namespace", Http("GET", "/sns").From("cluster.local/ns/a/sa/z"), Allow("ns/sns")},
                  {"source_namespace_other", Http("GET", "/sns").From("cluster.local/ns/aa/sa/z"), Deny("")},
                  {"source_namespace_star_needs_identity", Http("GET", "/snsstar"), Deny("")},
                  {"source_namespace_star_identity", Http("GET", "/snsstar").From("cluster.local/ns/q/sa/z"),
                   Allow("ns/snsstar")},
                  {"source_principal", Http("GET", "/sp").From("cluster.local/ns/a/sa/a"), Allow("ns/sp")},
                  {"source_principal_plaintext", Http("GET", "/sp"), Deny("")},
                  {"source_principal_star_anyone", Http("GET", "/spstar"), Allow("ns/spstar")},
                  {"source_user_legacy_alias", Http("GET", "/su").From("cluster.local/ns/a/sa/a"), Allow("ns/su")},
                  {"request_header_property", Http("GET", "/hdr").Header("X-User", "alice"), Allow("ns/hdr")},
                  {"request_header_property_other", Http("GET", "/hdr").Header("x-user", "bob"), Deny("")},
                  {"fields_and_properties_anded", Http("GET", "/and").From("cluster.local/ns/a/sa/a").SrcIp("10.0.0.1"),
                   Allow("ns/and")},
                  {"fields_and_properties_anded_ip_wrong",
                   Http("GET", "/and").From("cluster.local/ns/a/sa/a").SrcIp("10.0.0.2"), Deny("")},
              });
}

TEST(RbacTcp, HttpOnlyRulesAndSubjectsAreDropped) {
  auto e = MustEngine(OnFor("  mode: 'ON'\n") + R"(
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: http-only, namespace: ns}
spec:
  rules: [{services: ["b.ns.svc.cluster.local"], methods: [GET]}]
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRoleBinding
metadata: {name: bind-http-only, namespace: ns}
spec:
  subjects: [{user: "*"}]
  roleRef: {kind: ServiceRole, name: http-only}
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: db, namespace: ns}
spec:
  rules:
  - services: ["db.ns.svc.cluster.local"]
    ports: [3306]
  - services: ["db.ns.svc.cluster.local"]
    paths: ["/never-on-tcp"]
    ports: [3307]
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRoleBinding
metadata: {name: bind-db, namespace: ns}
spec:
  subjects:
  - user: cluster.local/ns/app/sa/app
  - group: admins
  - user: cluster.local/ns/ops/sa/ops
    properties: {request.auth.principal: "https://issuer/ops"}
  - user: "*/sa/suffix"
  roleRef: {kind: ServiceRole, name: db}
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: hdr, namespace: ns}
spec:
  rules:
  - services: ["h.ns.svc.cluster.local"]
    constraints: [{key: 'request.headers[x]', values: ['1']}]
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRoleBinding
metadata: {name: bind-hdr, namespace: ns}
spec:
  subjects: [{user: "*"}]
  roleRef: {kind: ServiceRole, name: hdr}
)");
  RunCases(e, {
                  {"http_only_role_allows_http", Http("GET"), Allow("ns/http-only")},
                  {"http_only_role_denies_tcp_everyone", Tcp().From("cluster.local/ns/x/sa/x"),
                   WithReason(Deny(""), "dropped for TCP")},
                  {"tcp_rule_allows_principal",
                   Tcp().To("db.ns.svc.cluster.local", 3306).From("cluster.local/ns/app/sa/app"), Allow("ns/db")},
                  {"tcp_rule_other_port", Tcp().To("db.ns.svc.cluster.local", 3307).From("cluster.local/ns/app/sa/app"),
                   Deny("")},
                  {"tcp_group_subject_dropped",
                   Tcp().To("db.ns.svc.cluster.local", 3306).From("cluster.local/ns/x/sa/x"), Deny("")},
                  {"tcp_subject_with_request_property_dropped",
                   Tcp().To("db.ns.svc.cluster.local", 3306).From("cluster.local/ns/ops/sa/ops"), Deny("")},
                  {"istio_1_5_tcp_suffix_user_matches",
                   Tcp().To("db.ns.svc.cluster.local", 3306).From("td/ns/q/sa/suffix"), Allow("ns/db")},
                  {"tcp_plaintext_has_no_principal", Tcp().To("db.ns.svc.cluster.local", 3306), Deny("")},
                  {"tcp_header_constraint_rule_dropped", Tcp().To("h.ns.svc.cluster.local"), Deny("")},
                  {"http_header_constraint", Http().To("h.ns.svc.cluster.local").Header("x", "1"), Allow("ns/hdr")},
              });
}

TEST(RbacShadow, PermissiveBindingIsReportedNotEnforced) {
  auto e = MustEngine(OnFor("  mode: 'ON'\n") + std::string(kRoleAndBinding) + R"(
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: writer, namespace: ns}
spec:
  rules: [{services: ["b.ns.svc.cluster.local"], methods: [POST]}]
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRoleBinding
metadata: {name: try-writer, namespace: ns}
spec:
  mode: PERMISSIVE
  subjects: [{user: "cluster.local/ns/a/sa/a"}]
  roleRef: {kind: ServiceRole, name: writer}
)");
  auto post = e->Check(Http("POST").From("cluster.local/ns/a/sa/a").in);
  ASSERT_TRUE(post.ok());
  EXPECT_FALSE(post->allowed) << "a PERMISSIVE binding must never allow";
  ASSERT_TRUE(post->shadow.has_value());
  EXPECT_TRUE(post->shadow->allowed);
  EXPECT_EQ(post->shadow->policy, "ns/writer");
  auto get = e->Check(Http("GET").From("cluster.local/ns/a/sa/a").in);
  ASSERT_TRUE(get.ok());
  EXPECT_TRUE(get->allowed);
  ASSERT_TRUE(get->shadow.has_value());
  EXPECT_FALSE(get->shadow->allowed) << "the shadow set only holds permissive bindings";
}

TEST(RbacShadow, EnforcementModePermissiveEnforcesNothing) {
  auto e = MustEngine(OnFor("  mode: 'ON'\n  enforcement_mode: PERMISSIVE\n") + kRoleAndBinding);
  auto denied_in_shadow = e->Check(Http("POST").in);
  ASSERT_TRUE(denied_in_shadow.ok());
  EXPECT_TRUE(denied_in_shadow->allowed);
  ASSERT_TRUE(denied_in_shadow->shadow.has_value());
  EXPECT_FALSE(denied_in_shadow->shadow->allowed);
  auto allowed_in_shadow = e->Check(Http("GET").From("cluster.local/ns/a/sa/a").in);
  ASSERT_TRUE(allowed_in_shadow.ok());
  EXPECT_TRUE(allowed_in_shadow->allowed);
  EXPECT_TRUE(allowed_in_shadow->shadow->allowed);
  EXPECT_EQ(allowed_in_shadow->shadow->policy, "ns/reader");
}

TEST(RbacShadow, NoShadowWithoutPermissiveBindings) {
  auto e = MustEngine(OnFor("  mode: 'ON'\n") + kRoleAndBinding);
  auto d = e->Check(Http().in);
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(d->shadow.has_value());
}

}  // namespace
}  // namespace meshid::authz::testing
