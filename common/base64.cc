#include "common/base64.h"

#include <array>
#include <cstdint>

#include "absl/status/status.h"

namespace meshid {
namespace {

constexpr absl::string_view kStd = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr absl::string_view kUrl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::string Encode(absl::string_view data, absl::string_view alphabet, bool pad) {
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= data.size(); i += 3) {
    uint32_t v = (uint8_t(data[i]) << 16) | (uint8_t(data[i + 1]) << 8) | uint8_t(data[i + 2]);
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += alphabet[(v >> 6) & 63];
    out += alphabet[v & 63];
  }
  size_t rest = data.size() - i;
  if (rest > 0) {
    uint32_t v = uint8_t(data[i]) << 16;
    if (rest == 2) v |= uint8_t(data[i + 1]) << 8;
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    if (rest == 2) out += alphabet[(v >> 6) & 63];
    if (pad) out.append(rest == 1 ? 2 : 1, '=');
  }
  return out;
}

absl::StatusOr<std::string> Decode(absl::string_view text, absl::string_view alphabet, bool padded) {
  std::array<int8_t, 256> table;
  table.fill(-1);
  for (size_t i = 0; i < alphabet.size(); ++i) table[uint8_t(alphabet[i])] = int8_t(i);

  size_t pad = 0;
  if (padded) {
    if (text.size() % 4 != 0) return absl::InvalidArgumentError("base64: length is not a multiple of 4");
    while (pad < 2 && !text.empty() && text.back() == '=') {
      text.remove_suffix(1);
      ++pad;
    }
  } else if (text.size() % 4 == 1) {
    return absl::InvalidArgumentError("base64url: impossible length");
  }
  std::string out;
  out.reserve(text.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    int8_t v = table[uint8_t(c)];
    if (v < 0) return absl::InvalidArgumentError("base64: invalid character");
    acc = (acc << 6) | uint32_t(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += char((acc >> bits) & 0xff);
    }
  }
  // Leftover bits must be zero (canonical encoding), and padding must match the remainder.
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) {
    return absl::InvalidArgumentError("base64: non-canonical trailing bits");
  }
  if (padded && ((text.size() % 4 == 0) != (pad == 0))) {
    return absl::InvalidArgumentError("base64: bad padding");
  }
  return out;
}

}  // namespace

std::string Base64Encode(absl::string_view data) { return Encode(data, kStd, true); }
std::string Base64UrlEncode(absl::string_view data) { return Encode(data, kUrl, false); }
absl::StatusOr<std::string> Base64Decode(absl::string_view text) { return Decode(text, kStd, true); }
absl::StatusOr<std::string> Base64UrlDecode(absl::string_view text) { return Decode(text, kUrl, false); }

}  // namespace meshid
