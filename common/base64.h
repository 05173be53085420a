// Strict Base64 (RFC 4648) codecs. Decoders reject any character outside the alphabet, bad
// padding and non-canonical trailing bits, because their input comes from the network.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace meshid {

std::string Base64Encode(absl::string_view data);
std::string Base64UrlEncode(absl::string_view data);  // no padding, as JWS uses

// Standard alphabet, '=' padding required.
absl::StatusOr<std::string> Base64Decode(absl::string_view text);
// URL-safe alphabet, no padding (JWS compact serialization).
absl::StatusOr<std::string> Base64UrlDecode(absl::string_view text);

}  // namespace meshid
