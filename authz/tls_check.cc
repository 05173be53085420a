#include "authz/tls_check.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace meshid::authz {

std::string EvaluateTlsState(PeerMode server, ClientTlsMode client, bool auto_mtls) {
  switch (client) {
    case ClientTlsMode::kUnset:
      return auto_mtls ? "AUTO" : "OK";
    case ClientTlsMode::kDisable:
      return server == PeerMode::kStrict ? "CONFLICT" : "OK";
    case ClientTlsMode::kSimple:
    case ClientTlsMode::kMutual:
      return "CONFLICT";
    case ClientTlsMode::kIstioMutual:
      return server == PeerMode::kDisable ? "CONFLICT" : "OK";
  }
  return "CONFLICT";
}

namespace {

// A DestinationRule host as pilot resolves it: a name without dots is relative to the rule's
// namespace; "*" and "*.suffix" are wildcards.
std::string ResolveHost(const DestinationRule& dr, const std::string& domain_suffix) {
  if (dr.host == "*" || absl::StrContains(dr.host, ".")) return dr.host;
  return absl::StrCat(dr.host, ".", dr.ref.namespace_, ".svc.", domain_suffix);
}

// 0 = no match; otherwise higher is more specific (exact beats any wildcard, longer wildcard
// beats shorter).
size_t HostMatch(const std::string& rule_host, const std::string& service_host) {
  if (rule_host == service_host) return 1 << 20;
  if (rule_host == "*") return 1;
  if (absl::StartsWith(rule_host, "*.") && absl::EndsWith(service_host, rule_host.substr(1))) return rule_host.size();
  return 0;
}

std::string DomainOf(const rbac::Service& s) {
  // hostname = <name>.<ns>.svc.<domain>
  const std::string prefix = absl::StrCat(s.ref.name, ".", s.ref.namespace_, ".svc.");
  return absl::StartsWith(s.hostname, prefix) ? s.hostname.substr(prefix.size()) : "cluster.local";
}

// The rule visible for the service: the service's namespace first, then the root namespace,
// then any other (rules are exported mesh-wide by default); most specific host, then oldest.
const DestinationRule* FindDestinationRule(const PolicySet& set, const rbac::Service& svc, const std::string& root) {
  const std::string domain = DomainOf(svc);
  const DestinationRule* best = nullptr;
  int best_scope = 0;
  size_t best_match = 0;
  for (const auto& dr : set.destination_rules) {
    size_t m = HostMatch(ResolveHost(dr, domain), svc.hostname);
    if (m == 0) continue;
    const int scope = dr.ref.namespace_ == svc.ref.namespace_ ? 3 : (dr.ref.namespace_ == root ? 2 : 1);
    const bool better = !best || scope > best_scope || (scope == best_scope && m > best_match) ||
                        (scope == best_scope && m == best_match && rbac::ObjectRef::Older(dr.ref, best->ref));
    if (better) {
      best = &dr;
      best_scope = scope;
      best_match = m;
    }
  }
  return best;
}

TlsCheckRow MakeRow(const std::string& host, uint32_t port, PeerMode server, const std::string& authn_name,
                    ClientTlsMode client, const DestinationRule* dr, bool auto_mtls) {
  TlsCheckRow row;
  row.host = host;
  row.port = port;
  row.server = PeerModeName(server);
  row.status = EvaluateTlsState(server, client, auto_mtls);
  row.authn_policy = authn_name.empty() ? "None" : authn_name;
  if (client == ClientTlsMode::kUnset) {
    row.client = auto_mtls ? "-" : "None";
    row.destination_rule = auto_mtls ? "-" : (dr ? dr->ref.Id() : "None");
  } else {
    row.client = ClientTlsModeName(client);
    row.destination_rule = dr->ref.Id();
  }
  return row;
}

}  // namespace

std::vector<TlsCheckRow> ComputeTlsCheck(const PolicySet& set, const TlsCheckOptions& options) {
  std::vector<const AuthnPolicy*> alpha;
  for (const auto& p : set.authn) alpha.push_back(&p);
  std::vector<const PeerAuthentication*> beta;
  for (const auto& p : set.peer_authn) beta.push_back(&p);
  std::vector<TlsCheckRow> rows;
  for (const auto& svc : set.rbac.services) {
    const DestinationRule* dr = FindDestinationRule(set, svc, options.root_namespace);
    for (const auto& port : svc.ports) {
      PeerMode server;
      std::string authn_name;
      const uint32_t workload_port = port.target_port != 0 ? port.target_port : port.port;
      auto composed =
          ComposePeerAuthentication(beta, svc.ref.namespace_, svc.selector, workload_port, options.root_namespace);
      if (composed) {
        server = composed->mode;
        authn_name = composed->deciding ? composed->deciding->ref.Id() : "";
      } else {
        // istioctl 1.5: only the alpha Policy; no policy → DISABLE, shown as "None".
        const AuthnPolicy* p = SelectAuthnPolicy(alpha, svc.ref.name, svc.ref.namespace_, port.port, port.name);
        server = AlphaPolicyMode(p);
        if (p) authn_name = p->DisplayName();
      }
      const ClientTlsMode client = dr ? dr->top.ModeForPort(port.port) : ClientTlsMode::kUnset;
      rows.push_back(MakeRow(svc.hostname, port.port, server, authn_name, client, dr, options.auto_mtls));
      if (dr) {
        // Subsets do not inherit the top-level TLS settings (istioctl 1.4/1.5).
        for (const auto& [name, tls] : dr->subsets) {
          rows.push_back(MakeRow(absl::StrCat(svc.hostname, "|", name), port.port, server, authn_name,
                                 tls.ModeForPort(port.port), dr, options.auto_mtls));
        }
      }
    }
  }
  std::sort(rows.begin(), rows.end(), [](const TlsCheckRow& a, const TlsCheckRow& b) {
    return a.host != b.host ? a.host < b.host : a.port < b.port;
  });
  return rows;
}

absl::StatusOr<std::vector<TlsCheckRow>> FilterTlsCheck(const std::vector<TlsCheckRow>& rows,
                                                        const std::string& filter) {
  std::string host = filter;
  std::optional<uint32_t> port;
  size_t colon = filter.rfind(':');
  if (colon != std::string::npos) {
    uint32_t p = 0;
    if (!absl::SimpleAtoi(filter.substr(colon + 1), &p) || p == 0 || p > 65535) {
      return absl::InvalidArgumentError(absl::StrCat("\"", filter, "\" is not HOST or HOST:PORT"));
    }
    host = filter.substr(0, colon);
    port = p;
  }
  std::vector<TlsCheckRow> out;
  for (const auto& r : rows) {
    const bool host_ok = r.host == host || (absl::StartsWith(r.host, host + "|") && !absl::StrContains(host, "|"));
    if (host_ok && (!port || r.port == *port)) out.push_back(r);
  }
  return out;
}

std::string FormatTlsCheckTable(const std::vector<TlsCheckRow>& rows) {
  // Go's text/tabwriter(minwidth 0, tabwidth 8, padding 5, ' ', 0): every cell but the last
  // of a line is padded to its column's widest cell plus 5.
  std::vector<std::vector<std::string>> lines;
  lines.push_back({"HOST:PORT", "STATUS", "SERVER", "CLIENT", "AUTHN POLICY", "DESTINATION RULE"});
  for (const auto& r : rows) {
    lines.push_back(
        {absl::StrCat(r.host, ":", r.port), r.status, r.server, r.client, r.authn_policy, r.destination_rule});
  }
  std::vector<size_t> width(5, 0);
  for (const auto& l : lines)
    for (size_t i = 0; i < 5; ++i) width[i] = std::max(width[i], l[i].size() + 5);
  std::string out;
  for (const auto& l : lines) {
    for (size_t i = 0; i < 5; ++i) {
      out += l[i];
      out.append(width[i] - l[i].size(), ' ');
    }
    out += l[5];
    out += "\n";
  }
  return out;
}

std::string FormatTlsCheckJson(const std::vector<TlsCheckRow>& rows) {
  nlohmann::ordered_json arr = nlohmann::ordered_json::array();
  for (const auto& r : rows) {
    nlohmann::ordered_json j;
    j["host"] = r.host;
    j["port"] = r.port;
    j["authentication_policy_name"] = r.authn_policy;
    j["destination_rule_name"] = r.destination_rule;
    j["server_protocol"] = r.server;
    j["client_protocol"] = r.client;
    j["TLS_conflict_status"] = r.status;
    arr.push_back(std::move(j));
  }
  return arr.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

}  // namespace meshid::authz
