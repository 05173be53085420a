#include "rbac/convert.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "rbac/match.h"
#include "rbac/predicate.h"

namespace meshid::rbac {
namespace {

struct Condition {
  std::string key;
  std::vector<std::string> values, not_values;
};

// One v1beta1 rule under construction.
struct OutRule {
  // source (omitted when empty)
  std::vector<std::string> principals, namespaces, not_namespaces, ip_blocks, not_ip_blocks;
  // operation (omitted when empty)
  std::vector<std::string> methods, not_methods, paths, not_paths, hosts, not_hosts, ports, not_ports;
  std::vector<Condition> when;
};

struct OutPolicy {
  std::string name;
  std::string ns;
  std::optional<std::map<std::string, std::string>> selector;
  bool dry_run = false;
  bool allow_all = false;  // rules: [{}]
  std::vector<OutRule> rules;
  std::string comment;
};

// The scope a rule applies to: the whole namespace or one Service (plus extra labels).
struct Scope {
  const Service* service = nullptr;  // nullptr = namespace-wide
  std::map<std::string, std::string> extra_labels;
  bool operator<(const Scope& o) const {
    if (service != o.service) return std::less<const Service*>()(service, o.service);
    return extra_labels < o.extra_labels;
  }
};

class Converter {
 public:
  Converter(const RbacPolicies& p, const ConvertOptions& o) : in_(p), options_(o) {}

  absl::StatusOr<ConvertResult> Run();

 private:
  bool Enabled(const std::string& host, const std::string& ns) const {
    const bool listed = target_services_.count(host) || target_namespaces_.count(ns);
    switch (config_->mode) {
      case RbacMode::kOff:
        return false;
      case RbacMode::kOn:
        return true;
      case RbacMode::kOnWithInclusion:
        return listed;
      case RbacMode::kOnWithExclusion:
        return !listed;
    }
    return false;
  }
  // Whether a namespace-wide policy is exact for the namespace: every workload in it is
  // enforced, or (ON_WITH_EXCLUSION) the ones that are not already have an allow-all policy.
  bool NamespaceWideExact(const std::string& ns) const {
    switch (config_->mode) {
      case RbacMode::kOff:
        return false;
      case RbacMode::kOn:
        return true;
      case RbacMode::kOnWithInclusion:
        return target_namespaces_.count(ns) > 0;
      case RbacMode::kOnWithExclusion:
        return target_namespaces_.count(ns) == 0;
    }
    return false;
  }
  void Error(const std::string& msg) { errors_.push_back(msg); }
  void DefaultDeny();
  void ConvertRole(const std::string& role_id, const std::string& ns, const std::vector<AccessRule>& rules,
                   const std::vector<std::pair<const ServiceRoleBinding*, const Subject*>>& subjects, bool dry_run);
  std::optional<OutRule> MapRule(const std::string& where, const AccessRule& r, const Service* service);
  std::optional<OutRule> MapSubject(const std::string& where, const Subject& s);
  std::string Emit() const;

  const RbacPolicies& in_;
  const ConvertOptions& options_;
  std::optional<RbacConfig> config_;
  std::set<std::string> target_services_, target_namespaces_;
  std::vector<OutPolicy> out_;
  std::vector<std::string> errors_;
  std::vector<std::string> notes_;
  std::set<std::string> names_;
};

std::string UniqueName(std::set<std::string>& used, const std::string& ns, std::string name) {
  std::string candidate = name;
  for (int i = 2; used.count(ns + "/" + candidate); ++i) candidate = absl::StrCat(name, "-", i);
  used.insert(ns + "/" + candidate);
  return candidate;
}

void Converter::DefaultDeny() {
  auto add = [&](std::string ns, std::optional<std::map<std::string, std::string>> selector, bool allow_all,
                 std::string name, std::string comment) {
    OutPolicy p;
    p.ns = std::move(ns);
    p.name = UniqueName(names_, p.ns, std::move(name));
    p.selector = std::move(selector);
    p.allow_all = allow_all;
    p.dry_run = config_->enforcement_permissive;
    p.comment = std::move(comment);
    out_.push_back(std::move(p));
  };
  auto service_for = [&](const std::string& host) -> const Service* {
    for (const auto& s : in_.services)
      if (s.hostname == host) return &s;
    return nullptr;
  };
  switch (config_->mode) {
    case RbacMode::kOff:
      return;
    case RbacMode::kOn:
      add(options_.root_namespace, std::nullopt, false, "rbac-default-deny",
          "ClusterRbacConfig mode ON: every workload in the mesh denies what no policy allows");
      return;
    case RbacMode::kOnWithInclusion:
      for (const auto& ns : target_namespaces_) {
        add(ns, std::nullopt, false, "rbac-default-deny", absl::StrCat("RBAC included namespace ", ns));
      }
      for (const auto& host : target_services_) {
        const Service* s = service_for(host);
        if (!s) {
          Error(absl::StrCat("ClusterRbacConfig inclusion.services: ", host,
                             " has no Service document; its workload selector is needed"));
          continue;
        }
        if (target_namespaces_.count(s->ref.namespace_)) continue;
        add(s->ref.namespace_, s->selector, false, absl::StrCat("rbac-default-deny-", s->ref.name),
            absl::StrCat("RBAC included service ", host));
      }
      return;
    case RbacMode::kOnWithExclusion:
      add(options_.root_namespace, std::nullopt, false, "rbac-default-deny",
          "ClusterRbacConfig mode ON_WITH_EXCLUSION: default deny mesh-wide...");
      for (const auto& ns : target_namespaces_) {
        add(ns, std::nullopt, true, "rbac-excluded", absl::StrCat("...except the excluded namespace ", ns));
      }
      for (const auto& host : target_services_) {
        const Service* s = service_for(host);
        if (!s) {
          Error(absl::StrCat("ClusterRbacConfig exclusion.services: ", host,
                             " has no Service document; its workload selector is needed"));
          continue;
        }
        add(s->ref.namespace_, s->selector, true, absl::StrCat("rbac-excluded-", s->ref.name),
            absl::StrCat("...except the excluded service ", host));
      }
      return;
  }
}

std::optional<OutRule> Converter::MapRule(const std::string& where, const AccessRule& r, const Service* service) {
  OutRule o;
  o.methods = r.methods;
  o.not_methods = r.not_methods;
  o.paths = r.paths;
  o.not_paths = r.not_paths;
  o.hosts = r.hosts;
  o.not_hosts = r.not_hosts;
  for (int64_t p : r.ports) o.ports.push_back(absl::StrCat(p));
  for (int64_t p : r.not_ports) o.not_ports.push_back(absl::StrCat(p));
  for (const auto& c : r.constraints) {
    std::string inner;
    if (c.key == "destination.ip" || c.key == "destination.port" || c.key == "connection.sni" ||
        absl::StartsWith(c.key, "request.headers[")) {
      o.when.push_back({c.key, c.values, {}});
    } else if (c.key == "destination.name" || c.key == "destination.namespace") {
      // Decided now, against the Service this rule is emitted for.
      const std::string actual = c.key == "destination.name" ? service->ref.name : service->ref.namespace_;
      bool match = false;
      for (const auto& v : c.values) match = match || StringMatcher::FromPattern(v).Matches(actual);
      if (!match) return std::nullopt;  // the rule does not apply to this service
    } else if (ParseBracketKey(c.key, "destination.labels", &inner)) {
      // Handled by the caller through the scope's selector.
    } else {
      Error(absl::StrCat(where, ": constraint \"", c.key, "\" has no v1beta1 equivalent"));
      return std::nullopt;
    }
  }
  return o;
}

std::optional<OutRule> Converter::MapSubject(const std::string& where, const Subject& s) {
  OutRule o;
  if (!s.user.empty() && s.user != "*" && s.user != "allUsers") {
    o.principals.push_back(s.user == "allAuthenticatedUsers" ? "*" : s.user);
  }
  if (!s.names.empty()) o.when.push_back({"source.principal", s.names, {}});
  if (!s.not_names.empty()) o.when.push_back({"source.principal", {}, s.not_names});
  std::vector<std::string> groups = s.groups;
  if (!s.group.empty()) o.when.push_back({"request.auth.claims[groups]", {s.group}, {}});
  if (!groups.empty()) o.when.push_back({"request.auth.claims[groups]", groups, {}});
  if (!s.not_groups.empty()) o.when.push_back({"request.auth.claims[groups]", {}, s.not_groups});
  o.namespaces = s.namespaces;
  o.not_namespaces = s.not_namespaces;
  o.ip_blocks = s.ips;
  o.not_ip_blocks = s.not_ips;
  for (const auto& [key, value] : s.properties) {
    if (key == "source.principal" || key == "source.user") {
      if (value == "*") continue;  // v1alpha1: anyone, even unauthenticated
      o.when.push_back({"source.principal", {value}, {}});
      // source.user only exists for HTTP: keep the pair HTTP-only so TCP drops it as v1alpha1 does.
      if (key == "source.user") o.methods.push_back("*");
    } else if (key == "source.ip" || key == "source.namespace" || absl::StartsWith(key, "request.")) {
      o.when.push_back({key, {value}, {}});
    } else {
      Error(absl::StrCat(where, ": property \"", key, "\" has no v1beta1 equivalent"));
      return std::nullopt;
    }
  }
  return o;
}

OutRule Merge(const OutRule& rule, const OutRule& subject) {
  OutRule o = rule;
  o.principals = subject.principals;
  o.namespaces = subject.namespaces;
  o.not_namespaces = subject.not_namespaces;
  o.ip_blocks = subject.ip_blocks;
  o.not_ip_blocks = subject.not_ip_blocks;
  if (!subject.methods.empty() && o.methods.empty()) o.methods = subject.methods;
  o.when.insert(o.when.end(), subject.when.begin(), subject.when.end());
  return o;
}

void Converter::ConvertRole(const std::string& role_id, const std::string& ns, const std::vector<AccessRule>& rules,
                            const std::vector<std::pair<const ServiceRoleBinding*, const Subject*>>& subjects,
                            bool dry_run) {
  if (subjects.empty()) return;
  std::vector<std::pair<std::string, OutRule>> mapped_subjects;
  for (const auto& [b, s] : subjects) {
    size_t index = static_cast<size_t>(s - b->subjects.data());
    auto m = MapSubject(absl::StrCat("ServiceRoleBinding ", b->ref.Id(), " spec.subjects[", index, "]"), *s);
    if (m) mapped_subjects.emplace_back(absl::StrCat(b->ref.Id(), " subjects[", index, "]"), std::move(*m));
  }
  std::map<Scope, std::vector<OutRule>> by_scope;
  for (size_t i = 0; i < rules.size(); ++i) {
    const AccessRule& r = rules[i];
    const std::string where = absl::StrCat("ServiceRole ", role_id, " spec.rules[", i, "]");
    std::map<std::string, std::string> labels;
    bool config_time = false;
    bool ok = true;
    for (const auto& c : r.constraints) {
      std::string label;
      if (ParseBracketKey(c.key, "destination.labels", &label)) {
        if (c.values.size() != 1 || c.values[0] == "*" || absl::StartsWith(c.values[0], "*") ||
            absl::EndsWith(c.values[0], "*")) {
          Error(absl::StrCat(where, ": constraint ", c.key,
                             " must have exactly one exact value to become a workload selector"));
          ok = false;
        } else {
          labels[label] = c.values[0];
        }
      } else if (c.key == "destination.user") {
        Error(absl::StrCat(where,
                           ": constraint destination.user (the workload's service account) cannot be "
                           "expressed in v1beta1; select the workload by labels instead"));
        ok = false;
      } else if (c.key == "destination.name" || c.key == "destination.namespace") {
        config_time = true;
      }
    }
    if (!ok) continue;
    std::vector<Scope> scopes;
    const bool all_services = std::find(r.services.begin(), r.services.end(), "*") != r.services.end();
    if (all_services && !config_time && NamespaceWideExact(ns)) {
      scopes.push_back(Scope{nullptr, labels});
    } else {
      std::vector<StringMatcher> matchers;
      for (const auto& s : r.services) matchers.push_back(StringMatcher::FromPattern(s));
      bool any = false;
      for (const auto& svc : in_.services) {
        if (svc.ref.namespace_ != ns || !Enabled(svc.hostname, ns)) continue;
        bool match = false;
        for (const auto& m : matchers) match = match || m.Matches(svc.hostname);
        if (!match) continue;
        any = true;
        scopes.push_back(Scope{&svc, labels});
      }
      for (const auto& s : r.services) {
        if (s.find('*') != std::string::npos) continue;
        bool known = false;
        for (const auto& svc : in_.services) known = known || svc.hostname == s;
        if (!known && Enabled(s, ns)) {
          Error(absl::StrCat(where, ": service ", s, " has no Service document; its workload selector is needed"));
        }
      }
      if (!any && all_services) {
        notes_.push_back(
            absl::StrCat(where, ": namespace ", ns,
                         " is only partly enforced and has no enforced Service documents; nothing emitted"));
      }
    }
    for (const auto& scope : scopes) {
      auto rule = MapRule(where, r, scope.service);
      if (!rule) continue;
      for (const auto& [_, subject] : mapped_subjects) by_scope[scope].push_back(Merge(*rule, subject));
    }
  }
  const std::string role_name = role_id.substr(role_id.find('/') + 1);
  for (auto& [scope, out_rules] : by_scope) {
    OutPolicy p;
    p.ns = ns;
    std::string name = role_name;
    if (scope.service) {
      name = absl::StrCat(role_name, "--", scope.service->ref.name);
      p.selector = scope.service->selector;
    }
    if (!scope.extra_labels.empty()) {
      if (!p.selector) p.selector.emplace();
      for (const auto& [k, v] : scope.extra_labels) (*p.selector)[k] = v;
    }
    if (dry_run) name += "--dry-run";
    p.name = UniqueName(names_, ns, name);
    p.dry_run = dry_run;
    p.rules = std::move(out_rules);
    p.comment =
        absl::StrCat("from ServiceRole ", role_id,
                     scope.service ? absl::StrCat(" for service ", scope.service->hostname) : " (namespace-wide)");
    out_.push_back(std::move(p));
  }
}

// Values are always quoted: Kubernetes decodes YAML 1.1, where 27017, true or 1.0 would stop
// being the strings Istio's schema requires.
void EmitList(YAML::Emitter& e, const char* key, const std::vector<std::string>& v) {
  if (v.empty()) return;
  e << YAML::Key << key << YAML::Value << YAML::Flow << YAML::BeginSeq;
  for (const auto& s : v) e << YAML::DoubleQuoted << s;
  e << YAML::EndSeq << YAML::Block;
}

std::string Converter::Emit() const {
  std::string out;
  for (const auto& p : out_) {
    YAML::Emitter e;
    e << YAML::BeginMap;
    e << YAML::Key << "apiVersion" << YAML::Value << "security.istio.io/v1beta1";
    e << YAML::Key << "kind" << YAML::Value << "AuthorizationPolicy";
    e << YAML::Key << "metadata" << YAML::Value << YAML::BeginMap;
    e << YAML::Key << "name" << YAML::Value << p.name;
    e << YAML::Key << "namespace" << YAML::Value << p.ns;
    if (p.dry_run) {
      e << YAML::Key << "annotations" << YAML::Value << YAML::BeginMap << YAML::Key << "istio.io/dry-run" << YAML::Value
        << YAML::DoubleQuoted << "true" << YAML::EndMap;
    }
    e << YAML::EndMap;
    e << YAML::Key << "spec" << YAML::Value << YAML::BeginMap;
    if (p.selector) {
      e << YAML::Key << "selector" << YAML::Value << YAML::BeginMap << YAML::Key << "matchLabels" << YAML::Value
        << YAML::BeginMap;
      for (const auto& [k, v] : *p.selector) e << YAML::Key << k << YAML::Value << YAML::DoubleQuoted << v;
      e << YAML::EndMap << YAML::EndMap;
    }
    if (p.allow_all) {
      e << YAML::Key << "rules" << YAML::Value << YAML::BeginSeq << YAML::Flow << YAML::BeginMap << YAML::EndMap
        << YAML::Block << YAML::EndSeq;
    } else if (!p.rules.empty()) {
      e << YAML::Key << "rules" << YAML::Value << YAML::BeginSeq;
      for (const auto& r : p.rules) {
        e << YAML::BeginMap;
        const bool has_source = !r.principals.empty() || !r.namespaces.empty() || !r.not_namespaces.empty() ||
                                !r.ip_blocks.empty() || !r.not_ip_blocks.empty();
        if (has_source) {
          e << YAML::Key << "from" << YAML::Value << YAML::BeginSeq << YAML::BeginMap << YAML::Key << "source"
            << YAML::Value << YAML::BeginMap;
          EmitList(e, "principals", r.principals);
          EmitList(e, "namespaces", r.namespaces);
          EmitList(e, "notNamespaces", r.not_namespaces);
          EmitList(e, "ipBlocks", r.ip_blocks);
          EmitList(e, "notIpBlocks", r.not_ip_blocks);
          e << YAML::EndMap << YAML::EndMap << YAML::EndSeq;
        }
        const bool has_op = !r.methods.empty() || !r.not_methods.empty() || !r.paths.empty() || !r.not_paths.empty() ||
                            !r.hosts.empty() || !r.not_hosts.empty() || !r.ports.empty() || !r.not_ports.empty();
        if (has_op) {
          e << YAML::Key << "to" << YAML::Value << YAML::BeginSeq << YAML::BeginMap << YAML::Key << "operation"
            << YAML::Value << YAML::BeginMap;
          EmitList(e, "hosts", r.hosts);
          EmitList(e, "notHosts", r.not_hosts);
          EmitList(e, "ports", r.ports);
          EmitList(e, "notPorts", r.not_ports);
          EmitList(e, "methods", r.methods);
          EmitList(e, "notMethods", r.not_methods);
          EmitList(e, "paths", r.paths);
          EmitList(e, "notPaths", r.not_paths);
          e << YAML::EndMap << YAML::EndMap << YAML::EndSeq;
        }
        if (!r.when.empty()) {
          e << YAML::Key << "when" << YAML::Value << YAML::BeginSeq;
          for (const auto& c : r.when) {
            e << YAML::BeginMap << YAML::Key << "key" << YAML::Value << c.key;
            EmitList(e, "values", c.values);
            EmitList(e, "notValues", c.not_values);
            e << YAML::EndMap;
          }
          e << YAML::EndSeq;
        }
        e << YAML::EndMap;
      }
      e << YAML::EndSeq;
    }
    e << YAML::EndMap << YAML::EndMap;
    absl::StrAppend(&out, "---\n# ", p.comment, "\n", e.c_str(), "\n");
  }
  return out;
}

absl::StatusOr<ConvertResult> Converter::Run() {
  for (const auto& c : in_.rbac_configs) {
    if (c.ref.kind == "ClusterRbacConfig" || !config_) config_ = c;
  }
  ConvertResult result;
  if (!config_ || config_->mode == RbacMode::kOff) {
    result.notes.push_back(config_ ? "RBAC mode is OFF: nothing is enforced, so no AuthorizationPolicy is needed"
                                   : "no ClusterRbacConfig/RbacConfig: v1alpha1 RBAC is off, nothing to convert");
    return result;
  }
  const auto& target = config_->mode == RbacMode::kOnWithInclusion ? config_->inclusion : config_->exclusion;
  if (target && (config_->mode == RbacMode::kOnWithInclusion || config_->mode == RbacMode::kOnWithExclusion)) {
    target_services_.insert(target->services.begin(), target->services.end());
    target_namespaces_.insert(target->namespaces.begin(), target->namespaces.end());
  }
  DefaultDeny();
  // Roles (sorted by namespace/name) with their bindings' subjects.
  std::vector<const ServiceRole*> roles;
  for (const auto& r : in_.roles) roles.push_back(&r);
  std::sort(roles.begin(), roles.end(), [](auto* a, auto* b) { return a->ref.Id() < b->ref.Id(); });
  const bool all_dry = config_->enforcement_permissive;
  for (const auto* role : roles) {
    std::vector<std::pair<const ServiceRoleBinding*, const Subject*>> enforced, permissive;
    for (const auto& b : in_.bindings) {
      if (b.actions || b.ref.namespace_ != role->ref.namespace_ || b.role != role->ref.name) continue;
      for (const auto& s : b.subjects) (all_dry || b.permissive ? permissive : enforced).emplace_back(&b, &s);
    }
    ConvertRole(role->ref.Id(), role->ref.namespace_, role->rules, enforced, false);
    ConvertRole(role->ref.Id(), role->ref.namespace_, role->rules, permissive, true);
  }
  for (const auto& b : in_.bindings) {
    if (!b.actions) continue;
    std::vector<std::pair<const ServiceRoleBinding*, const Subject*>> subjects;
    for (const auto& s : b.subjects) subjects.emplace_back(&b, &s);
    ConvertRole(b.ref.Id(), b.ref.namespace_, *b.actions, subjects, all_dry || b.permissive);
  }
  if (!errors_.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot convert:\n", absl::StrJoin(errors_, "\n")));
  }
  if (all_dry) notes_.push_back("enforcement_mode PERMISSIVE: every policy is emitted as dry-run (istio.io/dry-run)");
  result.notes = notes_;
  result.policies = out_.size();
  result.yaml = Emit();
  return result;
}

}  // namespace

absl::StatusOr<ConvertResult> ConvertToV1beta1(const RbacPolicies& policies, const ConvertOptions& options) {
  Converter c(policies, options);
  try {
    return c.Run();
  } catch (const YAML::Exception& e) {
    return absl::InternalError(absl::StrCat("emitting YAML failed: ", e.what()));
  }
}

}  // namespace meshid::rbac
