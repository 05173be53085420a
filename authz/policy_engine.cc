#include "authz/policy_engine.h"

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "authz/jwt_auth.h"
#include "rbac/match.h"

namespace meshid::authz {

using rbac::Protocol;
using rbac::RequestAttributes;

namespace {

struct CompiledAlphaPolicy {
  const AuthnPolicy* policy = nullptr;
  std::vector<std::unique_ptr<JwtProvider>> peer_jwts;  // parallel to policy->peers (null for mtls)
  std::vector<std::unique_ptr<JwtProvider>> origins;
};

struct CompiledRequestAuthn {
  const RequestAuthentication* policy = nullptr;
  std::vector<std::unique_ptr<JwtProvider>> rules;
};

// Result of authentication: either a failure decision or the authenticated attributes.
struct AuthnFailure {
  int status;
  std::string policy;
  std::string rule;
  std::string reason;
};

std::string TrustDomainOf(absl::string_view principal) {
  principal = rbac::StripSpiffeScheme(principal);
  return std::string(principal.substr(0, principal.find('/')));
}

bool IsCorsPreflight(const RequestAttributes& a) {
  return a.method == "OPTIONS" && a.Header("origin") != nullptr && a.Header("access-control-request-method") != nullptr;
}

}  // namespace

struct PolicyEngine::Impl {
  explicit Impl(const Clock& c) : clock(c) {}
  const Clock& clock;
  PolicySet set;
  PolicyEngineOptions options;
  std::unique_ptr<const rbac::RbacEngine> rbac;
  std::vector<std::string> warnings;
  absl::flat_hash_map<std::string, const rbac::Service*> services;  // hostname → Service
  std::vector<const AuthnPolicy*> alpha_all;
  // namespace → its policies plus the MeshPolicy ("" → the MeshPolicy alone)
  absl::flat_hash_map<std::string, std::vector<const AuthnPolicy*>> alpha_by_ns;
  absl::flat_hash_map<const AuthnPolicy*, CompiledAlphaPolicy> alpha;
  absl::flat_hash_map<std::string, std::vector<const PeerAuthentication*>> peer_by_ns;  // ns → own + root policies
  std::vector<CompiledRequestAuthn> request_authn;                                      // sorted by age

  std::optional<AuthnFailure> Authenticate(RequestAttributes& a, const std::string& raw_peer,
                                           const std::string& destination_principal) const;
};

PolicyEngine::PolicyEngine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PolicyEngine::~PolicyEngine() = default;

const PolicySet& PolicyEngine::policies() const { return impl_->set; }
const std::vector<std::string>& PolicyEngine::warnings() const { return impl_->warnings; }

absl::StatusOr<std::shared_ptr<const PolicyEngine>> PolicyEngine::Create(PolicySet set, const Clock& clock,
                                                                         PolicyEngineOptions options) {
  auto impl = std::make_unique<Impl>(clock);
  impl->set = std::move(set);
  impl->options = std::move(options);
  if (!impl->options.jwks_fetcher) impl->options.jwks_fetcher = std::make_shared<DefaultJwksFetcher>();
  rbac::RbacEngineOptions rbac_options;
  rbac_options.root_namespace = impl->options.root_namespace;
  rbac_options.custom = impl->options.custom;
  auto rbac = rbac::RbacEngine::Create(impl->set.rbac, rbac_options);
  if (!rbac.ok()) return rbac.status();
  impl->rbac = std::move(*rbac);

  for (const auto& s : impl->set.rbac.services) impl->services[s.hostname] = &s;

  // Key sets are shared between rules naming the same source, so each is fetched once.
  const JwksFetcher& fetcher = *impl->options.jwks_fetcher;
  auto make_provider = [&](const JwtRuleSpec& spec,
                           const std::string& where) -> absl::StatusOr<std::unique_ptr<JwtProvider>> {
    auto p = JwtProvider::Create(spec, fetcher);
    if (!p.ok()) return absl::InvalidArgumentError(absl::StrCat(where, ": ", p.status().message()));
    if (!(*p)->jwks_status().ok()) {
      impl->warnings.push_back(
          absl::StrCat(where, ": key set for issuer \"", spec.issuer,
                       "\" unavailable, its tokens will be rejected: ", (*p)->jwks_status().message()));
    }
    return p;
  };
  for (const auto& p : impl->set.authn) {
    CompiledAlphaPolicy c;
    c.policy = &p;
    const std::string where = absl::StrCat(p.ref.kind, " ", p.DisplayName());
    for (const auto& m : p.peers) {
      if (m.jwt) {
        auto provider = make_provider(*m.jwt, where);
        if (!provider.ok()) return provider.status();
        c.peer_jwts.push_back(std::move(*provider));
      } else {
        c.peer_jwts.push_back(nullptr);
      }
    }
    for (const auto& o : p.origins) {
      auto provider = make_provider(o, where);
      if (!provider.ok()) return provider.status();
      c.origins.push_back(std::move(*provider));
    }
    impl->alpha.emplace(&p, std::move(c));
    impl->alpha_all.push_back(&p);
  }
  for (const AuthnPolicy* p : impl->alpha_all) {
    if (p->is_mesh()) continue;
    impl->alpha_by_ns[p->ref.namespace_].push_back(p);
  }
  for (const AuthnPolicy* p : impl->alpha_all) {
    if (!p->is_mesh()) continue;
    for (auto& [ns, list] : impl->alpha_by_ns) list.push_back(p);
    impl->alpha_by_ns[""].push_back(p);  // namespaces without policies of their own
  }
  const std::string& root = impl->options.root_namespace;
  for (const auto& p : impl->set.peer_authn) impl->peer_by_ns[p.ref.namespace_].push_back(&p);
  if (auto it = impl->peer_by_ns.find(root); it != impl->peer_by_ns.end()) {
    std::vector<const PeerAuthentication*> root_policies = it->second;
    for (auto& [ns, list] : impl->peer_by_ns) {
      if (ns != root) list.insert(list.end(), root_policies.begin(), root_policies.end());
    }
  }
  std::vector<const RequestAuthentication*> ras;
  for (const auto& p : impl->set.request_authn) ras.push_back(&p);
  std::stable_sort(ras.begin(), ras.end(), [](auto* a, auto* b) { return rbac::ObjectRef::Older(a->ref, b->ref); });
  for (const auto* p : ras) {
    CompiledRequestAuthn c;
    c.policy = p;
    for (const auto& r : p->rules) {
      auto provider = make_provider(r, absl::StrCat("RequestAuthentication ", p->ref.Id()));
      if (!provider.ok()) return provider.status();
      c.rules.push_back(std::move(*provider));
    }
    impl->request_authn.push_back(std::move(c));
  }
  return std::shared_ptr<const PolicyEngine>(new PolicyEngine(std::move(impl)));
}

absl::StatusOr<RequestAttributes> PolicyEngine::Attributes(const RequestInput& in) const {
  RequestAttributes a;
  a.protocol = in.protocol;
  if (in.destination_service.empty()) return absl::InvalidArgumentError("destination.service is required");
  a.destination_service = absl::AsciiStrToLower(in.destination_service);
  const absl::string_view fqdn(a.destination_service);
  const size_t dot = fqdn.find('.');
  a.destination_name = std::string(fqdn.substr(0, dot));
  a.destination_namespace = in.destination_namespace;
  if (a.destination_namespace.empty()) {
    const absl::string_view rest = dot == absl::string_view::npos ? absl::string_view() : fqdn.substr(dot + 1);
    a.destination_namespace = std::string(rest.substr(0, rest.find('.')));
    if (a.destination_namespace.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("destination.namespace is required: \"", a.destination_service,
                                                     "\" is not <name>.<namespace>..."));
    }
  }
  if (a.destination_name.empty()) return absl::InvalidArgumentError("destination.service has an empty name");
  // Pods behind a Service carry at least its selector labels; the request's labels add to them.
  if (auto it = impl_->services.find(a.destination_service); it != impl_->services.end()) {
    a.destination_labels = it->second->selector;
  }
  for (const auto& [k, v] : in.destination_labels) a.destination_labels[k] = v;
  if (!in.destination_ip.empty()) {
    a.destination_ip = rbac::IpAddress::Parse(in.destination_ip);
    if (!a.destination_ip)
      return absl::InvalidArgumentError(
          absl::StrCat("destination.ip \"", in.destination_ip, "\" is not an IP address"));
  }
  if (in.destination_port > 65535) return absl::InvalidArgumentError("destination.port is above 65535");
  a.destination_port = in.destination_port;
  a.destination_user = rbac::ServiceAccountFromPrincipal(rbac::StripSpiffeScheme(in.destination_principal));
  a.mtls = in.mtls.value_or(!in.source_principal.empty());
  if (!a.mtls && !in.source_principal.empty()) {
    return absl::InvalidArgumentError(
        "source.principal is set but connection.mtls is false: a plaintext peer has no verified identity");
  }
  if (!in.source_ip.empty()) {
    a.source_ip = rbac::IpAddress::Parse(in.source_ip);
    if (!a.source_ip)
      return absl::InvalidArgumentError(absl::StrCat("source.ip \"", in.source_ip, "\" is not an IP address"));
  }
  a.sni = in.sni;
  if (in.protocol == Protocol::kTcp) {
    if (!in.method.empty() || !in.path.empty() || !in.host.empty() || !in.headers.empty()) {
      return absl::InvalidArgumentError("request method, path, host and headers are HTTP-only; protocol is tcp");
    }
    return a;
  }
  if (in.method.empty()) return absl::InvalidArgumentError("request.method is required for http");
  for (char c : in.method) {  // RFC 9110 token characters
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && !absl::StrContains("!#$%&'*+-.^_`|~", c)) {
      return absl::InvalidArgumentError(absl::StrCat("request.method \"", in.method, "\" is not an HTTP method token"));
    }
  }
  a.method = in.method;
  if (in.path.empty()) return absl::InvalidArgumentError("request.path is required for http");
  auto target = rbac::SplitRequestTarget(in.path);
  auto path = rbac::NormalizePath(target.path);
  if (!path.ok()) return absl::InvalidArgumentError(absl::StrCat("request.path: ", path.status().message()));
  a.path = std::move(*path);
  a.query = std::move(target.query);
  a.headers = in.headers;
  a.CanonicalizeHeaders();
  a.host = in.host;
  if (a.host.empty()) {
    if (const std::string* h = a.Header(":authority"))
      a.host = *h;
    else if (const std::string* h2 = a.Header("host"))
      a.host = *h2;
  }
  return a;
}

std::optional<AuthnFailure> PolicyEngine::Impl::Authenticate(RequestAttributes& a, const std::string& raw_peer,
                                                             const std::string& destination_principal) const {
  const bool http = a.protocol == Protocol::kHttp;
  // The service port for v1alpha1 port selectors: the Service port whose target is this
  // workload port (the port itself when no Service declares it).
  uint32_t service_port = a.destination_port;
  std::string port_name;
  if (auto it = services.find(a.destination_service); !alpha_by_ns.empty() && it != services.end()) {
    if (const auto* sp = it->second->PortForWorkloadPort(a.destination_port)) {
      service_port = sp->port;
      port_name = sp->name;
    }
  }
  const AuthnPolicy* alpha_policy = nullptr;
  if (!alpha_by_ns.empty()) {
    auto alpha_it = alpha_by_ns.find(a.destination_namespace);
    if (alpha_it == alpha_by_ns.end()) alpha_it = alpha_by_ns.find("");
    if (alpha_it != alpha_by_ns.end()) {
      alpha_policy =
          SelectAuthnPolicy(alpha_it->second, a.destination_name, a.destination_namespace, service_port, port_name);
    }
  }

  std::optional<ComposedPeerMode> beta;
  if (!peer_by_ns.empty()) {
    auto it = peer_by_ns.find(a.destination_namespace);
    if (it == peer_by_ns.end()) it = peer_by_ns.find(options.root_namespace);
    if (it != peer_by_ns.end()) {
      beta = ComposePeerAuthentication(it->second, a.destination_namespace, a.destination_labels, a.destination_port,
                                       options.root_namespace);
    }
  }

  // ---- peer (mTLS) ----
  std::string identity;
  const bool has_cert = a.mtls && !raw_peer.empty();
  auto mode_failure = [&](const std::string& policy, const std::string& rule) -> AuthnFailure {
    if (http) return {401, policy, rule, "Peer authentication failed. (mTLS STRICT: the connection is not mutual TLS)"};
    return {403, policy, rule, "connection closed: mTLS STRICT requires a client certificate"};
  };
  if (beta) {
    const std::string pid = beta->deciding ? beta->deciding->ref.Id() : "";
    if (beta->mode == PeerMode::kStrict && !a.mtls) return mode_failure(pid, "mtls");
    if (beta->mode != PeerMode::kDisable && has_cert) identity = raw_peer;
  } else if (alpha_policy && !http) {
    // TCP: only the listener's TLS mode applies (the authn filter is HTTP-only).
    PeerMode mode = AlphaPolicyMode(alpha_policy);
    if (mode == PeerMode::kStrict && !a.mtls) return mode_failure(alpha_policy->DisplayName(), "peers");
    if (mode != PeerMode::kDisable && has_cert) identity = raw_peer;
  } else if (alpha_policy) {
    const CompiledAlphaPolicy& c = alpha.at(alpha_policy);
    bool success = alpha_policy->peers.empty();
    std::string why;
    std::string local_td = options.trust_domain;
    if (local_td.empty() && !destination_principal.empty()) local_td = TrustDomainOf(destination_principal);
    for (size_t i = 0; i < alpha_policy->peers.size() && !success; ++i) {
      const PeerMethod& m = alpha_policy->peers[i];
      if (m.is_mtls) {
        if (has_cert) {
          if (!local_td.empty() && TrustDomainOf(raw_peer) != local_td) {
            why = absl::StrCat("peer trust domain \"", TrustDomainOf(raw_peer), "\" is not \"", local_td, "\"");
            continue;
          }
          identity = raw_peer;
          success = true;
        } else if (m.mode == MtlsMode::kPermissive) {
          success = true;
        } else {
          why = "mTLS STRICT: the connection is not mutual TLS";
        }
      } else {
        const JwtProvider& p = *c.peer_jwts[i];
        for (const auto& token : p.Extract(a)) {
          auto v = p.Verify(token, clock.Now());
          if (v.ok()) {
            identity = v->principal;
            success = true;
            break;
          }
          why = std::string(v.status().message());
        }
        if (!success && why.empty()) why = "Jwt is missing";
      }
    }
    if (!success && !alpha_policy->peer_is_optional) {
      return AuthnFailure{401, alpha_policy->DisplayName(), "peers",
                          absl::StrCat("Peer authentication failed. (", why, ")")};
    }
  } else if (has_cert) {
    identity = raw_peer;  // Istio 1.5 with no authentication policy at all: PERMISSIVE
  }
  a.source_principal = std::move(identity);
  a.source_namespace = rbac::NamespaceFromPrincipal(a.source_principal);
  if (!http) return std::nullopt;

  // ---- request (JWT) ----
  std::vector<const CompiledRequestAuthn*> ras;
  for (const auto& ra : request_authn) {
    const auto& ref = ra.policy->ref;
    const bool scope = ref.namespace_ == a.destination_namespace || ref.namespace_ == options.root_namespace;
    if (!scope) continue;
    // Selectors in the root namespace select workloads mesh-wide, as for AuthorizationPolicy.
    if (SelectorMatches(ra.policy->selector, a.destination_labels)) ras.push_back(&ra);
  }
  if (!ras.empty()) {
    if (IsCorsPreflight(a)) return std::nullopt;
    bool any_token = false;
    std::string why;
    const CompiledRequestAuthn* failed_policy = nullptr;
    for (const auto* ra : ras) {
      for (const auto& p : ra->rules) {
        for (const auto& token : p->Extract(a)) {
          any_token = true;
          auto v = p->Verify(token, clock.Now());
          if (v.ok()) {
            ApplyToken(*v, a);
            return std::nullopt;
          }
          // Prefer the explanation from the rule whose issuer matches the token.
          if (why.empty() || !absl::StartsWith(v.status().message(), "Jwt issuer is not configured")) {
            why = std::string(v.status().message());
            failed_policy = ra;
          }
        }
      }
    }
    if (any_token) {
      return AuthnFailure{401, failed_policy ? failed_policy->policy->ref.Id() : "", "jwtRules", why};
    }
    return std::nullopt;  // a missing token passes; an ALLOW policy can require requestPrincipals
  }
  if (!alpha_policy) return std::nullopt;
  const CompiledAlphaPolicy& c = alpha.at(alpha_policy);
  bool origin_ok = true;
  std::optional<VerifiedToken> origin;
  std::string why;
  if (alpha_policy->origins.empty()) {
    if (alpha_policy->principal_binding == PrincipalBinding::kUseOrigin) {
      origin_ok = false;
      why = "principal_binding is USE_ORIGIN but the policy has no origins";
    }
  } else if (!IsCorsPreflight(a)) {
    bool triggered = false;
    for (const auto& p : c.origins) {
      if (!p->Triggered(a.path)) continue;
      triggered = true;
      for (const auto& token : p->Extract(a)) {
        auto v = p->Verify(token, clock.Now());
        if (v.ok()) {
          origin = std::move(*v);
          break;
        }
        why = std::string(v.status().message());
      }
      if (origin) break;
    }
    if (triggered && !origin) {
      origin_ok = false;
      if (why.empty()) why = "Jwt is missing";
    }
  }
  if (!origin_ok && !alpha_policy->origin_is_optional) {
    return AuthnFailure{401, alpha_policy->DisplayName(), "origins",
                        absl::StrCat("Origin authentication failed. (", why, ")")};
  }
  if (origin) ApplyToken(*origin, a);
  a.request_principal = alpha_policy->principal_binding == PrincipalBinding::kUseOrigin
                            ? (origin ? origin->principal : "")
                            : a.source_principal;
  return std::nullopt;
}

absl::StatusOr<Decision> PolicyEngine::Check(const RequestInput& in) const {
  auto attrs = Attributes(in);
  if (!attrs.ok()) return attrs.status();
  const std::string raw_peer(rbac::StripSpiffeScheme(in.source_principal));
  Decision d;
  if (auto failure = impl_->Authenticate(*attrs, raw_peer, in.destination_principal)) {
    d.allowed = false;
    d.status = failure->status;
    d.policy = std::move(failure->policy);
    d.rule = std::move(failure->rule);
    d.reason = std::move(failure->reason);
    return d;
  }
  auto result = impl_->rbac->Evaluate(*attrs);
  if (!result.ok()) return result.status();
  d.allowed = result->allowed;
  d.status = result->allowed ? 200 : 403;
  d.policy = std::move(result->policy);
  d.rule = std::move(result->rule);
  d.reason = std::move(result->reason);
  d.shadow = std::move(result->shadow);
  d.source_principal = std::move(attrs->source_principal);
  d.request_principal = std::move(attrs->request_principal);
  return d;
}

}  // namespace meshid::authz
