#include "rbac/engine.h"

#include <algorithm>
#include <map>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/container/inlined_vector.h"
#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "rbac/predicate.h"

namespace meshid::rbac {
namespace {

// ---- v1beta1 ----

struct CompiledAuthzRule {
  int index = 0;
  std::vector<Conjunction> from;  // OR; empty = any source
  std::vector<Conjunction> to;    // OR; empty = any operation
  Conjunction when;               // AND

  bool Matches(const RequestAttributes& a) const {
    if (!from.empty() && std::none_of(from.begin(), from.end(), [&](const Conjunction& c) { return c.Matches(a); })) {
      return false;
    }
    if (!to.empty() && std::none_of(to.begin(), to.end(), [&](const Conjunction& c) { return c.Matches(a); })) {
      return false;
    }
    return when.Matches(a);
  }
  bool http_only() const {
    for (const auto& c : from)
      if (c.http_only()) return true;
    for (const auto& c : to)
      if (c.http_only()) return true;
    return when.http_only();
  }
};

struct CompiledAuthzPolicy {
  std::string id;
  std::string ns;
  size_t order = 0;
  AuthzAction action = AuthzAction::kAllow;
  bool dry_run = false;
  std::string provider;
  std::map<std::string, std::string> selector;  // empty = every workload in scope
  std::vector<CompiledAuthzRule> http_rules;
  std::vector<CompiledAuthzRule> tcp_rules;

  bool SelectorMatches(const std::map<std::string, std::string>& labels) const {
    for (const auto& [k, v] : selector) {
      auto it = labels.find(k);
      if (it == labels.end() || it->second != v) return false;
    }
    return true;
  }
  // The first matching rule's index, or -1.
  int FirstMatch(const RequestAttributes& a) const {
    for (const auto& r : a.protocol == Protocol::kTcp ? tcp_rules : http_rules)
      if (r.Matches(a)) return r.index;
    return -1;
  }
};

void Add(Conjunction& c, Attr attr, const std::vector<std::string>& values, bool negate) {
  if (!values.empty()) c.all.push_back(StringPredicate(attr, "", values, negate));
}

absl::Status AddCidrs(Conjunction& c, const std::vector<std::string>& values, bool negate) {
  if (values.empty()) return absl::OkStatus();
  auto p = ConditionPredicate("source.ip", values, negate, false);
  if (!p.ok()) return p.status();
  c.all.push_back(std::move(*p));
  return absl::OkStatus();
}

absl::StatusOr<Conjunction> CompileSource(const AuthzSource& s) {
  Conjunction c;
  Add(c, Attr::kSourcePrincipal, s.principals, false);
  Add(c, Attr::kSourcePrincipal, s.not_principals, true);
  Add(c, Attr::kRequestPrincipal, s.request_principals, false);
  Add(c, Attr::kRequestPrincipal, s.not_request_principals, true);
  Add(c, Attr::kSourceNamespace, s.namespaces, false);
  Add(c, Attr::kSourceNamespace, s.not_namespaces, true);
  if (auto st = AddCidrs(c, s.ip_blocks, false); !st.ok()) return st;
  if (auto st = AddCidrs(c, s.not_ip_blocks, true); !st.ok()) return st;
  if (auto st = AddCidrs(c, s.remote_ip_blocks, false); !st.ok()) return st;
  if (auto st = AddCidrs(c, s.not_remote_ip_blocks, true); !st.ok()) return st;
  return c;
}

absl::StatusOr<Conjunction> CompileOperation(const AuthzOperation& o) {
  Conjunction c;
  Add(c, Attr::kHost, o.hosts, false);
  Add(c, Attr::kHost, o.not_hosts, true);
  for (const auto* ports : {&o.ports, &o.not_ports}) {
    if (ports->empty()) continue;
    auto p = ConditionPredicate("destination.port", *ports, ports == &o.not_ports, false);
    if (!p.ok()) return p.status();
    c.all.push_back(std::move(*p));
  }
  Add(c, Attr::kMethod, o.methods, false);
  Add(c, Attr::kMethod, o.not_methods, true);
  Add(c, Attr::kPath, o.paths, false);
  Add(c, Attr::kPath, o.not_paths, true);
  return c;
}

absl::StatusOr<CompiledAuthzRule> CompileAuthzRule(const AuthzRule& rule, int index) {
  CompiledAuthzRule out;
  out.index = index;
  for (const auto& s : rule.from) {
    auto c = CompileSource(s);
    if (!c.ok()) return c.status();
    out.from.push_back(std::move(*c));
  }
  for (const auto& o : rule.to) {
    auto c = CompileOperation(o);
    if (!c.ok()) return c.status();
    out.to.push_back(std::move(*c));
  }
  for (const auto& w : rule.when) {
    if (!w.values.empty()) {
      auto p = ConditionPredicate(w.key, w.values, false, false);
      if (!p.ok()) return p.status();
      out.when.all.push_back(std::move(*p));
    }
    if (!w.not_values.empty()) {
      auto p = ConditionPredicate(w.key, w.not_values, true, false);
      if (!p.ok()) return p.status();
      out.when.all.push_back(std::move(*p));
    }
  }
  return out;
}

// Istio 1.5+ on a TCP filter chain: an ALLOW rule using HTTP-only attributes is dropped (less
// access); DENY/AUDIT/CUSTOM rules lose their HTTP-only parts (more matches).
std::optional<CompiledAuthzRule> ForTcp(const CompiledAuthzRule& r, AuthzAction action) {
  if (action == AuthzAction::kAllow) {
    if (r.http_only()) return std::nullopt;
    return r;
  }
  CompiledAuthzRule out;
  out.index = r.index;
  for (const auto& c : r.from) out.from.push_back(c.WithoutHttpOnly());
  for (const auto& c : r.to) out.to.push_back(c.WithoutHttpOnly());
  out.when = r.when.WithoutHttpOnly();
  return out;
}

// (namespace, label key, label value), looked up without building strings.
struct LabelKey {
  std::string ns, key, value;
};
struct LabelKeyView {
  absl::string_view ns, key, value;
};
struct LabelKeyHash {
  using is_transparent = void;
  size_t operator()(const LabelKeyView& k) const { return absl::HashOf(k.ns, k.key, k.value); }
  size_t operator()(const LabelKey& k) const { return (*this)(LabelKeyView{k.ns, k.key, k.value}); }
};
struct LabelKeyEq {
  using is_transparent = void;
  static LabelKeyView View(const LabelKey& k) { return {k.ns, k.key, k.value}; }
  static LabelKeyView View(const LabelKeyView& k) { return k; }
  template <typename A, typename B>
  bool operator()(const A& a, const B& b) const {
    LabelKeyView x = View(a), y = View(b);
    return x.ns == y.ns && x.key == y.key && x.value == y.value;
  }
};
using PolicyList = std::vector<const CompiledAuthzPolicy*>;

// ---- v1alpha1 ----

struct CompiledAccessRule {
  int index = 0;
  std::vector<StringMatcher> services;
  Conjunction config;   // destination.name/namespace/user/labels: fixed per service
  Conjunction runtime;  // everything else
  bool http_only = false;
};

struct CompiledSubject {
  std::string binding;  // "ns/name"
  int index = 0;
  Conjunction match;
  bool http_only = false;
};

struct CompiledRole {
  std::string id;
  std::string ns;
  size_t order = 0;
  std::vector<CompiledAccessRule> rules;
  std::vector<CompiledSubject> enforced;
  std::vector<CompiledSubject> shadow;
};

struct RuleRef {
  const CompiledRole* role;
  int rule;
};

struct AlphaNsIndex {
  absl::flat_hash_map<std::string, std::vector<RuleRef>> exact;  // services entries without '*'
  std::vector<RuleRef> patterned;
  bool has_shadow = false;
};

bool IsConfigTime(Attr a) {
  return a == Attr::kDestinationName || a == Attr::kDestinationNamespace || a == Attr::kDestinationUser ||
         a == Attr::kDestinationLabel;
}

absl::StatusOr<CompiledAccessRule> CompileAccessRule(const AccessRule& r, int index) {
  CompiledAccessRule out;
  out.index = index;
  for (const auto& s : r.services) out.services.push_back(StringMatcher::FromPattern(s));
  Conjunction& c = out.runtime;
  Add(c, Attr::kHost, r.hosts, false);
  Add(c, Attr::kHost, r.not_hosts, true);
  Add(c, Attr::kPath, r.paths, false);
  Add(c, Attr::kPath, r.not_paths, true);
  Add(c, Attr::kMethod, r.methods, false);
  Add(c, Attr::kMethod, r.not_methods, true);
  for (const auto* ports : {&r.ports, &r.not_ports}) {
    if (ports->empty()) continue;
    Predicate p;
    p.attr = Attr::kDestinationPort;
    p.negate = ports == &r.not_ports;
    for (int64_t v : *ports) p.ports.push_back(static_cast<uint32_t>(v));
    c.all.push_back(std::move(p));
  }
  // Istio sorts constraint keys for a stable output; the AND does not care, explanations do.
  std::vector<const Constraint*> sorted;
  for (const auto& k : r.constraints) sorted.push_back(&k);
  std::stable_sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->key < b->key; });
  for (const auto* k : sorted) {
    auto p = ConditionPredicate(k->key, k->values, false, /*v1alpha1=*/true);
    if (!p.ok()) return p.status();
    (IsConfigTime(p->attr) ? out.config : out.runtime).all.push_back(std::move(*p));
  }
  out.http_only = out.runtime.http_only();
  return out;
}

absl::StatusOr<CompiledSubject> CompileSubject(const Subject& s, std::string binding, int index) {
  CompiledSubject out;
  out.binding = std::move(binding);
  out.index = index;
  Conjunction& c = out.match;
  if (!s.user.empty()) {
    Predicate p;
    p.attr = Attr::kSourcePrincipal;
    if (s.user == "*" || s.user == "allUsers") {
      p.strings.push_back(StringMatcher::Any());  // anyone, even unauthenticated
    } else if (s.user == "allAuthenticatedUsers") {
      p.strings.push_back(StringMatcher::FromPattern("*"));  // any authenticated principal
    } else {
      p.strings.push_back(StringMatcher::FromPattern(s.user));
    }
    c.all.push_back(std::move(p));
  }
  Add(c, Attr::kSourcePrincipal, s.names, false);
  Add(c, Attr::kSourcePrincipal, s.not_names, true);
  if (!s.group.empty()) c.all.push_back(StringPredicate(Attr::kClaim, "groups", {s.group}, false));
  if (!s.groups.empty()) c.all.push_back(StringPredicate(Attr::kClaim, "groups", s.groups, false));
  if (!s.not_groups.empty()) c.all.push_back(StringPredicate(Attr::kClaim, "groups", s.not_groups, true));
  Add(c, Attr::kSourceNamespace, s.namespaces, false);
  Add(c, Attr::kSourceNamespace, s.not_namespaces, true);
  if (auto st = AddCidrs(c, s.ips, false); !st.ok()) return st;
  if (auto st = AddCidrs(c, s.not_ips, true); !st.ok()) return st;
  for (const auto& [key, value] : s.properties) {  // std::map: sorted keys, as Istio does
    auto p = ConditionPredicate(key, {value}, false, /*v1alpha1=*/true);
    if (!p.ok()) return p.status();
    c.all.push_back(std::move(*p));
  }
  // source.user is a legacy metadata key that only the HTTP authn filter sets.
  out.http_only = c.http_only() || s.properties.count("source.user") > 0;
  return out;
}

struct AlphaOutcome {
  bool allowed = false;
  std::string policy;
  std::string rule;
  std::string reason;
};

}  // namespace

struct RbacEngine::Impl {
  RbacEngineOptions options;
  // v1beta1
  std::vector<std::unique_ptr<CompiledAuthzPolicy>> beta;
  // Policies without a selector, by namespace; policies with one, by (namespace, first selector
  // label) — the rest of the selector is checked on lookup.
  absl::flat_hash_map<std::string, PolicyList> beta_unselected;
  absl::flat_hash_map<LabelKey, PolicyList, LabelKeyHash, LabelKeyEq> beta_by_label;
  const PolicyList* root_unselected = nullptr;
  bool root_has_selectors = false;
  // v1alpha1
  std::optional<RbacConfig> rbac_config;
  absl::flat_hash_set<std::string> target_services, target_namespaces;
  std::vector<std::unique_ptr<CompiledRole>> roles;
  absl::flat_hash_map<std::string, AlphaNsIndex> alpha_index;

  using Candidates = absl::InlinedVector<const CompiledAuthzPolicy*, 16>;
  void BetaCandidates(const RequestAttributes& a, Candidates& out) const;
  absl::StatusOr<AuthzResult> EvaluateBeta(const RequestAttributes& a, const Candidates& cands) const;
  AlphaOutcome EvaluateAlpha(const RequestAttributes& a, bool shadow) const;
};

RbacEngine::RbacEngine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RbacEngine::~RbacEngine() = default;

absl::StatusOr<std::unique_ptr<const RbacEngine>> RbacEngine::Create(const RbacPolicies& policies,
                                                                     RbacEngineOptions options) {
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);

  // v1beta1, ordered by namespace/name so explanations are deterministic.
  std::vector<const AuthorizationPolicy*> sorted;
  for (const auto& p : policies.authorization_policies) sorted.push_back(&p);
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->ref.Id() < b->ref.Id(); });
  for (const auto* p : sorted) {
    auto cp = std::make_unique<CompiledAuthzPolicy>();
    cp->id = p->ref.Id();
    cp->ns = p->ref.namespace_;
    cp->order = impl->beta.size();
    cp->action = p->action;
    cp->dry_run = p->dry_run;
    cp->provider = p->provider;
    if (p->selector) cp->selector = *p->selector;
    for (size_t i = 0; i < p->rules.size(); ++i) {
      auto r = CompileAuthzRule(p->rules[i], static_cast<int>(i));
      if (!r.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("AuthorizationPolicy ", cp->id, " rules[", i, "]: ", r.status().message()));
      }
      if (auto tcp = ForTcp(*r, p->action)) cp->tcp_rules.push_back(std::move(*tcp));
      cp->http_rules.push_back(std::move(*r));
    }
    if (cp->selector.empty()) {
      impl->beta_unselected[cp->ns].push_back(cp.get());
    } else {
      const auto& [k, v] = *cp->selector.begin();
      impl->beta_by_label[LabelKey{cp->ns, k, v}].push_back(cp.get());
      if (cp->ns == impl->options.root_namespace) impl->root_has_selectors = true;
    }
    impl->beta.push_back(std::move(cp));
  }
  // Taken after the last insertion: flat_hash_map values move on rehash.
  if (auto it = impl->beta_unselected.find(impl->options.root_namespace); it != impl->beta_unselected.end()) {
    impl->root_unselected = &it->second;
  }

  // v1alpha1: ClusterRbacConfig wins over the deprecated RbacConfig.
  for (const auto& c : policies.rbac_configs) {
    if (c.ref.kind == "ClusterRbacConfig" || !impl->rbac_config) impl->rbac_config = c;
  }
  if (impl->rbac_config) {
    const auto& target = impl->rbac_config->mode == RbacMode::kOnWithInclusion ? impl->rbac_config->inclusion
                                                                               : impl->rbac_config->exclusion;
    if (target) {
      impl->target_services.insert(target->services.begin(), target->services.end());
      impl->target_namespaces.insert(target->namespaces.begin(), target->namespaces.end());
    }
  }
  const bool all_shadow = impl->rbac_config && impl->rbac_config->enforcement_permissive;
  std::map<std::string, CompiledRole*> by_id;  // sorted by ns/name
  std::map<std::string, std::unique_ptr<CompiledRole>> roles;
  for (const auto& r : policies.roles) {
    auto role = std::make_unique<CompiledRole>();
    role->id = r.ref.Id();
    role->ns = r.ref.namespace_;
    for (size_t i = 0; i < r.rules.size(); ++i) {
      auto cr = CompileAccessRule(r.rules[i], static_cast<int>(i));
      if (!cr.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("ServiceRole ", role->id, " rules[", i, "]: ", cr.status().message()));
      }
      role->rules.push_back(std::move(*cr));
    }
    roles[role->id] = std::move(role);
  }
  for (const auto& b : policies.bindings) {
    CompiledRole* role = nullptr;
    if (b.actions) {
      // The hidden inline-role form: the binding carries its own rules.
      auto inline_role = std::make_unique<CompiledRole>();
      inline_role->id = absl::StrCat(b.ref.Id(), " (inline actions)");
      inline_role->ns = b.ref.namespace_;
      for (size_t i = 0; i < b.actions->size(); ++i) {
        auto cr = CompileAccessRule((*b.actions)[i], static_cast<int>(i));
        if (!cr.ok())
          return absl::InvalidArgumentError(
              absl::StrCat("ServiceRoleBinding ", b.ref.Id(), ": ", cr.status().message()));
        inline_role->rules.push_back(std::move(*cr));
      }
      role = inline_role.get();
      roles[inline_role->id] = std::move(inline_role);
    } else {
      auto it = roles.find(absl::StrCat(b.ref.namespace_, "/", b.role));
      if (it == roles.end()) continue;  // warned about during validation; no effect
      role = it->second.get();
    }
    for (size_t i = 0; i < b.subjects.size(); ++i) {
      auto s = CompileSubject(b.subjects[i], b.ref.Id(), static_cast<int>(i));
      if (!s.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("ServiceRoleBinding ", b.ref.Id(), " subjects[", i, "]: ", s.status().message()));
      }
      (all_shadow || b.permissive ? role->shadow : role->enforced).push_back(std::move(*s));
    }
  }
  for (auto& [id, role] : roles) {
    // Istio emits one policy per role that has at least one binding.
    if (role->enforced.empty() && role->shadow.empty()) continue;
    role->order = impl->roles.size();
    AlphaNsIndex& idx = impl->alpha_index[role->ns];
    if (!role->shadow.empty()) idx.has_shadow = true;
    for (const auto& rule : role->rules) {
      RuleRef ref{role.get(), rule.index};
      bool patterned = false;
      for (const auto& m : rule.services)
        if (m.kind() != StringMatcher::Kind::kExact) patterned = true;
      if (patterned) {
        idx.patterned.push_back(ref);
      } else {
        for (const auto& m : rule.services) {
          auto& list = idx.exact[m.text()];
          if (list.empty() || list.back().role != ref.role || list.back().rule != ref.rule) list.push_back(ref);
        }
      }
    }
    impl->roles.push_back(std::move(role));
  }
  return std::unique_ptr<const RbacEngine>(new RbacEngine(std::move(impl)));
}

bool RbacEngine::IsV1alpha1Enabled(absl::string_view service, absl::string_view ns) const {
  const auto& cfg = impl_->rbac_config;
  if (!cfg) return false;
  auto listed = [&] { return impl_->target_services.contains(service) || impl_->target_namespaces.contains(ns); };
  switch (cfg->mode) {
    case RbacMode::kOff:
      return false;
    case RbacMode::kOn:
      return true;
    case RbacMode::kOnWithInclusion:
      return listed();
    case RbacMode::kOnWithExclusion:
      return !listed();
  }
  return false;
}

void RbacEngine::Impl::BetaCandidates(const RequestAttributes& a, Candidates& out) const {
  if (beta.empty()) return;
  auto add = [&](const std::string& ns, const PolicyList* unselected, bool selectors) {
    if (unselected) out.insert(out.end(), unselected->begin(), unselected->end());
    if (!selectors) return;
    for (const auto& [k, v] : a.destination_labels) {
      auto it = beta_by_label.find(LabelKeyView{ns, k, v});
      if (it == beta_by_label.end()) continue;
      for (const auto* p : it->second)
        if (p->SelectorMatches(a.destination_labels)) out.push_back(p);
    }
  };
  auto own = beta_unselected.find(a.destination_namespace);
  add(a.destination_namespace, own == beta_unselected.end() ? nullptr : &own->second, !beta_by_label.empty());
  if (a.destination_namespace != options.root_namespace)
    add(options.root_namespace, root_unselected, root_has_selectors);
  if (out.size() > 1) std::sort(out.begin(), out.end(), [](auto* x, auto* y) { return x->order < y->order; });
}

absl::StatusOr<AuthzResult> RbacEngine::Impl::EvaluateBeta(const RequestAttributes& a, const Candidates& cands) const {
  AuthzResult out;
  // Shadow: what the dry-run policies alone would decide (Envoy's shadow_rules).
  {
    bool any = false, deny = false, allow_applies = false, allow_matched = false;
    for (const auto* p : cands) {
      if (!p->dry_run || p->action == AuthzAction::kAudit || p->action == AuthzAction::kCustom) continue;
      any = true;
      int rule = p->FirstMatch(a);
      if (p->action == AuthzAction::kDeny && rule >= 0 && !deny) {
        deny = true;
        out.shadow = ShadowResult{false, p->id, absl::StrCat("rules[", rule, "]")};
      }
      if (p->action == AuthzAction::kAllow) {
        allow_applies = true;
        if (rule >= 0 && !allow_matched && !deny) {
          allow_matched = true;
          out.shadow = ShadowResult{true, p->id, absl::StrCat("rules[", rule, "]")};
        }
      }
    }
    if (any && !deny && !allow_matched) out.shadow = ShadowResult{!allow_applies, "", ""};
  }
  // 1. CUSTOM: delegated to the external authorizer.
  for (const auto* p : cands) {
    if (p->dry_run || p->action != AuthzAction::kCustom) continue;
    int rule = p->FirstMatch(a);
    if (rule < 0) continue;
    if (!options.custom) {
      return absl::FailedPreconditionError(
          absl::StrCat("CUSTOM policy ", p->id, " matched but provider \"", p->provider, "\" is not configured"));
    }
    auto allowed = options.custom->Check(p->provider, a);
    if (!allowed.ok()) {
      return absl::Status(allowed.status().code(),
                          absl::StrCat("CUSTOM provider \"", p->provider, "\" failed: ", allowed.status().message()));
    }
    if (!*allowed) {
      out.allowed = false;
      out.policy = p->id;
      out.rule = absl::StrCat("rules[", rule, "]");
      out.reason = absl::StrCat("denied by CUSTOM provider \"", p->provider, "\" (policy ", p->id, ")");
      return out;
    }
  }
  // 2. DENY.
  for (const auto* p : cands) {
    if (p->dry_run || p->action != AuthzAction::kDeny) continue;
    int rule = p->FirstMatch(a);
    if (rule < 0) continue;
    out.allowed = false;
    out.policy = p->id;
    out.rule = absl::StrCat("rules[", rule, "]");
    out.reason = absl::StrCat("denied by DENY policy ", p->id);
    return out;
  }
  // 3./4./5. ALLOW.
  size_t allow_policies = 0;
  for (const auto* p : cands) {
    if (p->dry_run || p->action != AuthzAction::kAllow) continue;
    ++allow_policies;
    int rule = p->FirstMatch(a);
    if (rule < 0) continue;
    out.allowed = true;
    out.policy = p->id;
    out.rule = absl::StrCat("rules[", rule, "]");
    out.reason = absl::StrCat("allowed by ALLOW policy ", p->id);
    return out;
  }
  if (allow_policies == 0) {
    out.allowed = true;
    out.reason = "no ALLOW policy applies to the workload";
    return out;
  }
  out.allowed = false;
  out.reason = absl::StrCat("RBAC: access denied: none of the ", allow_policies,
                            allow_policies == 1 ? " ALLOW policy" : " ALLOW policies", " for the workload matched");
  return out;
}

AlphaOutcome RbacEngine::Impl::EvaluateAlpha(const RequestAttributes& a, bool shadow) const {
  AlphaOutcome out;
  auto it = alpha_index.find(a.destination_namespace);
  if (it == alpha_index.end()) {
    out.reason =
        absl::StrCat("RBAC: access denied: no ServiceRole with a binding in namespace ", a.destination_namespace);
    return out;
  }
  const AlphaNsIndex& idx = it->second;
  absl::InlinedVector<RuleRef, 16> cands;
  auto exact = idx.exact.find(a.destination_service);
  if (exact != idx.exact.end()) cands.insert(cands.end(), exact->second.begin(), exact->second.end());
  for (const auto& ref : idx.patterned) {
    for (const auto& m : ref.role->rules[ref.rule].services) {
      if (m.Matches(a.destination_service)) {
        cands.push_back(ref);
        break;
      }
    }
  }
  std::sort(cands.begin(), cands.end(), [](const RuleRef& x, const RuleRef& y) {
    return x.role->order != y.role->order ? x.role->order < y.role->order : x.rule < y.rule;
  });
  const bool tcp = a.protocol == Protocol::kTcp;
  const CompiledRole* permitted_role = nullptr;
  int permitted_rule = -1;
  bool dropped_rule = false, dropped_subject = false;
  for (const auto& ref : cands) {
    const CompiledRole& role = *ref.role;
    const auto& subjects = shadow ? role.shadow : role.enforced;
    if (subjects.empty()) continue;
    const CompiledAccessRule& rule = role.rules[ref.rule];
    if (tcp && rule.http_only) {  // Istio drops rules with HTTP-only fields for TCP
      dropped_rule = true;
      continue;
    }
    if (!rule.config.Matches(a) || !rule.runtime.Matches(a)) continue;
    if (!permitted_role) {
      permitted_role = &role;
      permitted_rule = rule.index;
    }
    for (const auto& s : subjects) {
      if (tcp && s.http_only) {
        dropped_subject = true;
        continue;
      }
      if (!s.match.Matches(a)) continue;
      out.allowed = true;
      out.policy = role.id;
      out.rule = absl::StrCat("rules[", rule.index, "]; binding ", s.binding, " subjects[", s.index, "]");
      out.reason = absl::StrCat("allowed by ServiceRole ", role.id, " through ServiceRoleBinding ", s.binding);
      return out;
    }
  }
  if (permitted_role) {
    out.reason = absl::StrCat("RBAC: access denied: ServiceRole ", permitted_role->id, " rules[", permitted_rule,
                              "] matches the request but no subject of its bindings matches the caller",
                              dropped_subject ? " (subjects using HTTP-only fields are dropped for TCP)" : "");
  } else {
    out.reason =
        absl::StrCat("RBAC: access denied: no ServiceRole rule in namespace ", a.destination_namespace, " matches ",
                     a.destination_service,
                     dropped_rule ? " (rules using HTTP-only fields are dropped for TCP)" : " and this request");
  }
  return out;
}

absl::StatusOr<AuthzResult> RbacEngine::Evaluate(const RequestAttributes& a) const {
  Impl::Candidates cands;
  impl_->BetaCandidates(a, cands);
  if (!cands.empty()) return impl_->EvaluateBeta(a, cands);

  AuthzResult out;
  if (!IsV1alpha1Enabled(a.destination_service, a.destination_namespace)) {
    out.allowed = true;
    out.reason = impl_->rbac_config
                     ? absl::StrCat("RBAC is not enabled for ", a.destination_service, " (mode ",
                                    RbacModeName(impl_->rbac_config->mode), ") and no AuthorizationPolicy applies")
                     : "no authorization policy applies";
    return out;
  }
  auto alpha_it = impl_->alpha_index.find(a.destination_namespace);
  const bool has_shadow = alpha_it != impl_->alpha_index.end() && alpha_it->second.has_shadow;
  if (has_shadow) {
    AlphaOutcome s = impl_->EvaluateAlpha(a, /*shadow=*/true);
    out.shadow = ShadowResult{s.allowed, s.policy, s.rule};
  }
  if (impl_->rbac_config->enforcement_permissive) {
    out.allowed = true;
    out.reason = "RBAC enforcement_mode is PERMISSIVE: bindings are evaluated as shadow rules only";
    return out;
  }
  AlphaOutcome e = impl_->EvaluateAlpha(a, /*shadow=*/false);
  out.allowed = e.allowed;
  out.policy = std::move(e.policy);
  out.rule = std::move(e.rule);
  out.reason = std::move(e.reason);
  return out;
}

}  // namespace meshid::rbac
