#include "rbac/policies.h"

#include <algorithm>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "rbac/match.h"
#include "rbac/predicate.h"

namespace meshid::rbac {

ObjectRef ObjectRef::From(const SourceDocument& doc) {
  ObjectRef r;
  r.kind = doc.kind;
  r.namespace_ = (doc.kind == "ClusterRbacConfig" || doc.kind == "MeshPolicy") ? "" : doc.meta.namespace_;
  r.name = doc.meta.name;
  r.file = doc.file;
  r.line = doc.line;
  r.order = doc.order;
  r.created = doc.meta.creation_timestamp;
  return r;
}

bool ObjectRef::Older(const ObjectRef& a, const ObjectRef& b) {
  if (a.created && b.created && *a.created != *b.created) return *a.created < *b.created;
  if (a.created.has_value() != b.created.has_value()) return a.created.has_value();
  return a.order < b.order;
}

const char* RbacModeName(RbacMode mode) {
  switch (mode) {
    case RbacMode::kOff:
      return "OFF";
    case RbacMode::kOn:
      return "ON";
    case RbacMode::kOnWithInclusion:
      return "ON_WITH_INCLUSION";
    case RbacMode::kOnWithExclusion:
      return "ON_WITH_EXCLUSION";
  }
  return "?";
}

const char* AuthzActionName(AuthzAction a) {
  switch (a) {
    case AuthzAction::kAllow:
      return "ALLOW";
    case AuthzAction::kDeny:
      return "DENY";
    case AuthzAction::kAudit:
      return "AUDIT";
    case AuthzAction::kCustom:
      return "CUSTOM";
  }
  return "?";
}

namespace {

const std::vector<std::string> kRbacVersions = {"rbac.istio.io/v1alpha1"};
const std::vector<std::string> kSecurityVersions = {"security.istio.io/v1beta1", "security.istio.io/v1"};

void CheckNotEmptyEntries(ReadContext& ctx, const YAML::Node& at, const std::string& path,
                          const std::vector<std::string>& values) {
  for (size_t i = 0; i < values.size(); ++i)
    if (values[i].empty()) ctx.Error(at, FieldReader::Index(path, i), "must not be empty");
}

// ---- v1alpha1 ----

std::optional<RbacTarget> ReadTarget(FieldReader& parent, absl::string_view key) {
  if (!parent.Has(key)) {
    // `inclusion: {}` is "present but empty", which Istio distinguishes from absent.
    YAML::Node n = parent.Node(key);
    if (n.IsDefined() && n.IsMap()) return RbacTarget{};
    return std::nullopt;
  }
  FieldReader r(parent.ctx(), parent.Node(key), parent.PathOf(key));
  RbacTarget t;
  t.services = r.StringList("services");
  t.namespaces = r.StringList("namespaces");
  return t;
}

bool ValidConstraintKey(ReadContext& ctx, const YAML::Node& at, const std::string& path, const Constraint& c) {
  auto p = ConditionPredicate(c.key, c.values, false, /*v1alpha1=*/true);
  if (!p.ok()) {
    ctx.Error(at, path, std::string(p.status().message()));
    return false;
  }
  if (p->attr == Attr::kSourcePrincipal || p->attr == Attr::kSourceNamespace || p->attr == Attr::kSourceIp ||
      p->attr == Attr::kRequestPrincipal || p->attr == Attr::kAudience || p->attr == Attr::kPresenter ||
      p->attr == Attr::kClaim) {
    ctx.Error(at, path, absl::StrCat("\"", c.key, "\" is a ServiceRoleBinding property, not a ServiceRole constraint"));
    return false;
  }
  return true;
}

std::optional<AccessRule> ReadAccessRule(ReadContext& ctx, const YAML::Node& node, const std::string& path) {
  FieldReader r(ctx, node, path);
  AccessRule rule;
  rule.services = r.StringList("services");
  rule.hosts = r.StringList("hosts");
  rule.not_hosts = r.StringList("notHosts");
  rule.paths = r.StringList("paths");
  rule.not_paths = r.StringList("notPaths");
  rule.methods = r.StringList("methods");
  rule.not_methods = r.StringList("notMethods");
  rule.ports = r.IntList("ports", 0, 65535);
  rule.not_ports = r.IntList("notPorts", 0, 65535);
  bool ok = true;
  if (rule.services.empty()) {
    ctx.Error(node, r.PathOf("services"), "at least one service must be specified");
    ok = false;
  }
  if (!rule.methods.empty() && !rule.not_methods.empty()) {
    ctx.Error(node, path, "cannot have both methods and notMethods");
    ok = false;
  }
  if (!rule.ports.empty() && !rule.not_ports.empty()) {
    ctx.Error(node, path, "cannot have both ports and notPorts");
    ok = false;
  }
  size_t i = 0;
  for (const auto& cn : r.List("constraints")) {
    const std::string cpath = FieldReader::Index(r.PathOf("constraints"), i++);
    FieldReader cr(ctx, cn, cpath);
    Constraint c;
    c.key = cr.String("key").value_or("");
    c.values = cr.StringList("values");
    if (c.key.empty()) {
      ctx.Error(cn, cr.PathOf("key"), "key cannot be empty");
      ok = false;
      continue;
    }
    if (c.values.empty()) {
      ctx.Error(cn, cr.PathOf("values"), "at least one value must be specified");
      ok = false;
      continue;
    }
    if (!ValidConstraintKey(ctx, cn, cr.PathOf("key"), c)) {
      ok = false;
      continue;
    }
    if (c.key == "destination.port" && (!rule.ports.empty() || !rule.not_ports.empty())) {
      ctx.Error(cn, cr.PathOf("key"), "destination.port cannot be used together with ports or notPorts");
      ok = false;
    }
    rule.constraints.push_back(std::move(c));
  }
  if (!r.ok()) ok = false;
  if (!ok) return std::nullopt;
  return rule;
}

std::optional<std::vector<AccessRule>> ReadAccessRules(ReadContext& ctx, FieldReader& r, absl::string_view key,
                                                       bool required) {
  std::vector<AccessRule> rules;
  bool ok = true;
  size_t i = 0;
  for (const auto& rn : r.List(key)) {
    auto rule = ReadAccessRule(ctx, rn, FieldReader::Index(r.PathOf(key), i++));
    if (rule) {
      rules.push_back(std::move(*rule));
    } else {
      ok = false;
    }
  }
  if (required && i == 0) {
    ctx.Error(r.node(), r.PathOf(key), "at least one rule must be specified");
    ok = false;
  }
  if (!ok) return std::nullopt;
  return rules;
}

// The first-class Subject field each property key duplicates (Istio rejects setting both).
const std::map<std::string, std::string>& PropertyShadows() {
  static const auto* m = new std::map<std::string, std::string>{
      {"source.principal", "names"},
      {"request.auth.claims[groups]", "groups"},
      {"source.namespace", "namespaces"},
      {"source.ip", "ips"},
  };
  return *m;
}

std::optional<Subject> ReadSubject(ReadContext& ctx, const YAML::Node& node, const std::string& path) {
  FieldReader r(ctx, node, path);
  Subject s;
  s.user = r.String("user").value_or("");
  s.names = r.StringList("names");
  s.not_names = r.StringList("notNames");
  s.group = r.String("group").value_or("");
  s.groups = r.StringList("groups");
  s.not_groups = r.StringList("notGroups");
  s.namespaces = r.StringList("namespaces");
  s.not_namespaces = r.StringList("notNamespaces");
  s.ips = r.StringList("ips");
  s.not_ips = r.StringList("notIps");
  s.properties = r.StringMap("properties");
  bool ok = r.ok();
  const bool first_class_empty = s.user.empty() && s.names.empty() && s.not_names.empty() && s.group.empty() &&
                                 s.groups.empty() && s.not_groups.empty() && s.namespaces.empty() &&
                                 s.not_namespaces.empty() && s.ips.empty() && s.not_ips.empty();
  if (first_class_empty && s.properties.empty()) {
    ctx.Error(node, path, "empty subjects are not allowed (set user, group, properties or another field)");
    ok = false;
  }
  for (const char* f : {"names", "notNames"}) {
    const auto& list = std::string(f) == "names" ? s.names : s.not_names;
    for (size_t i = 0; i < list.size(); ++i) {
      if (list[i] == "*") {
        ctx.Error(node, FieldReader::Index(r.PathOf(f), i), "\"*\" is not allowed here (use user: \"*\")");
        ok = false;
      }
    }
  }
  for (const auto* list : {&s.ips, &s.not_ips}) {
    for (const auto& ip : *list) {
      if (auto c = Cidr::Parse(ip); !c.ok()) {
        ctx.Error(node, r.PathOf(list == &s.ips ? "ips" : "notIps"), std::string(c.status().message()));
        ok = false;
      }
    }
  }
  for (const auto& [key, value] : s.properties) {
    const std::string ppath = absl::StrCat(r.PathOf("properties"), "[", key, "]");
    if (key.empty() || value.empty()) {
      ctx.Error(node, ppath, "property keys and values must not be empty");
      ok = false;
      continue;
    }
    auto p = ConditionPredicate(key, {value}, false, /*v1alpha1=*/true);
    if (!p.ok()) {
      ctx.Error(node, ppath, std::string(p.status().message()));
      ok = false;
      continue;
    }
    if (p->attr == Attr::kDestinationIp || p->attr == Attr::kDestinationPort || p->attr == Attr::kDestinationName ||
        p->attr == Attr::kDestinationNamespace || p->attr == Attr::kDestinationUser ||
        p->attr == Attr::kDestinationLabel || p->attr == Attr::kSni) {
      ctx.Error(node, ppath, absl::StrCat("\"", key, "\" is a ServiceRole constraint, not a binding property"));
      ok = false;
      continue;
    }
    auto shadow = PropertyShadows().find(key);
    if (shadow != PropertyShadows().end()) {
      const std::string& field = shadow->second;
      const bool set = (field == "names" && !s.names.empty()) || (field == "groups" && !s.groups.empty()) ||
                       (field == "namespaces" && !s.namespaces.empty()) || (field == "ips" && !s.ips.empty());
      if (set) {
        ctx.Error(node, ppath, absl::StrCat("property \"", key, "\" duplicates the first-class field ", field));
        ok = false;
      }
    }
  }
  if (!ok) return std::nullopt;
  return s;
}

}  // namespace

// ---- Service ----

const ServicePort* Service::PortForWorkloadPort(uint32_t workload_port) const {
  for (const auto& p : ports) {
    const uint32_t target = p.target_port != 0 ? p.target_port : (p.target_port_name.empty() ? p.port : 0);
    if (target == workload_port) return &p;
  }
  return nullptr;
}

std::optional<Service> ParseService(const SourceDocument& doc, const std::string& domain, Diagnostics& diag) {
  if (!CheckApiVersion(doc, {"v1"}, diag)) return std::nullopt;
  const size_t before = diag.error_count();
  ReadContext ctx(doc, diag, 1 << 20);
  Service svc;
  svc.ref = ObjectRef::From(doc);
  svc.hostname = absl::StrCat(doc.meta.name, ".", doc.meta.namespace_, ".svc.", domain);
  FieldReader spec(ctx, doc.spec, "spec");
  spec.AllowUnknownKeys();  // clusterIP, type, sessionAffinity, ... are not policy inputs
  svc.selector = spec.StringMap("selector");
  size_t i = 0;
  std::set<std::string> names;
  for (const auto& pn : spec.List("ports")) {
    const std::string path = FieldReader::Index("spec.ports", i++);
    FieldReader pr(ctx, pn, path);
    pr.AllowUnknownKeys();  // nodePort, appProtocol
    ServicePort port;
    port.name = pr.String("name").value_or("");
    port.protocol = pr.String("protocol").value_or("TCP");
    auto number = pr.Int("port", 1, 65535);
    if (!number) {
      if (!pr.Has("port")) ctx.Error(pn, pr.PathOf("port"), "required");
      continue;
    }
    port.port = static_cast<uint32_t>(*number);
    if (auto target = pr.String("targetPort")) {
      uint32_t t = 0;
      if (absl::SimpleAtoi(*target, &t)) {
        if (t == 0 || t > 65535) ctx.Error(pn, pr.PathOf("targetPort"), "must be 1-65535 or a port name");
        port.target_port = t;
      } else {
        port.target_port_name = *target;
      }
    }
    if (!port.name.empty() && !names.insert(port.name).second) {
      ctx.Error(pn, pr.PathOf("name"), absl::StrCat("duplicate port name \"", port.name, "\""));
    }
    svc.ports.push_back(port);
  }
  if (!IsDns1123Label(doc.meta.name)) ctx.Error(doc.spec, "metadata.name", "must be a DNS-1123 label");
  spec.Finish();
  if (diag.error_count() != before) return std::nullopt;
  return svc;
}

// ---- v1alpha1 ----

std::optional<RbacConfig> ParseRbacConfig(const SourceDocument& doc, Diagnostics& diag) {
  if (!CheckApiVersion(doc, kRbacVersions, diag)) return std::nullopt;
  const size_t before = diag.error_count();
  ReadContext ctx(doc, diag, 1 << 20);
  RbacConfig c;
  c.ref = ObjectRef::From(doc);
  if (c.ref.kind == "RBACConfig") c.ref.kind = "RbacConfig";
  FieldReader spec(ctx, doc.spec, "spec");
  if (auto m = ReadEnum(spec, "mode", {"OFF", "ON", "ON_WITH_INCLUSION", "ON_WITH_EXCLUSION"})) {
    c.mode = static_cast<RbacMode>(*m);
  }
  c.inclusion = ReadTarget(spec, "inclusion");
  c.exclusion = ReadTarget(spec, "exclusion");
  if (auto e = ReadEnum(spec, "enforcementMode", {"ENFORCED", "PERMISSIVE"})) c.enforcement_permissive = *e == 1;
  if (doc.meta.name != "default") {
    ctx.Error(doc.spec, "metadata.name",
              absl::StrCat(c.ref.kind, " has to be named \"default\", not \"", doc.meta.name, "\""));
  }
  if (c.mode == RbacMode::kOnWithInclusion && !c.inclusion) {
    ctx.Error(spec.node(), "spec.inclusion", "inclusion cannot be null (use 'inclusion: {}' for none)");
  }
  if (c.mode == RbacMode::kOnWithExclusion && !c.exclusion) {
    ctx.Error(spec.node(), "spec.exclusion", "exclusion cannot be null (use 'exclusion: {}' for none)");
  }
  spec.Finish();
  if (diag.error_count() != before) return std::nullopt;
  return c;
}

std::optional<ServiceRole> ParseServiceRole(const SourceDocument& doc, Diagnostics& diag) {
  if (!CheckApiVersion(doc, kRbacVersions, diag)) return std::nullopt;
  const size_t before = diag.error_count();
  ReadContext ctx(doc, diag, 1 << 20);
  ServiceRole role;
  role.ref = ObjectRef::From(doc);
  FieldReader spec(ctx, doc.spec, "spec");
  auto rules = ReadAccessRules(ctx, spec, "rules", /*required=*/true);
  if (rules) role.rules = std::move(*rules);
  spec.Finish();
  if (diag.error_count() != before) return std::nullopt;
  return role;
}

std::optional<ServiceRoleBinding> ParseServiceRoleBinding(const SourceDocument& doc, Diagnostics& diag) {
  if (!CheckApiVersion(doc, kRbacVersions, diag)) return std::nullopt;
  const size_t before = diag.error_count();
  ReadContext ctx(doc, diag, 1 << 20);
  ServiceRoleBinding b;
  b.ref = ObjectRef::From(doc);
  FieldReader spec(ctx, doc.spec, "spec");
  size_t i = 0;
  for (const auto& sn : spec.List("subjects")) {
    auto s = ReadSubject(ctx, sn, FieldReader::Index("spec.subjects", i++));
    if (s) b.subjects.push_back(std::move(*s));
  }
  if (i == 0) ctx.Error(spec.node(), "spec.subjects", "at least one subject must be specified");
  int refs = 0;
  if (spec.Has("roleRef")) {
    ++refs;
    FieldReader rr(ctx, spec.Node("roleRef"), "spec.roleRef");
    const std::string kind = rr.String("kind").value_or("");
    b.role = rr.String("name").value_or("");
    if (kind != "ServiceRole") {
      ctx.Error(rr.node(), "spec.roleRef.kind", absl::StrCat("must be ServiceRole, not \"", kind, "\""));
    }
    if (b.role.empty()) ctx.Error(rr.node(), "spec.roleRef.name", "name cannot be empty");
  }
  if (auto role = spec.String("role")) {
    ++refs;
    b.role = absl::StartsWith(*role, "/") ? role->substr(1) : *role;
    if (b.role.empty()) ctx.Error(spec.Node("role"), "spec.role", "name cannot be empty");
  }
  if (spec.Has("actions")) {
    ++refs;
    b.actions = ReadAccessRules(ctx, spec, "actions", /*required=*/true);
  }
  if (refs != 1) {
    ctx.Error(spec.node(), "spec", "exactly one of roleRef, role or actions must be specified");
  }
  if (auto m = ReadEnum(spec, "mode", {"ENFORCED", "PERMISSIVE"})) b.permissive = *m == 1;
  spec.Finish();
  if (diag.error_count() != before) return std::nullopt;
  return b;
}

// ---- v1beta1 ----

namespace {

void CheckCidrs(ReadContext& ctx, const YAML::Node& at, const std::string& path, const std::vector<std::string>& v) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (auto c = Cidr::Parse(v[i]); !c.ok())
      ctx.Error(at, FieldReader::Index(path, i), std::string(c.status().message()));
  }
}

void CheckPorts(ReadContext& ctx, const YAML::Node& at, const std::string& path, const std::vector<std::string>& v) {
  for (size_t i = 0; i < v.size(); ++i) {
    uint32_t port = 0;
    if (!absl::SimpleAtoi(v[i], &port) || port > 65535) {
      ctx.Error(at, FieldReader::Index(path, i), absl::StrCat("\"", v[i], "\" is not a port number (0-65535)"));
    }
  }
}

AuthzSource ReadSource(ReadContext& ctx, const YAML::Node& node, const std::string& path) {
  FieldReader r(ctx, node, path);
  AuthzSource s;
  s.principals = r.StringList("principals");
  s.not_principals = r.StringList("notPrincipals");
  s.request_principals = r.StringList("requestPrincipals");
  s.not_request_principals = r.StringList("notRequestPrincipals");
  s.namespaces = r.StringList("namespaces");
  s.not_namespaces = r.StringList("notNamespaces");
  s.ip_blocks = r.StringList("ipBlocks");
  s.not_ip_blocks = r.StringList("notIpBlocks");
  s.remote_ip_blocks = r.StringList("remoteIpBlocks");
  s.not_remote_ip_blocks = r.StringList("notRemoteIpBlocks");
  const std::pair<const char*, const std::vector<std::string>*> lists[] = {
      {"principals", &s.principals},
      {"notPrincipals", &s.not_principals},
      {"requestPrincipals", &s.request_principals},
      {"notRequestPrincipals", &s.not_request_principals},
      {"namespaces", &s.namespaces},
      {"notNamespaces", &s.not_namespaces}};
  for (const auto& [f, v] : lists) CheckNotEmptyEntries(ctx, node, r.PathOf(f), *v);
  CheckCidrs(ctx, node, r.PathOf("ipBlocks"), s.ip_blocks);
  CheckCidrs(ctx, node, r.PathOf("notIpBlocks"), s.not_ip_blocks);
  CheckCidrs(ctx, node, r.PathOf("remoteIpBlocks"), s.remote_ip_blocks);
  CheckCidrs(ctx, node, r.PathOf("notRemoteIpBlocks"), s.not_remote_ip_blocks);
  return s;
}

AuthzOperation ReadOperation(ReadContext& ctx, const YAML::Node& node, const std::string& path) {
  FieldReader r(ctx, node, path);
  AuthzOperation o;
  o.hosts = r.StringList("hosts");
  o.not_hosts = r.StringList("notHosts");
  o.ports = r.StringList("ports");
  o.not_ports = r.StringList("notPorts");
  o.methods = r.StringList("methods");
  o.not_methods = r.StringList("notMethods");
  o.paths = r.StringList("paths");
  o.not_paths = r.StringList("notPaths");
  const std::pair<const char*, const std::vector<std::string>*> lists[] = {
      {"hosts", &o.hosts}, {"notHosts", &o.not_hosts}, {"methods", &o.methods}, {"notMethods", &o.not_methods},
      {"paths", &o.paths}, {"notPaths", &o.not_paths}};
  for (const auto& [f, v] : lists) CheckNotEmptyEntries(ctx, node, r.PathOf(f), *v);
  CheckPorts(ctx, node, r.PathOf("ports"), o.ports);
  CheckPorts(ctx, node, r.PathOf("notPorts"), o.not_ports);
  return o;
}

}  // namespace

std::optional<AuthorizationPolicy> ParseAuthorizationPolicy(const SourceDocument& doc, Diagnostics& diag) {
  if (!CheckApiVersion(doc, kSecurityVersions, diag)) return std::nullopt;
  const size_t before = diag.error_count();
  ReadContext ctx(doc, diag, 1 << 20);
  AuthorizationPolicy p;
  p.ref = ObjectRef::From(doc);
  auto dry = doc.meta.annotations.find("istio.io/dry-run");
  if (dry != doc.meta.annotations.end()) {
    if (dry->second == "true") {
      p.dry_run = true;
    } else if (dry->second != "false") {
      ctx.ErrorAtLine(doc.line, "metadata.annotations[istio.io/dry-run]", "must be \"true\" or \"false\"");
    }
  }
  FieldReader spec(ctx, doc.spec, "spec");
  p.selector = ReadWorkloadSelector(ctx, spec);
  if (auto a = ReadEnum(spec, "action", {"ALLOW", "DENY", "AUDIT", "CUSTOM"})) p.action = static_cast<AuthzAction>(*a);
  if (spec.Has("provider")) {
    FieldReader pr(ctx, spec.Node("provider"), "spec.provider");
    p.provider = pr.String("name").value_or("");
  }
  if (p.action == AuthzAction::kCustom && p.provider.empty()) {
    ctx.Error(spec.node(), "spec.provider.name", "a CUSTOM policy must name its provider");
  }
  if (p.action != AuthzAction::kCustom && spec.Has("provider")) {
    ctx.Error(spec.Node("provider"), "spec.provider", "provider is only allowed with action CUSTOM");
  }
  size_t ri = 0;
  for (const auto& rn : spec.List("rules")) {
    const std::string rpath = FieldReader::Index("spec.rules", ri++);
    FieldReader rr(ctx, rn, rpath);
    AuthzRule rule;
    size_t i = 0;
    for (const auto& fn : rr.List("from")) {
      const std::string fpath = FieldReader::Index(rr.PathOf("from"), i++);
      FieldReader fr(ctx, fn, fpath);
      if (!fr.Has("source")) {
        ctx.Error(fn, fr.PathOf("source"), "source must not be empty");
        continue;
      }
      rule.from.push_back(ReadSource(ctx, fr.Node("source"), fr.PathOf("source")));
    }
    i = 0;
    for (const auto& tn : rr.List("to")) {
      const std::string tpath = FieldReader::Index(rr.PathOf("to"), i++);
      FieldReader tr(ctx, tn, tpath);
      if (!tr.Has("operation")) {
        ctx.Error(tn, tr.PathOf("operation"), "operation must not be empty");
        continue;
      }
      rule.to.push_back(ReadOperation(ctx, tr.Node("operation"), tr.PathOf("operation")));
    }
    i = 0;
    for (const auto& wn : rr.List("when")) {
      const std::string wpath = FieldReader::Index(rr.PathOf("when"), i++);
      FieldReader wr(ctx, wn, wpath);
      AuthzCondition c;
      c.key = wr.String("key").value_or("");
      c.values = wr.StringList("values");
      c.not_values = wr.StringList("notValues");
      if (c.key.empty()) {
        ctx.Error(wn, wr.PathOf("key"), "key cannot be empty");
        continue;
      }
      if (c.values.empty() && c.not_values.empty()) {
        ctx.Error(wn, wpath, "at least one of values or notValues must be set");
        continue;
      }
      bool ok = true;
      for (const auto* list : {&c.values, &c.not_values}) {
        if (list->empty()) continue;
        auto pred = ConditionPredicate(c.key, *list, false, /*v1alpha1=*/false);
        if (!pred.ok()) {
          ctx.Error(wn, list == &c.values ? wr.PathOf("values") : wr.PathOf("notValues"),
                    std::string(pred.status().message()));
          ok = false;
          break;
        }
      }
      if (ok) rule.when.push_back(std::move(c));
    }
    p.rules.push_back(std::move(rule));
  }
  spec.Finish();
  if (diag.error_count() != before) return std::nullopt;
  return p;
}

// ---- dispatch and cross-object checks ----

bool AddRbacDocument(const SourceDocument& doc, const std::string& domain, RbacPolicies& out, Diagnostics& diag) {
  const std::string& k = doc.kind;
  if (k == "ClusterRbacConfig" || k == "RbacConfig" || k == "RBACConfig") {
    if (auto c = ParseRbacConfig(doc, diag)) out.rbac_configs.push_back(std::move(*c));
  } else if (k == "ServiceRole") {
    if (auto r = ParseServiceRole(doc, diag)) out.roles.push_back(std::move(*r));
  } else if (k == "ServiceRoleBinding") {
    if (auto b = ParseServiceRoleBinding(doc, diag)) out.bindings.push_back(std::move(*b));
  } else if (k == "AuthorizationPolicy") {
    if (auto p = ParseAuthorizationPolicy(doc, diag)) out.authorization_policies.push_back(std::move(*p));
  } else if (k == "Service") {
    if (auto s = ParseService(doc, domain, diag)) out.services.push_back(std::move(*s));
  } else {
    return false;
  }
  return true;
}

void ValidateRbacPolicies(const RbacPolicies& p, Diagnostics& diag) {
  CheckDuplicateObjects(p.rbac_configs, diag);
  CheckDuplicateObjects(p.roles, diag);
  CheckDuplicateObjects(p.bindings, diag);
  CheckDuplicateObjects(p.authorization_policies, diag);
  CheckDuplicateObjects(p.services, diag);
  int cluster = 0, namespaced = 0;
  for (const auto& c : p.rbac_configs) (c.ref.kind == "ClusterRbacConfig" ? cluster : namespaced)++;
  if (namespaced > 1) {
    for (const auto& c : p.rbac_configs) {
      if (c.ref.kind != "RbacConfig") continue;
      diag.Add({Diagnostic::Severity::kError, c.ref.file, c.ref.line, absl::StrCat("RbacConfig ", c.ref.Id()), "",
                "more than one RbacConfig: the mesh-wide RBAC switch must be a single object"});
    }
  }
  if (cluster > 0 && namespaced > 0) {
    for (const auto& c : p.rbac_configs) {
      if (c.ref.kind != "RbacConfig") continue;
      diag.Add({Diagnostic::Severity::kWarning, c.ref.file, c.ref.line, absl::StrCat("RbacConfig ", c.ref.Id()), "",
                "ignored: ClusterRbacConfig takes precedence over the deprecated RbacConfig"});
    }
  } else if (namespaced > 0) {
    for (const auto& c : p.rbac_configs) {
      diag.Add({Diagnostic::Severity::kWarning, c.ref.file, c.ref.line, absl::StrCat("RbacConfig ", c.ref.Id()), "",
                "RbacConfig is deprecated; use ClusterRbacConfig"});
    }
  }
  std::set<std::string> roles;
  for (const auto& r : p.roles) roles.insert(r.ref.Id());
  for (const auto& b : p.bindings) {
    if (b.actions || b.role.empty()) continue;
    if (!roles.count(absl::StrCat(b.ref.namespace_, "/", b.role))) {
      diag.Add({Diagnostic::Severity::kWarning, b.ref.file, b.ref.line, absl::StrCat("ServiceRoleBinding ", b.ref.Id()),
                "spec.roleRef.name",
                absl::StrCat("refers to ServiceRole \"", b.role, "\", which does not exist in namespace ",
                             b.ref.namespace_, "; the binding has no effect")});
    }
  }
}

}  // namespace meshid::rbac
