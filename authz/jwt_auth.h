// JWT request authentication shared by v1alpha1 origins (authentication Policy `origins[].jwt`,
// also `peers[].jwt`) and v1beta1 RequestAuthentication `jwtRules`: where tokens are looked
// for, which key set verifies them, and which claims reach the authorization engine.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "authz/jwks_fetcher.h"
#include "common/jwt.h"
#include "rbac/attributes.h"
#include "rbac/yaml_source.h"

namespace re2 {
class RE2;
}

namespace meshid::authz {

// Istio StringMatch (trigger rule paths): exact, prefix, suffix or RE2 regex (full match).
struct StringMatchSpec {
  enum class Kind { kExact, kPrefix, kSuffix, kRegex };
  Kind kind = Kind::kExact;
  std::string value;
};

struct TriggerRule {
  std::vector<StringMatchSpec> excluded_paths;
  std::vector<StringMatchSpec> included_paths;
};

struct JwtLocation {
  std::string header;  // lower-case
  std::string prefix;  // e.g. "Bearer "
};

struct JwtRuleSpec {
  std::string issuer;
  std::vector<std::string> audiences;
  std::string jwks_uri;
  std::string jwks;  // inline JSON
  std::vector<JwtLocation> from_headers;
  std::vector<std::string> from_params;
  std::vector<TriggerRule> trigger_rules;  // v1alpha1 only
  std::string output_payload_to_header;    // v1beta1; forwarded payload, no effect on decisions
  bool forward_original_token = false;
};

// Reads a v1alpha1 `jwt` object (issuer, audiences, jwksUri, jwks, jwtHeaders, jwtParams,
// triggerRules) or a v1beta1 `jwtRules[]` entry (issuer, audiences, jwksUri, jwks,
// fromHeaders, fromParams, outputPayloadToHeader, forwardOriginalToken), validating as Istio
// does. nullopt after reporting errors.
std::optional<JwtRuleSpec> ReadV1alpha1Jwt(rbac::ReadContext& ctx, const YAML::Node& node, const std::string& path);
std::optional<JwtRuleSpec> ReadV1beta1JwtRule(rbac::ReadContext& ctx, const YAML::Node& node, const std::string& path);

// What a verified token contributes to the request attributes.
struct VerifiedToken {
  std::string issuer;
  std::string subject;
  std::string principal;  // "<iss>/<sub>" when both are present
  std::string audience;   // the first "aud" (Istio 1.5's request.auth.audiences)
  std::string presenter;  // "azp"
  std::map<std::string, std::vector<std::string>> claims;
};

// A compiled rule: locations, trigger rules (with compiled regexes) and its key set.
class JwtProvider {
 public:
  // Resolves the key set (inline jwks, jwks_uri via `fetcher`, or OpenID discovery from the
  // issuer). A key set that cannot be obtained is not an error here: like istiod, the provider
  // then rejects every token (the failure is kept and reported by jwks_status()).
  static absl::StatusOr<std::unique_ptr<JwtProvider>> Create(const JwtRuleSpec& spec, const JwksFetcher& fetcher);
  ~JwtProvider();

  const JwtRuleSpec& spec() const { return spec_; }
  const absl::Status& jwks_status() const { return jwks_status_; }

  // v1alpha1 trigger rules: true if there are none, or any rule matches `path` (no excluded
  // path matches and, when included paths exist, one of them matches).
  bool Triggered(absl::string_view path) const;
  // Tokens found at this provider's locations (default: "Authorization: Bearer <t>" and the
  // query parameter access_token).
  std::vector<std::string> Extract(const rbac::RequestAttributes& attrs) const;
  // Verifies one token: issuer, audiences, time (60 s skew, exp optional), signature.
  // Unauthenticated with Envoy's wording ("Jwt is expired", "Audiences in Jwt are not
  // allowed", "Jwt issuer is not configured", "Jwt verification fails", ...).
  absl::StatusOr<VerifiedToken> Verify(absl::string_view token, absl::Time now) const;

 private:
  JwtProvider() = default;
  JwtRuleSpec spec_;
  std::optional<Jwks> jwks_;
  absl::Status jwks_status_;
  struct CompiledMatch {
    StringMatchSpec spec;
    std::shared_ptr<re2::RE2> regex;
    bool Matches(absl::string_view path) const;
  };
  struct CompiledTrigger {
    std::vector<CompiledMatch> excluded, included;
  };
  std::vector<CompiledTrigger> triggers_;
};

// Istio's claim processing (authn_utils.cc): string claims split on spaces, string lists kept,
// everything else dropped.
std::map<std::string, std::vector<std::string>> ExtractClaims(const nlohmann::json& payload);

// Copies a verified token's results into the attributes (request.auth.*).
void ApplyToken(const VerifiedToken& token, rbac::RequestAttributes& attrs);

}  // namespace meshid::authz
