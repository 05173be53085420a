// Validation findings for policy documents. Every finding names the file, the line, the object
// ("AuthorizationPolicy ns/name") and the field path ("spec.rules[0].from[0].source.principals"),
// and loaders collect all of them before giving up, so a user fixes everything in one pass.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace meshid::rbac {

struct Diagnostic {
  enum class Severity { kError, kWarning };
  Severity severity = Severity::kError;
  std::string file;    // "" for objects built in code
  int line = 0;        // 1-based, 0 if unknown
  std::string object;  // e.g. "ServiceRole default/reader", "" before the object is known
  std::string field;   // e.g. "spec.rules[0].methods", "" for the whole object
  std::string message;

  // "file:line: object: field: message" (empty parts are left out).
  std::string ToString() const;
};

// Collects findings. Not thread-safe; one per load.
class Diagnostics {
 public:
  void Add(Diagnostic d) { items_.push_back(std::move(d)); }
  bool has_errors() const;
  size_t error_count() const;
  const std::vector<Diagnostic>& items() const { return items_; }
  std::vector<Diagnostic> errors() const;
  std::vector<Diagnostic> warnings() const;
  // OK without errors; otherwise InvalidArgument listing every error, one per line.
  absl::Status ToStatus() const;

 private:
  std::vector<Diagnostic> items_;
};

}  // namespace meshid::rbac
