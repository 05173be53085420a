// Compiled matching: a Predicate tests one request attribute against an OR-set of values
// (optionally negated); a Conjunction is an AND of predicates. Every Istio RBAC construct
// (ServiceRole rules, binding subjects, AuthorizationPolicy sources/operations/conditions)
// compiles to these, so there is one evaluator for all of them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "rbac/attributes.h"
#include "rbac/match.h"

namespace meshid::rbac {

enum class Attr : uint8_t {
  kSourcePrincipal,
  kSourceNamespace,
  kSourceIp,
  kDestinationIp,
  kDestinationPort,
  kRequestPrincipal,
  kAudience,
  kPresenter,
  kClaim,   // key = claim name; the claim is a list, any element may match
  kHeader,  // key = lower-case header name
  kMethod,
  kPath,
  kHost,
  kSni,
  // v1alpha1 "config-time" attributes of the destination service.
  kDestinationService,
  kDestinationName,
  kDestinationNamespace,
  kDestinationUser,
  kDestinationLabel,  // key = label name
};

// True for attributes that only exist on HTTP requests.
bool IsHttpOnly(Attr attr);

struct Predicate {
  Attr attr = Attr::kSourcePrincipal;
  std::string key;
  bool negate = false;
  std::vector<StringMatcher> strings;
  std::vector<Cidr> cidrs;
  std::vector<uint32_t> ports;

  bool Matches(const RequestAttributes& a) const;
  bool http_only() const { return IsHttpOnly(attr); }
};

struct Conjunction {
  std::vector<Predicate> all;

  bool Matches(const RequestAttributes& a) const {
    for (const auto& p : all)
      if (!p.Matches(a)) return false;
    return true;
  }
  bool http_only() const;
  // A copy without HTTP-only predicates (Istio 1.5 widens DENY rules this way on TCP).
  Conjunction WithoutHttpOnly() const;
};

// The pattern dialect of a string field.
enum class Wildcard {
  kPresence,  // "*" means present/non-empty (v1beta1 everywhere; v1alpha1 except identities)
  kAnyone,    // "*" means anything, even absent (v1alpha1 user / source.principal)
};

// Builds a predicate for a string attribute.
Predicate StringPredicate(Attr attr, std::string key, const std::vector<std::string>& values, bool negate,
                          Wildcard wildcard = Wildcard::kPresence);

// Builds a predicate for a condition key ("source.ip", "request.headers[x-foo]", ...) as used
// by v1alpha1 constraints/properties and v1beta1 `when`. InvalidArgument names what is wrong
// (an unknown key, a malformed value); `v1alpha1` enables the destination.* config-time keys
// and the legacy source.user property.
absl::StatusOr<Predicate> ConditionPredicate(absl::string_view key, const std::vector<std::string>& values, bool negate,
                                             bool v1alpha1);

// Parses "a[b]" forms: returns true and sets `inner` when `key` is `prefix` + "[" inner "]".
bool ParseBracketKey(absl::string_view key, absl::string_view prefix, std::string* inner);

}  // namespace meshid::rbac
