#include "rbac/match.h"

#include <arpa/inet.h>

#include <cstring>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace meshid::rbac {

StringMatcher StringMatcher::FromPattern(absl::string_view pattern, bool ignore_case) {
  std::string text(pattern);
  if (ignore_case) absl::AsciiStrToLower(&text);
  if (text == "*") return StringMatcher(Kind::kPresent, "", ignore_case);
  if (text.size() > 1 && text.back() == '*') {
    return StringMatcher(Kind::kPrefix, absl::string_view(text).substr(0, text.size() - 1), ignore_case);
  }
  if (text.size() > 1 && text.front() == '*') {
    return StringMatcher(Kind::kSuffix, absl::string_view(text).substr(1), ignore_case);
  }
  return StringMatcher(Kind::kExact, text, ignore_case);
}

bool StringMatcher::Matches(const std::string* value) const {
  if (kind_ == Kind::kAny) return true;
  if (value == nullptr) return false;
  return MatchesValue(*value);
}

bool StringMatcher::MatchesValue(absl::string_view value) const {
  switch (kind_) {
    case Kind::kAny:
    case Kind::kPresent:
      return true;
    case Kind::kExact:
      return ignore_case_ ? absl::EqualsIgnoreCase(value, text_) : value == text_;
    case Kind::kPrefix:
      return ignore_case_ ? absl::StartsWithIgnoreCase(value, text_) : absl::StartsWith(value, text_);
    case Kind::kSuffix:
      return ignore_case_ ? absl::EndsWithIgnoreCase(value, text_) : absl::EndsWith(value, text_);
  }
  return false;
}

std::optional<IpAddress> IpAddress::Parse(absl::string_view text) {
  if (text.empty() || text.size() > 45) return std::nullopt;
  std::string s(text);
  IpAddress ip;
  if (inet_pton(AF_INET, s.c_str(), ip.bytes.data()) == 1) return ip;
  if (inet_pton(AF_INET6, s.c_str(), ip.bytes.data()) == 1) {
    ip.v6 = true;
    return ip;
  }
  return std::nullopt;
}

std::string IpAddress::ToString() const {
  char buf[INET6_ADDRSTRLEN] = {0};
  inet_ntop(v6 ? AF_INET6 : AF_INET, bytes.data(), buf, sizeof(buf));
  return buf;
}

absl::StatusOr<Cidr> Cidr::Parse(absl::string_view text) {
  Cidr out;
  absl::string_view addr = text;
  std::optional<int> len;
  size_t slash = text.find('/');
  if (slash != absl::string_view::npos) {
    addr = text.substr(0, slash);
    int v = -1;
    if (!absl::SimpleAtoi(text.substr(slash + 1), &v) || v < 0) {
      return absl::InvalidArgumentError(absl::StrCat("\"", text, "\" is not an IP address or CIDR block"));
    }
    len = v;
  }
  auto ip = IpAddress::Parse(addr);
  if (!ip) return absl::InvalidArgumentError(absl::StrCat("\"", text, "\" is not an IP address or CIDR block"));
  const int max = ip->v6 ? 128 : 32;
  if (len && *len > max) {
    return absl::InvalidArgumentError(absl::StrCat("\"", text, "\": prefix length above ", max));
  }
  out.base_ = *ip;
  out.prefix_len_ = len.value_or(max);
  // Clear host bits so Contains() can compare bytes directly.
  for (int bit = out.prefix_len_; bit < max; ++bit) out.base_.bytes[bit / 8] &= ~(0x80 >> (bit % 8));
  return out;
}

bool Cidr::Contains(const IpAddress& ip) const {
  if (ip.v6 != base_.v6) return false;
  int full = prefix_len_ / 8;
  if (std::memcmp(ip.bytes.data(), base_.bytes.data(), full) != 0) return false;
  int rest = prefix_len_ % 8;
  if (rest == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (ip.bytes[full] & mask) == base_.bytes[full];
}

std::string Cidr::ToString() const { return absl::StrCat(base_.ToString(), "/", prefix_len_); }

SplitTarget SplitRequestTarget(absl::string_view target) {
  SplitTarget out;
  size_t hash = target.find('#');
  if (hash != absl::string_view::npos) target = target.substr(0, hash);
  size_t q = target.find('?');
  if (q == absl::string_view::npos) {
    out.path = std::string(target);
  } else {
    out.path = std::string(target.substr(0, q));
    out.query = std::string(target.substr(q + 1));
  }
  return out;
}

namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool IsUnreserved(unsigned char c) { return absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~'; }

}  // namespace

namespace {
// True when NormalizePath would return `path` unchanged: no escapes, backslashes, control
// characters, empty or dot segments.
bool AlreadyNormal(absl::string_view path) {
  if (path.empty() || path[0] != '/') return false;
  for (size_t i = 0; i < path.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(path[i]);
    if (c < 0x20 || c == 0x7f || c == '%' || c == '\\') return false;
    if (c == '/' && i + 1 < path.size()) {
      const char n = path[i + 1];
      if (n == '/') return false;
      if (n == '.' && (i + 2 == path.size() || path[i + 2] == '/' ||
                       (path[i + 2] == '.' && (i + 3 == path.size() || path[i + 3] == '/')))) {
        return false;
      }
    }
  }
  return true;
}
}  // namespace

absl::StatusOr<std::string> NormalizePath(absl::string_view path) {
  if (AlreadyNormal(path)) return std::string(path);
  if (path.empty() || (path[0] != '/' && path[0] != '\\')) {
    return absl::InvalidArgumentError(absl::StrCat("path \"", path, "\" does not start with '/'"));
  }
  // 1. Decode escapes of unreserved characters, canonicalise the rest, map '\' to '/'.
  std::string decoded;
  decoded.reserve(path.size());
  for (size_t i = 0; i < path.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(path[i]);
    if (c < 0x20 || c == 0x7f) return absl::InvalidArgumentError("path contains a control character");
    if (c == '%' && i + 2 < path.size() && HexValue(path[i + 1]) >= 0 && HexValue(path[i + 2]) >= 0) {
      unsigned char v = static_cast<unsigned char>(HexValue(path[i + 1]) * 16 + HexValue(path[i + 2]));
      if (v == 0) return absl::InvalidArgumentError("path contains %00");
      if (IsUnreserved(v)) {
        decoded.push_back(static_cast<char>(v));
      } else {
        decoded.push_back('%');
        decoded.push_back(absl::ascii_toupper(path[i + 1]));
        decoded.push_back(absl::ascii_toupper(path[i + 2]));
      }
      i += 2;
      continue;
    }
    decoded.push_back(c == '\\' ? '/' : static_cast<char>(c));
  }
  // 2. Split into segments, dropping empty ones (merges slashes), resolving "." and "..".
  //    The result ends with '/' when the input's last segment was empty, "." or "..".
  std::vector<absl::string_view> out;
  absl::string_view last_seg;
  size_t start = 1;
  while (start <= decoded.size()) {
    size_t end = decoded.find('/', start);
    if (end == std::string::npos) end = decoded.size();
    absl::string_view seg(decoded.data() + start, end - start);
    last_seg = seg;
    if (seg == "..") {
      if (!out.empty()) out.pop_back();
    } else if (!seg.empty() && seg != ".") {
      out.push_back(seg);
    }
    start = end + 1;
  }
  const bool trailing_slash = last_seg.empty() || last_seg == "." || last_seg == "..";
  std::string result = "/" + absl::StrJoin(out, "/");
  if (trailing_slash && !out.empty()) result.push_back('/');
  return result;
}

}  // namespace meshid::rbac
