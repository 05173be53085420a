// RFC 7512 PKCS#11 URIs ("pkcs11:token=meshid;object=ca-key?pin-source=file:/run/pin"), as
// `meshid server --ca-key` takes them. Only what names a key and where to find it is accepted:
// a PIN inside the URI (pin-value) is refused, because a command line is visible to every user
// of the machine in the process list.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace meshid::pkcs11 {

struct Uri {
  // Path attributes, percent-decoded. Empty (or nullopt) = not given: matches anything.
  std::string token;         // CK_TOKEN_INFO.label
  std::string manufacturer;  // CK_TOKEN_INFO.manufacturerID
  std::string model;         // CK_TOKEN_INFO.model
  std::string serial;        // CK_TOKEN_INFO.serialNumber
  std::string slot_description;
  std::string slot_manufacturer;
  std::optional<uint64_t> slot_id;
  std::string object;             // CKA_LABEL
  std::optional<std::string> id;  // CKA_ID (bytes)
  std::string type;               // "private", "public", "cert", "secret-key" or "data"
  // Query attributes.
  std::string pin_source;   // a file holding the PIN ("file:" prefix removed)
  std::string module_path;  // the PKCS#11 module to load

  // The URI again, with the attributes that select the key (for logs and errors; no PIN).
  std::string ToString() const;
};

// Parses `text`. InvalidArgument naming the attribute and what is wrong: a scheme other than
// "pkcs11:", a malformed percent-escape, an attribute given twice or with an empty value, an
// unknown attribute (vendor "x-" attributes are ignored, as RFC 7512 allows), pin-value, or
// module-name (give module-path or --pkcs11-module).
absl::StatusOr<Uri> ParseUri(absl::string_view text);

}  // namespace meshid::pkcs11
