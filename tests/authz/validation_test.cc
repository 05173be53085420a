// Validation: every error names file, line and field path, all errors are reported at once,
// and the messages say what is wrong (Istio's validation rules plus strict unknown-field checks).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/authz/policy_test_util.h"

namespace meshid::authz::testing {
namespace {

using ::testing::HasSubstr;

std::vector<std::string> Errors(const std::string& yaml) {
  rbac::Diagnostics diag;
  auto set = Parse(yaml, &diag);
  std::vector<std::string> out;
  for (const auto& d : diag.errors()) out.push_back(d.ToString());
  EXPECT_EQ(set.ok(), out.empty());
  return out;
}

struct ValidationCase {
  std::string name;
  std::string yaml;
  std::string expected;  // substring of the (single) error: "line: object: field: message"
};

TEST(Validation, OneErrorEach) {
  const std::vector<ValidationCase> cases = {
      {"cluster_rbac_config_must_be_named_default",
       "apiVersion: rbac.istio.io/v1alpha1\nkind: ClusterRbacConfig\nmetadata: {name: mine}\nspec: {mode: 'ON'}\n",
       "ClusterRbacConfig mine: metadata.name: ClusterRbacConfig has to be named \"default\""},
      {"inclusion_required_for_on_with_inclusion",
       "apiVersion: rbac.istio.io/v1alpha1\nkind: ClusterRbacConfig\nmetadata: {name: default}\nspec:\n  mode: "
       "ON_WITH_INCLUSION\n",
       "test.yaml:5: ClusterRbacConfig default: spec.inclusion: inclusion cannot be null"},
      {"exclusion_required_for_on_with_exclusion",
       "apiVersion: rbac.istio.io/v1alpha1\nkind: ClusterRbacConfig\nmetadata: {name: default}\nspec:\n  mode: "
       "ON_WITH_EXCLUSION\n",
       "spec.exclusion: exclusion cannot be null"},
      {"bad_mode",
       "apiVersion: rbac.istio.io/v1alpha1\nkind: ClusterRbacConfig\nmetadata: {name: default}\nspec: {mode: MAYBE}\n",
       "spec.mode: \"MAYBE\" is not one of OFF, ON, ON_WITH_INCLUSION, ON_WITH_EXCLUSION"},
      {"methods_and_not_methods",
       "apiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRole\nmetadata: {name: r, namespace: ns}\nspec:\n  rules:\n"
       "  - services: ['*']\n    methods: [GET]\n    not_methods: [POST]\n",
       "ServiceRole ns/r: spec.rules[0]: cannot have both methods and notMethods"},
      {"role_needs_rules",
       "apiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRole\nmetadata: {name: r, namespace: ns}\nspec: {}\n",
       "spec.rules: at least one rule must be specified"},
      {"rule_needs_services",
       "apiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRole\nmetadata: {name: r, namespace: ns}\nspec:\n  rules:\n  "
       "- methods: [GET]\n",
       "spec.rules[0].services: at least one service must be specified"},
      {"unknown_constraint_key",
       "apiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRole\nmetadata: {name: r, namespace: ns}\nspec:\n  rules:\n"
       "  - services: ['*']\n    constraints: [{key: destination.colour, values: [red]}]\n",
       "test.yaml:7: ServiceRole ns/r: spec.rules[0].constraints[0].key: unknown key \"destination.colour\""},
      {"constraint_key_needs_brackets",
       "apiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRole\nmetadata: {name: r, namespace: ns}\nspec:\n  rules:\n"
       "  - services: ['*']\n    constraints: [{key: request.headers, values: [x]}]\n",
       "must have the form name[key]"},
      {"constraint_needs_values",
       "apiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRole\nmetadata: {name: r, namespace: ns}\nspec:\n  rules:\n"
       "  - services: ['*']\n    constraints: [{key: destination.port}]\n",
       "spec.rules[0].constraints[0].values: at least one value must be specified"},
      {"destination_port_constraint_not_a_number",
       "apiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRole\nmetadata: {name: r, namespace: ns}\nspec:\n  rules:\n"
       "  - services: ['*']\n    constraints: [{key: destination.port, values: [http]}]\n",
       "\"http\" is not a port number"},
      {"destination_port_with_ports",
       "apiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRole\nmetadata: {name: r, namespace: ns}\nspec:\n  rules:\n"
       "  - services: ['*']\n    ports: [80]\n    constraints: [{key: destination.port, values: ['80']}]\n",
       "destination.port cannot be used together with ports or notPorts"},
      {"property_is_not_a_constraint",
       "apiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRole\nmetadata: {name: r, namespace: ns}\nspec:\n  rules:\n"
       "  - services: ['*']\n    constraints: [{key: source.ip, values: ['10.0.0.1']}]\n",
       "is a ServiceRoleBinding property, not a ServiceRole constraint"},
      {"port_out_of_range",
       "apiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRole\nmetadata: {name: r, namespace: ns}\nspec:\n  rules:\n"
       "  - services: ['*']\n    ports: [70000]\n",
       "spec.rules[0].ports[0]: 70000 is out of range [0, 65535]"},
      {"unknown_rule_field",
       "apiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRole\nmetadata: {name: r, namespace: ns}\nspec:\n  rules:\n"
       "  - services: ['*']\n    method: [GET]\n",
       "test.yaml:7: ServiceRole ns/r: spec.rules[0].method: unknown field"},
      {"unknown_property_key",
       "apiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRoleBinding\nmetadata: {name: b, namespace: ns}\nspec:\n"
       "  roleRef: {kind: ServiceRole, name: r}\n  subjects: [{properties: {source.colour: red}}]\n",
       "spec.subjects[0].properties[source.colour]: unknown key \"source.colour\""},
      {"constraint_is_not_a_property",
       "apiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRoleBinding\nmetadata: {name: b, namespace: ns}\nspec:\n"
       "  roleRef: {kind: ServiceRole, name: r}\n  subjects: [{properties: {destination.port: '80'}}]\n",
       "is a ServiceRole constraint, not a binding property"},
      {"empty_subject",
       "apiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRoleBinding\nmetadata: {name: b, namespace: ns}\nspec:\n"
       "  roleRef: {kind: ServiceRole, name: r}\n  subjects: [{}]\n",
       "spec.subjects[0]: empty subjects are not allowed"},
      {"property_duplicates_first_class_field",
       "apiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRoleBinding\nmetadata: {name: b, namespace: ns}\nspec:\n"
       "  roleRef: {kind: ServiceRole, name: r}\n  subjects: [{names: [a], properties: {source.principal: b}}]\n",
       "property \"source.principal\" duplicates the first-class field names"},
      {"star_in_names",
       "apiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRoleBinding\nmetadata: {name: b, namespace: ns}\nspec:\n"
       "  roleRef: {kind: ServiceRole, name: r}\n  subjects: [{names: ['*']}]\n",
       "spec.subjects[0].names[0]: \"*\" is not allowed here"},
      {"role_ref_kind",
       "apiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRoleBinding\nmetadata: {name: b, namespace: ns}\nspec:\n"
       "  roleRef: {kind: ClusterRole, name: r}\n  subjects: [{user: '*'}]\n",
       "spec.roleRef.kind: must be ServiceRole, not \"ClusterRole\""},
      {"binding_needs_exactly_one_role",
       "apiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRoleBinding\nmetadata: {name: b, namespace: ns}\nspec:\n"
       "  subjects: [{user: '*'}]\n",
       "spec: exactly one of roleRef, role or actions must be specified"},
      {"binding_needs_subjects",
       "apiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRoleBinding\nmetadata: {name: b, namespace: ns}\nspec:\n"
       "  roleRef: {kind: ServiceRole, name: r}\n",
       "spec.subjects: at least one subject must be specified"},
      {"bad_ip_in_binding",
       "apiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRoleBinding\nmetadata: {name: b, namespace: ns}\nspec:\n"
       "  roleRef: {kind: ServiceRole, name: r}\n  subjects: [{ips: ['10.0.0.300']}]\n",
       "\"10.0.0.300\" is not an IP address or CIDR block"},
      {"namespaced_policy_without_targets_named_default",
       "apiVersion: authentication.istio.io/v1alpha1\nkind: Policy\nmetadata: {name: strict, namespace: ns}\nspec:\n  "
       "peers: [{mtls: {}}]\n",
       "Policy ns/strict: metadata.name: a namespace-wide Policy (no targets) has to be named \"default\""},
      {"default_policy_cannot_have_targets",
       "apiVersion: authentication.istio.io/v1alpha1\nkind: Policy\nmetadata: {name: default, namespace: ns}\nspec:\n  "
       "targets: [{name: b}]\n",
       "the Policy named \"default\" is namespace-wide and cannot have targets"},
      {"mesh_policy_named_default",
       "apiVersion: authentication.istio.io/v1alpha1\nkind: MeshPolicy\nmetadata: {name: mesh}\nspec: {}\n",
       "MeshPolicy has to be named \"default\""},
      {"jwt_issuer_required",
       "apiVersion: authentication.istio.io/v1alpha1\nkind: Policy\nmetadata: {name: default, namespace: ns}\nspec:\n  "
       "origins: [{jwt: {jwksUri: 'https://x'}}]\n",
       "spec.origins[0].jwt.issuer: issuer must be set"},
      {"jwks_uri_scheme",
       "apiVersion: authentication.istio.io/v1alpha1\nkind: Policy\nmetadata: {name: default, namespace: ns}\nspec:\n  "
       "origins: [{jwt: {issuer: i, jwksUri: 'ftp://x'}}]\n",
       "spec.origins[0].jwt.jwksUri: must be an http://, https:// or file:// URI"},
      {"duplicate_issuer",
       "apiVersion: authentication.istio.io/v1alpha1\nkind: Policy\nmetadata: {name: default, namespace: ns}\nspec:\n"
       "  origins: [{jwt: {issuer: i}}, {jwt: {issuer: i}}]\n",
       "duplicate issuer \"i\""},
      {"trigger_rule_regex",
       "apiVersion: authentication.istio.io/v1alpha1\nkind: Policy\nmetadata: {name: default, namespace: ns}\nspec:\n"
       "  origins: [{jwt: {issuer: i, triggerRules: [{includedPaths: [{regex: '('}]}]}}]\n",
       "invalid regular expression"},
      {"peer_method_needs_one_kind",
       "apiVersion: authentication.istio.io/v1alpha1\nkind: Policy\nmetadata: {name: default, namespace: ns}\nspec:\n  "
       "peers: [{}]\n",
       "spec.peers[0]: exactly one of mtls or jwt must be set"},
      {"target_port_number_or_name",
       "apiVersion: authentication.istio.io/v1alpha1\nkind: Policy\nmetadata: {name: p, namespace: ns}\nspec:\n"
       "  targets: [{name: b, ports: [{number: 80, name: http}]}]\n",
       "spec.targets[0].ports[0]: exactly one of number or name must be set"},
      {"custom_needs_provider",
       "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: ns}\nspec: "
       "{action: CUSTOM}\n",
       "spec.provider.name: a CUSTOM policy must name its provider"},
      {"provider_only_for_custom",
       "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: ns}\nspec: "
       "{provider: {name: x}}\n",
       "spec.provider: provider is only allowed with action CUSTOM"},
      {"v1beta1_rejects_destination_labels",
       "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: ns}\nspec:\n"
       "  rules: [{when: [{key: 'destination.labels[app]', values: [x]}]}]\n",
       "spec.rules[0].when[0].values: key \"destination.labels[app]\" is only supported in v1alpha1"},
      {"v1beta1_unknown_when_key",
       "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: ns}\nspec:\n"
       "  rules: [{when: [{key: request.colour, values: [x]}]}]\n",
       "unknown key \"request.colour\""},
      {"v1beta1_experimental_key_not_supported",
       "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: ns}\nspec:\n"
       "  rules: [{when: [{key: 'experimental.envoy.filters.a.b[c]', values: [x]}]}]\n",
       "meshid does not have; it is not supported"},
      {"v1beta1_when_needs_values",
       "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: ns}\nspec:\n"
       "  rules: [{when: [{key: source.ip}]}]\n",
       "spec.rules[0].when[0]: at least one of values or notValues must be set"},
      {"v1beta1_bad_ip_block",
       "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: ns}\nspec:\n"
       "  rules: [{from: [{source: {ipBlocks: ['1.2.3.4/40']}}]}]\n",
       "spec.rules[0].from[0].source.ipBlocks[0]: \"1.2.3.4/40\": prefix length above 32"},
      {"v1beta1_bad_port",
       "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: ns}\nspec:\n"
       "  rules: [{to: [{operation: {ports: [http]}}]}]\n",
       "spec.rules[0].to[0].operation.ports[0]: \"http\" is not a port number"},
      {"v1beta1_misspelt_field",
       "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: ns}\nspec:\n"
       "  rules: [{from: [{source: {principal: [x]}}]}]\n",
       "test.yaml:5: AuthorizationPolicy ns/p: spec.rules[0].from[0].source.principal: unknown field"},
      {"v1beta1_source_required",
       "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: ns}\nspec:\n"
       "  rules: [{from: [{}]}]\n",
       "spec.rules[0].from[0].source: source must not be empty"},
      {"v1beta1_principals_must_be_a_list",
       "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: ns}\nspec:\n"
       "  rules: [{from: [{source: {principals: cluster.local/ns/a/sa/a}}]}]\n",
       "spec.rules[0].from[0].source.principals: must be a list of strings"},
      {"port_level_mtls_needs_selector",
       "apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata: {name: p, namespace: ns}\nspec:\n"
       "  portLevelMtls: {8080: {mode: STRICT}}\n",
       "spec.portLevelMtls: portLevelMtls requires a workload selector"},
      {"peer_authentication_mode",
       "apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata: {name: p, namespace: ns}\nspec:\n  "
       "mtls: {mode: STRICTER}\n",
       "spec.mtls.mode: \"STRICTER\" is not one of UNSET, DISABLE, PERMISSIVE, STRICT"},
      {"request_authentication_header_name",
       "apiVersion: security.istio.io/v1beta1\nkind: RequestAuthentication\nmetadata: {name: r, namespace: ns}\nspec:\n"
       "  jwtRules: [{issuer: i, fromHeaders: [{prefix: 'Bearer '}]}]\n",
       "spec.jwtRules[0].fromHeaders[0].name: header name must be set"},
      {"destination_rule_tls_mode",
       "apiVersion: networking.istio.io/v1alpha3\nkind: DestinationRule\nmetadata: {name: d, namespace: ns}\nspec:\n"
       "  host: b\n  trafficPolicy: {tls: {mode: MUTUALISH}}\n",
       "spec.trafficPolicy.tls.mode: \"MUTUALISH\" is not one of DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL"},
      {"wrong_api_version",
       "apiVersion: security.istio.io/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: ns}\nspec: "
       "{}\n",
       "apiVersion: \"security.istio.io/v1alpha1\" is not valid for kind AuthorizationPolicy"},
      {"name_required",
       "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {namespace: ns}\nspec: {}\n",
       "metadata.name: required"},
      {"unknown_top_level_field",
       "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspecs: {}\n",
       "test.yaml:4: AuthorizationPolicy: specs: unknown top-level field"},
      {"yaml_syntax_error", "apiVersion: v1\nkind: Service\nmetadata: {name: [\n", "test.yaml:4: YAML syntax error"},
      {"document_must_be_mapping", "- a\n- b\n", "test.yaml:1: a document must be a mapping"},
      {"duplicate_key",
       "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: ns}\nspec:\n"
       "  action: DENY\n  action: ALLOW\n",
       "spec.action: duplicate key"},
      {"missing_document_separator",
       "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: ns}\nspec: "
       "{}\n"
       "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: q, namespace: ns}\nspec: "
       "{}\n",
       "duplicate key (is a \"---\" document separator missing?)"},
      {"both_spellings",
       "apiVersion: rbac.istio.io/v1alpha1\nkind: ServiceRole\nmetadata: {name: r, namespace: ns}\nspec:\n  rules:\n"
       "  - services: ['*']\n    notMethods: [GET]\n    not_methods: [POST]\n",
       "both notMethods and not_methods are set"},
      {"duplicate_objects",
       "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: ns}\nspec: "
       "{}\n---\n"
       "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: ns}\nspec: "
       "{}\n",
       "test.yaml:6: AuthorizationPolicy ns/p: metadata.name: duplicate object (first defined at test.yaml:1)"},
      {"two_rbac_configs",
       "apiVersion: rbac.istio.io/v1alpha1\nkind: RbacConfig\nmetadata: {name: default, namespace: a}\nspec: {}\n---\n"
       "apiVersion: rbac.istio.io/v1alpha1\nkind: RbacConfig\nmetadata: {name: default, namespace: b}\nspec: {}\n",
       "more than one RbacConfig"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto errors = Errors(c.yaml);
    ASSERT_GE(errors.size(), 1u) << c.name << ": expected an error";
    bool found = false;
    for (const auto& e : errors) found = found || e.find(c.expected) != std::string::npos;
    EXPECT_TRUE(found) << c.name << ": none of the errors contains \"" << c.expected << "\":\n"
                       << ::testing::PrintToString(errors);
    if (c.name != "two_rbac_configs" && c.name != "duplicate_issuer" && c.name != "missing_document_separator") {
      EXPECT_EQ(errors.size(), 1u) << c.name << ": " << ::testing::PrintToString(errors);
    }
  }
}

TEST(Validation, AllErrorsReportedAtOnceAcrossDocuments) {
  const std::string yaml = R"(apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: r1, namespace: ns}
spec:
  rules:
  - services: ['*']
    methods: [GET]
    not_methods: [PUT]
    constraints: [{key: bogus.key, values: [x]}]
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: p, namespace: ns}
spec:
  rules:
  - to: [{operation: {methdos: [GET]}}]
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: fine, namespace: ns}
spec: {}
)";
  auto errors = Errors(yaml);
  ASSERT_EQ(errors.size(), 3u) << ::testing::PrintToString(errors);
  EXPECT_THAT(errors[0],
              HasSubstr("test.yaml:6: ServiceRole ns/r1: spec.rules[0]: cannot have both methods and notMethods"));
  EXPECT_THAT(errors[1],
              HasSubstr("test.yaml:9: ServiceRole ns/r1: spec.rules[0].constraints[0].key: unknown key \"bogus.key\""));
  EXPECT_THAT(
      errors[2],
      HasSubstr("test.yaml:16: AuthorizationPolicy ns/p: spec.rules[0].to[0].operation.methdos: unknown field"));
}

TEST(Validation, WarningsDoNotFailTheLoad) {
  rbac::Diagnostics diag;
  auto set = Parse(R"(apiVersion: apps/v1
kind: Deployment
metadata: {name: app}
spec: {replicas: 1}
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRoleBinding
metadata: {name: b, namespace: ns}
spec:
  roleRef: {kind: ServiceRole, name: missing}
  subjects: [{user: '*'}]
)",
                   &diag);
  ASSERT_TRUE(set.ok()) << set.status();
  auto warnings = diag.warnings();
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_THAT(warnings[0].ToString(), HasSubstr("kind Deployment (apps/v1) is not a policy kind; skipped"));
  EXPECT_THAT(warnings[1].ToString(), HasSubstr("refers to ServiceRole \"missing\", which does not exist"));
}

TEST(Validation, ListKindAndDefaultNamespace) {
  auto set = Parse(R"(apiVersion: v1
kind: List
items:
- apiVersion: security.istio.io/v1beta1
  kind: AuthorizationPolicy
  metadata: {name: a}
  spec: {}
- apiVersion: security.istio.io/v1beta1
  kind: AuthorizationPolicy
  metadata: {name: b, namespace: x}
  spec: {}
)");
  ASSERT_TRUE(set.ok()) << set.status();
  ASSERT_EQ(set->rbac.authorization_policies.size(), 2u);
  EXPECT_EQ(set->rbac.authorization_policies[0].ref.Id(), "default/a");
  EXPECT_EQ(set->rbac.authorization_policies[1].ref.Id(), "x/b");
}

TEST(Validation, AliasExpansionIsBounded) {
  // A "billion laughs" document must be refused quickly, not expanded.
  std::string yaml =
      "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: ns}\n"
      "x0: &a0 [src, src, src, src, src, src, src, src, src, src]\n";
  for (int i = 1; i < 8; ++i) {
    yaml += absl::StrCat("x", i, ": &a", i, " [*a", i - 1, ", *a", i - 1, ", *a", i - 1, ", *a", i - 1, ", *a", i - 1,
                         ", *a", i - 1, ", *a", i - 1, ", *a", i - 1, ", *a", i - 1, ", *a", i - 1, "]\n");
  }
  yaml += "spec:\n  rules:\n  - from:\n    - source: {principals: *a7}\n";
  auto errors = Errors(yaml);
  EXPECT_FALSE(errors.empty());
}

}  // namespace
}  // namespace meshid::authz::testing
