// RFC 3986 percent-encoding, as the datastore URL (sql/store_url.h) and RFC 7512 PKCS#11 URIs
// (pkcs11/uri.h) use it.
#pragma once

#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace meshid {

// `in` with every %XX replaced by its byte (any byte, NUL included: callers that forbid some
// check the result). nullopt when a '%' is not followed by two hex digits.
std::optional<std::string> PercentDecode(absl::string_view in);

// Every byte outside RFC 3986's unreserved set (ALPHA DIGIT - . _ ~) as %xx in lower-case hex;
// with `escape_all`, every byte.
std::string PercentEncode(absl::string_view bytes, bool escape_all = false);

}  // namespace meshid
