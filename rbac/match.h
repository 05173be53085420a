// Matchers shared by every policy kind: Istio's string patterns, IP/CIDR blocks, and the path
// normalisation applied before any path rule is consulted.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace meshid::rbac {

// Istio's string pattern: "abc" exact, "abc*" prefix, "*abc" suffix, "*" presence. A '*'
// anywhere else is a literal character (as in Istio).
class StringMatcher {
 public:
  enum class Kind { kExact, kPrefix, kSuffix, kPresent, kAny };

  // "*" becomes kPresent (the value must be present and, for identities, non-empty).
  static StringMatcher FromPattern(absl::string_view pattern, bool ignore_case = false);
  static StringMatcher Any() { return StringMatcher(Kind::kAny, ""); }

  // `value` is nullptr when the attribute is absent. kAny matches even then; every other kind
  // needs a value, and kPresent accepts any present value.
  bool Matches(const std::string* value) const;
  bool Matches(absl::string_view value) const { return MatchesValue(value); }

  Kind kind() const { return kind_; }
  const std::string& text() const { return text_; }

 private:
  StringMatcher(Kind kind, absl::string_view text, bool ignore_case = false)
      : kind_(kind), text_(text), ignore_case_(ignore_case) {}
  bool MatchesValue(absl::string_view value) const;

  Kind kind_;
  std::string text_;  // the literal part (without '*'); lower-case when ignore_case_
  bool ignore_case_ = false;
};

// An IPv4 or IPv6 address.
struct IpAddress {
  bool v6 = false;
  std::array<uint8_t, 16> bytes{};  // IPv4 uses the first 4
  static std::optional<IpAddress> Parse(absl::string_view text);
  std::string ToString() const;
  friend bool operator==(const IpAddress&, const IpAddress&) = default;
};

// "10.0.0.0/8", "2001:db8::/32", or a single address (treated as /32 or /128).
class Cidr {
 public:
  static absl::StatusOr<Cidr> Parse(absl::string_view text);
  bool Contains(const IpAddress& ip) const;
  std::string ToString() const;

 private:
  IpAddress base_;
  int prefix_len_ = 0;
};

// Splits a request target into the path and the query ("?a=b" → "a=b"); a fragment is dropped.
struct SplitTarget {
  std::string path;
  std::string query;
};
SplitTarget SplitRequestTarget(absl::string_view target);

// Normalises a URL path the way Envoy does before its filters run (Istio enables
// normalize_path and merge_slashes): percent-encoded unreserved characters are decoded (so
// "%2E%2E" is ".."), other escapes get upper-case hex, '\' becomes '/', runs of '/' become one,
// and "." / ".." segments are removed per RFC 3986 5.2.4. The path must start with '/';
// control characters and "%00" are refused (Envoy answers 400). `path` excludes the query.
absl::StatusOr<std::string> NormalizePath(absl::string_view path);

}  // namespace meshid::rbac
