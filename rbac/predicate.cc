#include "rbac/predicate.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace meshid::rbac {

bool IsHttpOnly(Attr attr) {
  switch (attr) {
    case Attr::kRequestPrincipal:
    case Attr::kAudience:
    case Attr::kPresenter:
    case Attr::kClaim:
    case Attr::kHeader:
    case Attr::kMethod:
    case Attr::kPath:
    case Attr::kHost:
      return true;
    default:
      return false;
  }
}

namespace {

const std::string* NonEmpty(const std::string& s) { return s.empty() ? nullptr : &s; }

bool AnyString(const std::vector<StringMatcher>& ms, const std::string* v) {
  for (const auto& m : ms)
    if (m.Matches(v)) return true;
  return false;
}

bool AnyCidr(const std::vector<Cidr>& cidrs, const std::optional<IpAddress>& ip) {
  if (!ip) return false;
  for (const auto& c : cidrs)
    if (c.Contains(*ip)) return true;
  return false;
}

bool RawMatches(const Predicate& p, const RequestAttributes& a) {
  switch (p.attr) {
    case Attr::kSourcePrincipal:
      return AnyString(p.strings, NonEmpty(a.source_principal));
    case Attr::kSourceNamespace:
      return AnyString(p.strings, NonEmpty(a.source_namespace));
    case Attr::kSourceIp:
      return AnyCidr(p.cidrs, a.source_ip);
    case Attr::kDestinationIp:
      return AnyCidr(p.cidrs, a.destination_ip);
    case Attr::kDestinationPort:
      for (uint32_t port : p.ports)
        if (port == a.destination_port) return true;
      return false;
    case Attr::kRequestPrincipal:
      return AnyString(p.strings, NonEmpty(a.request_principal));
    case Attr::kAudience:
      return AnyString(p.strings, NonEmpty(a.audience));
    case Attr::kPresenter:
      return AnyString(p.strings, NonEmpty(a.presenter));
    case Attr::kClaim: {
      auto it = a.claims.find(p.key);
      if (it == a.claims.end()) {
        for (const auto& m : p.strings)
          if (m.kind() == StringMatcher::Kind::kAny) return true;
        return false;
      }
      for (const auto& v : it->second)
        if (AnyString(p.strings, &v)) return true;
      return false;
    }
    case Attr::kHeader:
      return AnyString(p.strings, a.Header(p.key));
    case Attr::kMethod:
      return AnyString(p.strings, NonEmpty(a.method));
    case Attr::kPath:
      return AnyString(p.strings, NonEmpty(a.path));
    case Attr::kHost:
      return AnyString(p.strings, NonEmpty(a.host));
    case Attr::kSni:
      return AnyString(p.strings, NonEmpty(a.sni));
    case Attr::kDestinationService:
      return AnyString(p.strings, NonEmpty(a.destination_service));
    case Attr::kDestinationName:
      return AnyString(p.strings, NonEmpty(a.destination_name));
    case Attr::kDestinationNamespace:
      return AnyString(p.strings, NonEmpty(a.destination_namespace));
    case Attr::kDestinationUser:
      return AnyString(p.strings, NonEmpty(a.destination_user));
    case Attr::kDestinationLabel: {
      auto it = a.destination_labels.find(p.key);
      return AnyString(p.strings, it == a.destination_labels.end() ? nullptr : &it->second);
    }
  }
  return false;
}

}  // namespace

bool Predicate::Matches(const RequestAttributes& a) const { return RawMatches(*this, a) != negate; }

bool Conjunction::http_only() const {
  for (const auto& p : all)
    if (p.http_only()) return true;
  return false;
}

Conjunction Conjunction::WithoutHttpOnly() const {
  Conjunction out;
  for (const auto& p : all)
    if (!p.http_only()) out.all.push_back(p);
  return out;
}

Predicate StringPredicate(Attr attr, std::string key, const std::vector<std::string>& values, bool negate,
                          Wildcard wildcard) {
  Predicate p;
  p.attr = attr;
  p.key = std::move(key);
  p.negate = negate;
  // Host names compare case-insensitively (DNS; Istio fixed the case-sensitive match as
  // CVE-2021-39155 — a DENY on "Admin.example.com" must not be bypassed by "admin...").
  const bool ignore_case = attr == Attr::kHost;
  for (const auto& v : values) {
    if (v == "*" && wildcard == Wildcard::kAnyone) {
      p.strings.push_back(StringMatcher::Any());
    } else {
      p.strings.push_back(StringMatcher::FromPattern(v, ignore_case));
    }
  }
  return p;
}

bool ParseBracketKey(absl::string_view key, absl::string_view prefix, std::string* inner) {
  if (!absl::StartsWith(key, prefix) || key.size() < prefix.size() + 3) return false;
  absl::string_view rest = key.substr(prefix.size());
  if (rest.front() != '[' || rest.back() != ']') return false;
  rest = rest.substr(1, rest.size() - 2);
  if (rest.empty() || absl::StrContains(rest, "[") || absl::StrContains(rest, "]")) return false;
  *inner = std::string(rest);
  return true;
}

absl::StatusOr<Predicate> ConditionPredicate(absl::string_view key, const std::vector<std::string>& values, bool negate,
                                             bool v1alpha1) {
  std::string inner;
  auto strings = [&](Attr attr, std::string k = "", Wildcard w = Wildcard::kPresence) -> absl::StatusOr<Predicate> {
    return StringPredicate(attr, std::move(k), values, negate, w);
  };
  auto cidrs = [&](Attr attr) -> absl::StatusOr<Predicate> {
    Predicate p;
    p.attr = attr;
    p.negate = negate;
    for (const auto& v : values) {
      auto c = Cidr::Parse(v);
      if (!c.ok()) return c.status();
      p.cidrs.push_back(*c);
    }
    return p;
  };
  if (key == "source.ip" || key == "remote.ip") {
    // remote.ip is the client address derived from X-Forwarded-For / PROXY protocol; with no
    // trusted proxies configured (Istio's default numTrustedProxies: 0) it is the peer address.
    if (key == "remote.ip" && v1alpha1) return absl::InvalidArgumentError("remote.ip is not a v1alpha1 key");
    return cidrs(Attr::kSourceIp);
  }
  if (key == "destination.ip") return cidrs(Attr::kDestinationIp);
  if (key == "destination.port") {
    Predicate p;
    p.attr = Attr::kDestinationPort;
    p.negate = negate;
    for (const auto& v : values) {
      uint32_t port = 0;
      if (!absl::SimpleAtoi(v, &port) || port > 65535) {
        return absl::InvalidArgumentError(absl::StrCat("\"", v, "\" is not a port number (0-65535)"));
      }
      p.ports.push_back(port);
    }
    return p;
  }
  if (key == "source.namespace") return strings(Attr::kSourceNamespace);
  if (key == "source.principal") {
    return strings(Attr::kSourcePrincipal, "", v1alpha1 ? Wildcard::kAnyone : Wildcard::kPresence);
  }
  if (key == "request.auth.principal") return strings(Attr::kRequestPrincipal);
  if (key == "request.auth.audiences") return strings(Attr::kAudience);
  if (key == "request.auth.presenter") return strings(Attr::kPresenter);
  if (key == "connection.sni") return strings(Attr::kSni);
  if (ParseBracketKey(key, "request.auth.claims", &inner)) return strings(Attr::kClaim, inner);
  if (ParseBracketKey(key, "request.headers", &inner)) {
    absl::AsciiStrToLower(&inner);
    return strings(Attr::kHeader, inner);
  }
  const bool destination_config_key = key == "destination.name" || key == "destination.namespace" ||
                                      key == "destination.user" || absl::StartsWith(key, "destination.labels");
  if (destination_config_key && !v1alpha1) {
    return absl::InvalidArgumentError(absl::StrCat("key \"", key, "\" is only supported in v1alpha1"));
  }
  if (v1alpha1) {
    if (key == "source.user") return strings(Attr::kSourcePrincipal, "", Wildcard::kAnyone);
    if (key == "destination.name") return strings(Attr::kDestinationName);
    if (key == "destination.namespace") return strings(Attr::kDestinationNamespace);
    if (key == "destination.user") return strings(Attr::kDestinationUser);
    if (ParseBracketKey(key, "destination.labels", &inner)) return strings(Attr::kDestinationLabel, inner);
  }
  if (absl::StartsWith(key, "experimental.envoy.filters.")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "key \"", key, "\" matches Envoy dynamic metadata, which meshid does not have; it is not supported"));
  }
  if (absl::StartsWith(key, "request.headers") || absl::StartsWith(key, "request.auth.claims") ||
      absl::StartsWith(key, "destination.labels")) {
    return absl::InvalidArgumentError(absl::StrCat("key \"", key, "\" must have the form name[key]"));
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown key \"", key, "\""));
}

}  // namespace meshid::rbac
