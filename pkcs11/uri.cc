#include "pkcs11/uri.h"

#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace meshid::pkcs11 {
namespace {

absl::Status Bad(absl::string_view attribute, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("PKCS#11 URI: ", attribute, ": ", what));
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = absl::ascii_tolower(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

absl::StatusOr<std::string> PercentDecode(absl::string_view attribute, absl::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (size_t i = 0; i < value.size(); ++i) {
    if (value[i] != '%') {
      out.push_back(value[i]);
      continue;
    }
    if (i + 2 >= value.size()) {
      return Bad(attribute, "a '%' is not followed by two hex digits");
    }
    int high = HexValue(value[i + 1]), low = HexValue(value[i + 2]);
    if (high < 0 || low < 0) return Bad(attribute, "a '%' is not followed by two hex digits");
    out.push_back(static_cast<char>(high * 16 + low));
    i += 2;
  }
  return out;
}

std::string PercentEncode(absl::string_view bytes, bool all) {
  std::string out;
  for (unsigned char c : bytes) {
    if (!all && (absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~')) {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(&out, "%", absl::string_view("0123456789abcdef" + (c >> 4), 1),
                      absl::string_view("0123456789abcdef" + (c & 15), 1));
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<Uri> ParseUri(absl::string_view text) {
  constexpr absl::string_view kScheme = "pkcs11:";
  if (text.size() < kScheme.size() || !absl::EqualsIgnoreCase(text.substr(0, kScheme.size()), kScheme)) {
    return absl::InvalidArgumentError("PKCS#11 URI: must start with \"pkcs11:\"");
  }
  text.remove_prefix(kScheme.size());
  absl::string_view path = text, query;
  if (size_t q = text.find('?'); q != absl::string_view::npos) {
    path = text.substr(0, q);
    query = text.substr(q + 1);
  }
  Uri uri;
  absl::flat_hash_set<std::string> seen;
  auto parse_part = [&](absl::string_view part, char separator, bool in_query) -> absl::Status {
    if (part.empty()) return absl::OkStatus();
    for (absl::string_view attribute : absl::StrSplit(part, separator)) {
      size_t eq = attribute.find('=');
      if (eq == absl::string_view::npos || eq == 0) {
        return Bad(attribute.empty() ? "(empty)" : attribute, "not a name=value attribute");
      }
      std::string name = absl::AsciiStrToLower(attribute.substr(0, eq));
      if (!seen.insert(name).second) return Bad(name, "given more than once");
      absl::StatusOr<std::string> value = PercentDecode(name, attribute.substr(eq + 1));
      if (!value.ok()) return value.status();
      if (value->empty()) return Bad(name, "empty value");
      if (absl::StartsWith(name, "x-")) continue;  // vendor attributes: not ours to interpret
      if (in_query) {
        if (name == "pin-source") {
          uri.pin_source = absl::StartsWith(*value, "file:") ? value->substr(5) : *value;
          if (uri.pin_source.empty()) return Bad(name, "empty file name");
        } else if (name == "module-path") {
          uri.module_path = *value;
        } else if (name == "pin-value") {
          return Bad(name,
                     "a PIN in the URI is visible in the process list; give it in a file (--pkcs11-pin-file or "
                     "pin-source) or in MESHID_PKCS11_PIN");
        } else if (name == "module-name") {
          return Bad(name, "not supported; give the module's file with module-path or --pkcs11-module");
        } else {
          return Bad(name, "unknown query attribute (known: pin-source, module-path)");
        }
        continue;
      }
      if (name == "token") {
        uri.token = *value;
      } else if (name == "manufacturer") {
        uri.manufacturer = *value;
      } else if (name == "model") {
        uri.model = *value;
      } else if (name == "serial") {
        uri.serial = *value;
      } else if (name == "slot-description") {
        uri.slot_description = *value;
      } else if (name == "slot-manufacturer") {
        uri.slot_manufacturer = *value;
      } else if (name == "slot-id") {
        uint64_t slot = 0;
        if (!absl::SimpleAtoi(*value, &slot) || !absl::ascii_isdigit(value->front())) {
          return Bad(name, absl::StrCat("\"", *value, "\" is not a decimal number"));
        }
        uri.slot_id = slot;
      } else if (name == "object") {
        uri.object = *value;
      } else if (name == "id") {
        uri.id = *value;
      } else if (name == "type") {
        if (*value != "private" && *value != "public" && *value != "cert" && *value != "secret-key" &&
            *value != "data") {
          return Bad(name, absl::StrCat("\"", *value, "\" is not one of private, public, cert, secret-key, data"));
        }
        uri.type = *value;
      } else if (name == "library-description" || name == "library-manufacturer" || name == "library-version") {
        return Bad(name, "not supported; name the module with module-path or --pkcs11-module");
      } else {
        return Bad(name, "unknown path attribute");
      }
    }
    return absl::OkStatus();
  };
  if (absl::Status s = parse_part(path, ';', false); !s.ok()) return s;
  if (absl::Status s = parse_part(query, '&', true); !s.ok()) return s;
  return uri;
}

std::string Uri::ToString() const {
  std::vector<std::string> parts;
  auto add = [&](absl::string_view name, absl::string_view value, bool all = false) {
    if (!value.empty()) parts.push_back(absl::StrCat(name, "=", PercentEncode(value, all)));
  };
  add("token", token);
  add("manufacturer", manufacturer);
  add("model", model);
  add("serial", serial);
  add("slot-description", slot_description);
  add("slot-manufacturer", slot_manufacturer);
  if (slot_id.has_value()) parts.push_back(absl::StrCat("slot-id=", *slot_id));
  add("object", object);
  if (id.has_value()) add("id", *id, /*all=*/true);
  add("type", type);
  return absl::StrCat("pkcs11:", absl::StrJoin(parts, ";"));
}

}  // namespace meshid::pkcs11
