#include "authz/authn_policies.h"

#include <algorithm>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace meshid::authz {

using rbac::CheckApiVersion;
using rbac::Diagnostic;
using rbac::FieldReader;
using rbac::IsDns1123Label;
using rbac::ObjectRef;
using rbac::ReadContext;
using rbac::ReadEnum;
using rbac::ReadWorkloadSelector;
using rbac::SourceDocument;

namespace {

const std::vector<std::string> kAuthnVersions = {"authentication.istio.io/v1alpha1"};
const std::vector<std::string> kSecurityVersions = {"security.istio.io/v1beta1", "security.istio.io/v1"};
const std::vector<std::string> kNetworkingVersions = {"networking.istio.io/v1alpha3", "networking.istio.io/v1beta1",
                                                      "networking.istio.io/v1"};

}  // namespace

const char* PeerModeName(PeerMode m) {
  switch (m) {
    case PeerMode::kUnset:
      return "UNSET";
    case PeerMode::kDisable:
      return "DISABLE";
    case PeerMode::kPermissive:
      return "PERMISSIVE";
    case PeerMode::kStrict:
      return "STRICT";
  }
  return "?";
}

const char* ClientTlsModeName(ClientTlsMode m) {
  switch (m) {
    case ClientTlsMode::kUnset:
      return "UNSET";
    case ClientTlsMode::kDisable:
      return "DISABLE";
    case ClientTlsMode::kSimple:
      return "SIMPLE";
    case ClientTlsMode::kMutual:
      return "MUTUAL";
    case ClientTlsMode::kIstioMutual:
      return "ISTIO_MUTUAL";
  }
  return "?";
}

std::optional<AuthnPolicy> ParseAuthnPolicy(const SourceDocument& doc, Diagnostics& diag) {
  if (!CheckApiVersion(doc, kAuthnVersions, diag)) return std::nullopt;
  const size_t before = diag.error_count();
  ReadContext ctx(doc, diag, 1 << 20);
  AuthnPolicy p;
  p.ref = ObjectRef::From(doc);
  FieldReader spec(ctx, doc.spec, "spec");
  size_t i = 0;
  for (const auto& tn : spec.List("targets")) {
    const std::string tpath = FieldReader::Index("spec.targets", i++);
    FieldReader tr(ctx, tn, tpath);
    TargetSelector t;
    t.name = tr.String("name").value_or("");
    if (!IsDns1123Label(t.name)) {
      ctx.Error(tn, tr.PathOf("name"), absl::StrCat("\"", t.name, "\" is not a valid service name (DNS-1123 label)"));
    }
    if (tr.Has("labels"))
      ctx.Error(tr.Node("labels"), tr.PathOf("labels"), "target labels are not implemented by Istio");
    size_t j = 0;
    for (const auto& pn : tr.List("ports")) {
      const std::string ppath = FieldReader::Index(tr.PathOf("ports"), j++);
      FieldReader pr(ctx, pn, ppath);
      PortSelector ps;
      auto number = pr.Int("number", 1, 65535);
      auto name = pr.String("name");
      if (number.has_value() == name.has_value()) {
        ctx.Error(pn, ppath, "exactly one of number or name must be set");
        continue;
      }
      if (number) ps.number = static_cast<uint32_t>(*number);
      if (name) ps.name = *name;
      t.ports.push_back(std::move(ps));
    }
    p.targets.push_back(std::move(t));
  }
  std::set<std::string> issuers;
  auto check_issuer = [&](const std::string& issuer, const YAML::Node& at, const std::string& path) {
    if (!issuers.insert(issuer).second) ctx.Error(at, path, absl::StrCat("duplicate issuer \"", issuer, "\""));
  };
  i = 0;
  for (const auto& pn : spec.List("peers")) {
    const std::string ppath = FieldReader::Index("spec.peers", i++);
    FieldReader pr(ctx, pn, ppath);
    YAML::Node mtls = pr.Node("mtls");
    YAML::Node jwt = pr.Node("jwt");
    if (mtls.IsDefined() == jwt.IsDefined()) {
      ctx.Error(pn, ppath, "exactly one of mtls or jwt must be set");
      continue;
    }
    PeerMethod m;
    if (mtls.IsDefined()) {
      FieldReader mr(ctx, mtls, pr.PathOf("mtls"));
      if (auto mode = ReadEnum(mr, "mode", {"STRICT", "PERMISSIVE"})) m.mode = static_cast<MtlsMode>(*mode);
      mr.Bool("allowTls");  // deprecated; accepted and unused, as in Istio 1.4
    } else {
      auto spec_jwt = ReadV1alpha1Jwt(ctx, jwt, pr.PathOf("jwt"));
      if (!spec_jwt) continue;
      check_issuer(spec_jwt->issuer, jwt, pr.PathOf("jwt.issuer"));
      m.is_mtls = false;
      m.jwt = std::move(*spec_jwt);
    }
    p.peers.push_back(std::move(m));
  }
  p.peer_is_optional = spec.Bool("peerIsOptional").value_or(false);
  i = 0;
  for (const auto& on : spec.List("origins")) {
    const std::string opath = FieldReader::Index("spec.origins", i++);
    FieldReader orr(ctx, on, opath);
    if (!orr.Has("jwt")) {
      ctx.Error(on, orr.PathOf("jwt"), "jwt must be set");
      continue;
    }
    auto j = ReadV1alpha1Jwt(ctx, orr.Node("jwt"), orr.PathOf("jwt"));
    if (!j) continue;
    check_issuer(j->issuer, orr.Node("jwt"), orr.PathOf("jwt.issuer"));
    p.origins.push_back(std::move(*j));
  }
  p.origin_is_optional = spec.Bool("originIsOptional").value_or(false);
  if (auto b = ReadEnum(spec, "principalBinding", {"USE_PEER", "USE_ORIGIN"})) {
    p.principal_binding = static_cast<PrincipalBinding>(*b);
  }
  if (p.is_mesh()) {
    if (doc.meta.name != "default") {
      ctx.ErrorAtLine(doc.line, "metadata.name",
                      absl::StrCat("MeshPolicy has to be named \"default\", not \"", doc.meta.name, "\""));
    }
    if (!p.targets.empty()) ctx.Error(spec.Node("targets"), "spec.targets", "MeshPolicy cannot have targets");
  } else {
    if (p.targets.empty() && doc.meta.name != "default") {
      ctx.ErrorAtLine(doc.line, "metadata.name",
                      absl::StrCat("a namespace-wide Policy (no targets) has to be named \"default\", not \"",
                                   doc.meta.name, "\""));
    }
    if (!p.targets.empty() && doc.meta.name == "default") {
      ctx.Error(spec.Node("targets"), "spec.targets",
                "the Policy named \"default\" is namespace-wide and cannot have targets");
    }
  }
  spec.Finish();
  if (diag.error_count() != before) return std::nullopt;
  return p;
}

std::optional<PeerAuthentication> ParsePeerAuthentication(const SourceDocument& doc, Diagnostics& diag) {
  if (!CheckApiVersion(doc, kSecurityVersions, diag)) return std::nullopt;
  const size_t before = diag.error_count();
  ReadContext ctx(doc, diag, 1 << 20);
  PeerAuthentication p;
  p.ref = ObjectRef::From(doc);
  FieldReader spec(ctx, doc.spec, "spec");
  p.selector = ReadWorkloadSelector(ctx, spec);
  const std::vector<std::string> modes = {"UNSET", "DISABLE", "PERMISSIVE", "STRICT"};
  if (spec.Has("mtls")) {
    FieldReader mr(ctx, spec.Node("mtls"), "spec.mtls");
    if (auto m = ReadEnum(mr, "mode", modes)) p.mode = static_cast<PeerMode>(*m);
  }
  YAML::Node ports = spec.Node("portLevelMtls");
  if (ports.IsDefined() && !ports.IsNull()) {
    if (!ports.IsMap()) {
      ctx.Error(ports, "spec.portLevelMtls", "must be a mapping from port number to mtls settings");
    } else {
      for (auto it = ports.begin(); it != ports.end(); ++it) {
        const std::string key = it->first.IsScalar() ? it->first.Scalar() : "";
        const std::string path = absl::StrCat("spec.portLevelMtls[", key, "]");
        uint32_t port = 0;
        if (!absl::SimpleAtoi(key, &port) || port == 0 || port > 65535) {
          ctx.Error(it->first, path, "port must be in the range 1..65535");
          continue;
        }
        FieldReader mr(ctx, it->second, path);
        PeerMode mode = PeerMode::kUnset;
        if (auto m = ReadEnum(mr, "mode", modes)) mode = static_cast<PeerMode>(*m);
        p.port_level[port] = mode;
      }
      if (!p.selector) ctx.Error(ports, "spec.portLevelMtls", "portLevelMtls requires a workload selector");
    }
  }
  spec.Finish();
  if (diag.error_count() != before) return std::nullopt;
  return p;
}

std::optional<RequestAuthentication> ParseRequestAuthentication(const SourceDocument& doc, Diagnostics& diag) {
  if (!CheckApiVersion(doc, kSecurityVersions, diag)) return std::nullopt;
  const size_t before = diag.error_count();
  ReadContext ctx(doc, diag, 1 << 20);
  RequestAuthentication p;
  p.ref = ObjectRef::From(doc);
  FieldReader spec(ctx, doc.spec, "spec");
  p.selector = ReadWorkloadSelector(ctx, spec);
  size_t i = 0;
  for (const auto& rn : spec.List("jwtRules")) {
    auto rule = ReadV1beta1JwtRule(ctx, rn, FieldReader::Index("spec.jwtRules", i++));
    if (rule) p.rules.push_back(std::move(*rule));
  }
  spec.Finish();
  if (diag.error_count() != before) return std::nullopt;
  return p;
}

ClientTlsMode TlsSettings::ModeForPort(uint32_t port) const {
  auto it = port_level.find(port);
  if (it != port_level.end()) return it->second.value_or(ClientTlsMode::kUnset);
  return mode.value_or(ClientTlsMode::kUnset);
}

namespace {

std::optional<ClientTlsMode> ReadTls(ReadContext& ctx, FieldReader& parent) {
  if (!parent.Has("tls")) return std::nullopt;
  FieldReader tr(ctx, parent.Node("tls"), parent.PathOf("tls"));
  tr.AllowUnknownKeys();  // certificates, SNI, SANs: not what tls-check compares
  auto m = ReadEnum(tr, "mode", {"DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"});
  if (!m) return ClientTlsMode::kDisable;  // DISABLE is the proto default
  return static_cast<ClientTlsMode>(*m + 1);
}

TlsSettings ReadTrafficPolicy(ReadContext& ctx, FieldReader& parent) {
  TlsSettings s;
  if (!parent.Has("trafficPolicy")) return s;
  FieldReader tp(ctx, parent.Node("trafficPolicy"), parent.PathOf("trafficPolicy"));
  tp.AllowUnknownKeys();  // loadBalancer, connectionPool, outlierDetection
  s.mode = ReadTls(ctx, tp);
  size_t i = 0;
  for (const auto& pn : tp.List("portLevelSettings")) {
    FieldReader pr(ctx, pn, FieldReader::Index(tp.PathOf("portLevelSettings"), i++));
    pr.AllowUnknownKeys();
    FieldReader port(ctx, pr.Node("port"), pr.PathOf("port"));
    auto number = port.Int("number", 1, 65535);
    if (!number) {
      ctx.Error(pn, pr.PathOf("port.number"), "required");
      continue;
    }
    s.port_level[static_cast<uint32_t>(*number)] = ReadTls(ctx, pr);
  }
  return s;
}

}  // namespace

std::optional<DestinationRule> ParseDestinationRule(const SourceDocument& doc, Diagnostics& diag) {
  if (!CheckApiVersion(doc, kNetworkingVersions, diag)) return std::nullopt;
  const size_t before = diag.error_count();
  ReadContext ctx(doc, diag, 1 << 20);
  DestinationRule dr;
  dr.ref = ObjectRef::From(doc);
  FieldReader spec(ctx, doc.spec, "spec");
  spec.AllowUnknownKeys();  // exportTo, workloadSelector
  dr.host = spec.String("host").value_or("");
  if (dr.host.empty()) ctx.Error(spec.node(), "spec.host", "host is required");
  dr.top = ReadTrafficPolicy(ctx, spec);
  size_t i = 0;
  for (const auto& sn : spec.List("subsets")) {
    FieldReader sr(ctx, sn, FieldReader::Index("spec.subsets", i++));
    sr.AllowUnknownKeys();  // labels
    const std::string name = sr.String("name").value_or("");
    if (name.empty()) {
      ctx.Error(sn, sr.PathOf("name"), "subset name is required");
      continue;
    }
    dr.subsets.emplace_back(name, ReadTrafficPolicy(ctx, sr));
  }
  if (diag.error_count() != before) return std::nullopt;
  return dr;
}

// ---- selection ----

bool SelectorMatches(const std::optional<std::map<std::string, std::string>>& selector,
                     const std::map<std::string, std::string>& labels) {
  if (!selector) return true;
  for (const auto& [k, v] : *selector) {
    auto it = labels.find(k);
    if (it == labels.end() || it->second != v) return false;
  }
  return true;
}

const AuthnPolicy* SelectAuthnPolicy(const std::vector<const AuthnPolicy*>& policies, absl::string_view service_name,
                                     absl::string_view service_namespace, uint32_t service_port,
                                     absl::string_view port_name) {
  std::vector<const AuthnPolicy*> sorted = policies;
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const AuthnPolicy* a, const AuthnPolicy* b) { return ObjectRef::Older(a->ref, b->ref); });
  const AuthnPolicy* port_match = nullptr;
  const AuthnPolicy* portless = nullptr;
  const AuthnPolicy* ns_default = nullptr;
  const AuthnPolicy* mesh = nullptr;
  for (const AuthnPolicy* p : sorted) {
    if (p->is_mesh()) {
      if (!mesh) mesh = p;
      continue;
    }
    if (p->ref.namespace_ != service_namespace) continue;
    if (p->targets.empty()) {
      if (!ns_default) ns_default = p;
      continue;
    }
    for (const auto& t : p->targets) {
      if (t.name != service_name) continue;
      if (t.ports.empty()) {
        if (!portless) portless = p;
        continue;
      }
      for (const auto& ps : t.ports) {
        const bool match = ps.number != 0 ? ps.number == service_port : (!port_name.empty() && ps.name == port_name);
        if (match && !port_match) port_match = p;
      }
    }
  }
  if (port_match) return port_match;
  if (portless) return portless;
  if (ns_default) return ns_default;
  return mesh;
}

PeerMode AlphaPolicyMode(const AuthnPolicy* policy) {
  if (!policy) return PeerMode::kDisable;
  for (const auto& m : policy->peers) {
    if (m.is_mtls) return m.mode == MtlsMode::kStrict ? PeerMode::kStrict : PeerMode::kPermissive;
  }
  return PeerMode::kDisable;
}

std::optional<ComposedPeerMode> ComposePeerAuthentication(const std::vector<const PeerAuthentication*>& policies,
                                                          absl::string_view ns,
                                                          const std::map<std::string, std::string>& labels,
                                                          uint32_t workload_port, absl::string_view root_namespace) {
  const PeerAuthentication* mesh = nullptr;
  const PeerAuthentication* namespace_level = nullptr;
  const PeerAuthentication* workload = nullptr;
  auto older = [](const PeerAuthentication* cur, const PeerAuthentication* cand) {
    return !cur || ObjectRef::Older(cand->ref, cur->ref);
  };
  for (const PeerAuthentication* p : policies) {
    const bool in_root = p->ref.namespace_ == root_namespace;
    if (!p->selector) {
      if (in_root && older(mesh, p)) mesh = p;
      if (!in_root && p->ref.namespace_ == ns && older(namespace_level, p)) namespace_level = p;
    } else if (!in_root && p->ref.namespace_ == ns && SelectorMatches(p->selector, labels) && older(workload, p)) {
      workload = p;
    }
  }
  // In the root namespace itself the namespace-level policy is the mesh-level one.
  if (!mesh && !namespace_level && !workload) return std::nullopt;
  ComposedPeerMode out;
  for (const PeerAuthentication* p : {mesh, namespace_level, workload}) {
    if (p && p->mode != PeerMode::kUnset) {
      out.mode = p->mode;
      out.deciding = p;
    }
  }
  if (workload) {
    auto it = workload->port_level.find(workload_port);
    if (it != workload->port_level.end() && it->second != PeerMode::kUnset) {
      out.mode = it->second;
      out.deciding = workload;
    }
  }
  if (!out.deciding) out.deciding = workload ? workload : (namespace_level ? namespace_level : mesh);
  return out;
}

}  // namespace meshid::authz
