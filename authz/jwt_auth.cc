#include "authz/jwt_auth.h"

#include <re2/re2.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace meshid::authz {

using rbac::FieldReader;
using rbac::ReadContext;

namespace {

bool ValidJwksUri(absl::string_view uri) {
  return absl::StartsWith(uri, "http://") || absl::StartsWith(uri, "https://") || absl::StartsWith(uri, "file://");
}

void CheckEntries(ReadContext& ctx, const YAML::Node& at, const std::string& path, const std::vector<std::string>& v,
                  bool& ok) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i].empty()) {
      ctx.Error(at, FieldReader::Index(path, i), "must not be empty");
      ok = false;
    }
  }
}

std::optional<StringMatchSpec> ReadStringMatch(ReadContext& ctx, const YAML::Node& node, const std::string& path) {
  FieldReader r(ctx, node, path);
  std::vector<StringMatchSpec> found;
  const std::pair<const char*, StringMatchSpec::Kind> kinds[] = {{"exact", StringMatchSpec::Kind::kExact},
                                                                 {"prefix", StringMatchSpec::Kind::kPrefix},
                                                                 {"suffix", StringMatchSpec::Kind::kSuffix},
                                                                 {"regex", StringMatchSpec::Kind::kRegex}};
  for (const auto& [key, kind] : kinds) {
    if (auto v = r.String(key)) found.push_back({kind, *v});
  }
  if (found.size() != 1) {
    ctx.Error(node, path, "exactly one of exact, prefix, suffix or regex must be set");
    return std::nullopt;
  }
  if (found[0].kind == StringMatchSpec::Kind::kRegex) {
    RE2 re(found[0].value, RE2::Quiet);
    if (!re.ok()) {
      ctx.Error(node, r.PathOf("regex"), absl::StrCat("invalid regular expression: ", re.error()));
      return std::nullopt;
    }
  }
  return found[0];
}

std::string UrlDecode(absl::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && absl::ascii_isxdigit(s[i + 1]) && absl::ascii_isxdigit(s[i + 2])) {
      auto hex = [](char c) { return absl::ascii_isdigit(c) ? c - '0' : absl::ascii_tolower(c) - 'a' + 10; };
      out.push_back(static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i] == '+' ? ' ' : s[i]);
    }
  }
  return out;
}

}  // namespace

std::optional<JwtRuleSpec> ReadV1alpha1Jwt(ReadContext& ctx, const YAML::Node& node, const std::string& path) {
  FieldReader r(ctx, node, path);
  JwtRuleSpec spec;
  bool ok = r.ok();
  spec.issuer = r.String("issuer").value_or("");
  spec.audiences = r.StringList("audiences");
  spec.jwks_uri = r.String("jwksUri").value_or("");
  spec.jwks = r.String("jwks").value_or("");
  auto headers = r.StringList("jwtHeaders");
  spec.from_params = r.StringList("jwtParams");
  if (spec.issuer.empty()) {
    ctx.Error(node, r.PathOf("issuer"), "issuer must be set");
    ok = false;
  }
  CheckEntries(ctx, node, r.PathOf("audiences"), spec.audiences, ok);
  CheckEntries(ctx, node, r.PathOf("jwtHeaders"), headers, ok);
  CheckEntries(ctx, node, r.PathOf("jwtParams"), spec.from_params, ok);
  if (!spec.jwks_uri.empty() && !ValidJwksUri(spec.jwks_uri)) {
    ctx.Error(node, r.PathOf("jwksUri"), "must be an http://, https:// or file:// URI");
    ok = false;
  }
  if (!spec.jwks_uri.empty() && !spec.jwks.empty()) {
    ctx.Error(node, path, "set jwksUri or jwks, not both");
    ok = false;
  }
  for (const auto& h : headers) spec.from_headers.push_back({absl::AsciiStrToLower(h), ""});
  if (spec.from_headers.empty() && spec.from_params.empty()) {
    spec.from_headers.push_back({"authorization", "Bearer "});
    spec.from_params.push_back("access_token");
  }
  size_t i = 0;
  for (const auto& tn : r.List("triggerRules")) {
    const std::string tpath = FieldReader::Index(r.PathOf("triggerRules"), i++);
    FieldReader tr(ctx, tn, tpath);
    TriggerRule rule;
    for (const char* key : {"excludedPaths", "includedPaths"}) {
      size_t j = 0;
      for (const auto& pn : tr.List(key)) {
        auto m = ReadStringMatch(ctx, pn, FieldReader::Index(tr.PathOf(key), j++));
        if (!m) {
          ok = false;
          continue;
        }
        (std::string(key) == "excludedPaths" ? rule.excluded_paths : rule.included_paths).push_back(*m);
      }
    }
    spec.trigger_rules.push_back(std::move(rule));
  }
  r.Finish();
  if (!ok || !r.ok()) return std::nullopt;
  return spec;
}

std::optional<JwtRuleSpec> ReadV1beta1JwtRule(ReadContext& ctx, const YAML::Node& node, const std::string& path) {
  FieldReader r(ctx, node, path);
  JwtRuleSpec spec;
  bool ok = r.ok();
  spec.issuer = r.String("issuer").value_or("");
  spec.audiences = r.StringList("audiences");
  spec.jwks_uri = r.String("jwksUri").value_or("");
  spec.jwks = r.String("jwks").value_or("");
  spec.from_params = r.StringList("fromParams");
  spec.output_payload_to_header = r.String("outputPayloadToHeader").value_or("");
  spec.forward_original_token = r.Bool("forwardOriginalToken").value_or(false);
  if (spec.issuer.empty()) {
    ctx.Error(node, r.PathOf("issuer"), "issuer must be set");
    ok = false;
  }
  CheckEntries(ctx, node, r.PathOf("audiences"), spec.audiences, ok);
  CheckEntries(ctx, node, r.PathOf("fromParams"), spec.from_params, ok);
  if (!spec.jwks_uri.empty() && !ValidJwksUri(spec.jwks_uri)) {
    ctx.Error(node, r.PathOf("jwksUri"), "must be an http://, https:// or file:// URI");
    ok = false;
  }
  if (!spec.jwks_uri.empty() && !spec.jwks.empty()) {
    ctx.Error(node, path, "set jwksUri or jwks, not both");
    ok = false;
  }
  size_t i = 0;
  for (const auto& hn : r.List("fromHeaders")) {
    const std::string hpath = FieldReader::Index(r.PathOf("fromHeaders"), i++);
    FieldReader hr(ctx, hn, hpath);
    JwtLocation loc;
    loc.header = absl::AsciiStrToLower(hr.String("name").value_or(""));
    loc.prefix = hr.String("prefix").value_or("");
    if (loc.header.empty()) {
      ctx.Error(hn, hr.PathOf("name"), "header name must be set");
      ok = false;
      continue;
    }
    spec.from_headers.push_back(std::move(loc));
  }
  if (spec.from_headers.empty() && spec.from_params.empty()) {
    spec.from_headers.push_back({"authorization", "Bearer "});
    spec.from_params.push_back("access_token");
  }
  r.Finish();
  if (!ok || !r.ok()) return std::nullopt;
  return spec;
}

// ---- JwtProvider ----

JwtProvider::~JwtProvider() = default;

absl::StatusOr<std::unique_ptr<JwtProvider>> JwtProvider::Create(const JwtRuleSpec& spec, const JwksFetcher& fetcher) {
  std::unique_ptr<JwtProvider> p(new JwtProvider());
  p->spec_ = spec;
  for (const auto& t : spec.trigger_rules) {
    CompiledTrigger ct;
    for (const auto* list : {&t.excluded_paths, &t.included_paths}) {
      for (const auto& m : *list) {
        CompiledMatch cm{m, nullptr};
        if (m.kind == StringMatchSpec::Kind::kRegex) {
          cm.regex = std::make_shared<RE2>(m.value, RE2::Quiet);
          if (!cm.regex->ok()) {
            return absl::InvalidArgumentError(
                absl::StrCat("trigger rule regex \"", m.value, "\": ", cm.regex->error()));
          }
        }
        (list == &t.excluded_paths ? ct.excluded : ct.included).push_back(std::move(cm));
      }
    }
    p->triggers_.push_back(std::move(ct));
  }
  absl::StatusOr<std::string> jwks_text;
  if (!spec.jwks.empty()) {
    jwks_text = spec.jwks;
  } else if (!spec.jwks_uri.empty()) {
    jwks_text = fetcher.Fetch(spec.jwks_uri);
  } else if (absl::StartsWith(spec.issuer, "https://") || absl::StartsWith(spec.issuer, "http://")) {
    // OpenID Connect discovery, as istiod does when no key set is given.
    std::string base = spec.issuer;
    while (absl::EndsWith(base, "/")) base.pop_back();
    auto doc = fetcher.Fetch(base + "/.well-known/openid-configuration");
    if (!doc.ok()) {
      jwks_text = doc.status();
    } else {
      auto json = nlohmann::json::parse(*doc, nullptr, false);
      if (json.is_object() && json.contains("jwks_uri") && json["jwks_uri"].is_string()) {
        jwks_text = fetcher.Fetch(json["jwks_uri"].get<std::string>());
      } else {
        jwks_text = absl::UnavailableError("OpenID configuration has no jwks_uri");
      }
    }
  } else {
    jwks_text = absl::FailedPreconditionError("no jwks, no jwksUri, and the issuer is not a URL for discovery");
  }
  if (!jwks_text.ok()) {
    p->jwks_status_ = jwks_text.status();
  } else {
    auto jwks = Jwks::Parse(*jwks_text);
    if (jwks.ok()) {
      p->jwks_ = std::move(*jwks);
    } else {
      p->jwks_status_ = jwks.status();
    }
  }
  return p;
}

bool JwtProvider::CompiledMatch::Matches(absl::string_view path) const {
  switch (spec.kind) {
    case StringMatchSpec::Kind::kExact:
      return path == spec.value;
    case StringMatchSpec::Kind::kPrefix:
      return absl::StartsWith(path, spec.value);
    case StringMatchSpec::Kind::kSuffix:
      return absl::EndsWith(path, spec.value);
    case StringMatchSpec::Kind::kRegex:
      return RE2::FullMatch(re2::StringPiece(path.data(), path.size()), *regex);
  }
  return false;
}

bool JwtProvider::Triggered(absl::string_view path) const {
  if (triggers_.empty()) return true;
  for (const auto& t : triggers_) {
    bool excluded = false;
    for (const auto& m : t.excluded)
      if (m.Matches(path)) excluded = true;
    if (excluded) continue;
    if (t.included.empty()) return true;
    for (const auto& m : t.included)
      if (m.Matches(path)) return true;
  }
  return false;
}

std::vector<std::string> JwtProvider::Extract(const rbac::RequestAttributes& attrs) const {
  std::vector<std::string> out;
  for (const auto& loc : spec_.from_headers) {
    const std::string* v = attrs.Header(loc.header);
    if (!v) continue;
    absl::string_view value(*v);
    if (!loc.prefix.empty()) {
      // RFC 6750: the "Bearer" scheme name is case-insensitive.
      if (!absl::StartsWithIgnoreCase(value, loc.prefix)) continue;
      value.remove_prefix(loc.prefix.size());
    }
    value = absl::StripAsciiWhitespace(value);
    if (!value.empty()) out.emplace_back(value);
  }
  if (!spec_.from_params.empty() && !attrs.query.empty()) {
    for (absl::string_view kv : absl::StrSplit(attrs.query, '&')) {
      size_t eq = kv.find('=');
      if (eq == absl::string_view::npos) continue;
      const std::string name = UrlDecode(kv.substr(0, eq));
      for (const auto& param : spec_.from_params) {
        if (name == param) {
          std::string value = UrlDecode(kv.substr(eq + 1));
          if (!value.empty()) out.push_back(std::move(value));
        }
      }
    }
  }
  return out;
}

std::map<std::string, std::vector<std::string>> ExtractClaims(const nlohmann::json& payload) {
  std::map<std::string, std::vector<std::string>> out;
  if (!payload.is_object()) return out;
  for (auto it = payload.begin(); it != payload.end(); ++it) {
    if (it->is_string()) {
      std::vector<std::string> parts = absl::StrSplit(it->get<std::string>(), ' ', absl::SkipEmpty());
      out[it.key()] = std::move(parts);
    } else if (it->is_array()) {
      std::vector<std::string> list;
      bool all_strings = true;
      for (const auto& e : *it) {
        if (!e.is_string()) {
          all_strings = false;
          break;
        }
        list.push_back(e.get<std::string>());
      }
      if (all_strings) out[it.key()] = std::move(list);
    }
  }
  return out;
}

absl::StatusOr<VerifiedToken> JwtProvider::Verify(absl::string_view token, absl::Time now) const {
  auto jwt = DecodeJwt(token);
  if (!jwt.ok())
    return absl::UnauthenticatedError(
        absl::StrCat("Jwt is not in the form of Header.Payload.Signature (", jwt.status().message(), ")"));
  if (jwt->issuer() != spec_.issuer) {
    return absl::UnauthenticatedError(absl::StrCat("Jwt issuer is not configured (token issuer \"", jwt->issuer(),
                                                   "\", expected \"", spec_.issuer, "\")"));
  }
  if (!spec_.audiences.empty()) {
    JwtClaimChecks aud_checks;
    aud_checks.audiences = spec_.audiences;
    aud_checks.now = now;
    aud_checks.require_expiry = false;
    aud_checks.allowed_skew = absl::InfiniteDuration();
    if (auto st = CheckJwtClaims(*jwt, aud_checks); !st.ok()) {
      return absl::UnauthenticatedError(absl::StrCat("Audiences in Jwt are not allowed (", st.message(), ")"));
    }
  }
  JwtClaimChecks time_checks;
  time_checks.now = now;
  time_checks.require_expiry = false;
  if (auto st = CheckJwtClaims(*jwt, time_checks); !st.ok()) {
    const bool expired = absl::StrContains(st.message(), "expired");
    return absl::UnauthenticatedError(
        absl::StrCat(expired ? "Jwt is expired" : "Jwt verification fails", " (", st.message(), ")"));
  }
  if (!jwks_) {
    return absl::UnauthenticatedError(absl::StrCat("Jwks remote fetch is failed (", jwks_status_.message(), ")"));
  }
  if (auto st = VerifyJwtSignature(*jwt, *jwks_); !st.ok()) {
    return absl::UnauthenticatedError(absl::StrCat("Jwt verification fails (", st.message(), ")"));
  }
  VerifiedToken out;
  out.issuer = jwt->issuer();
  out.subject = jwt->subject();
  if (!out.issuer.empty() && !out.subject.empty()) out.principal = absl::StrCat(out.issuer, "/", out.subject);
  auto auds = jwt->audiences();
  if (!auds.empty()) out.audience = auds.front();
  if (jwt->payload.contains("azp") && jwt->payload["azp"].is_string())
    out.presenter = jwt->payload["azp"].get<std::string>();
  out.claims = ExtractClaims(jwt->payload);
  return out;
}

void ApplyToken(const VerifiedToken& token, rbac::RequestAttributes& attrs) {
  attrs.request_principal = token.principal;
  attrs.audience = token.audience;
  attrs.presenter = token.presenter;
  attrs.claims = token.claims;
}

}  // namespace meshid::authz
