#include "pkcs11/uri.h"

#include <algorithm>
#include <iterator>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/percent.h"

namespace meshid::pkcs11 {
namespace {

absl::Status Bad(absl::string_view attribute, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("PKCS#11 URI: ", attribute, ": ", what));
}

absl::StatusOr<std::string> PercentDecode(absl::string_view attribute, absl::string_view value) {
  std::optional<std::string> out = meshid::PercentDecode(value);
  if (!out.has_value()) return Bad(attribute, "a '%' is not followed by two hex digits");
  return *std::move(out);
}

// The path attributes whose value is kept as text, in the order ToString() writes them.
constexpr std::pair<absl::string_view, std::string Uri::*> kTextAttributes[] = {
    {"token", &Uri::token},
    {"manufacturer", &Uri::manufacturer},
    {"model", &Uri::model},
    {"serial", &Uri::serial},
    {"slot-description", &Uri::slot_description},
    {"slot-manufacturer", &Uri::slot_manufacturer},
    {"object", &Uri::object},
};

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
      auto text = std::find_if(std::begin(kTextAttributes), std::end(kTextAttributes),
                               [&](const auto& attribute) { return attribute.first == name; });
      if (text != std::end(kTextAttributes)) {
        uri.*(text->second) = *value;
      } else if (name == "slot-id") {
        uint64_t slot = 0;
        if (!absl::SimpleAtoi(*value, &slot) || !absl::ascii_isdigit(value->front())) {
          return Bad(name, absl::StrCat("\"", *value, "\" is not a decimal number"));
        }
        uri.slot_id = slot;
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
  for (const auto& [name, field] : kTextAttributes) add(name, this->*field);
  if (slot_id.has_value()) parts.push_back(absl::StrCat("slot-id=", *slot_id));
  if (id.has_value()) add("id", *id, /*all=*/true);
  add("type", type);
  return absl::StrCat("pkcs11:", absl::StrJoin(parts, ";"));
}

}  // namespace meshid::pkcs11
