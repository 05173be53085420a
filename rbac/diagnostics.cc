#include "rbac/diagnostics.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace meshid::rbac {

std::string Diagnostic::ToString() const {
  std::string out;
  if (!file.empty()) {
    absl::StrAppend(&out, file);
    if (line > 0) absl::StrAppend(&out, ":", line);
    absl::StrAppend(&out, ": ");
  }
  if (severity == Severity::kWarning) absl::StrAppend(&out, "warning: ");
  if (!object.empty()) absl::StrAppend(&out, object, ": ");
  if (!field.empty()) absl::StrAppend(&out, field, ": ");
  absl::StrAppend(&out, message);
  return out;
}

bool Diagnostics::has_errors() const { return error_count() > 0; }

size_t Diagnostics::error_count() const {
  size_t n = 0;
  for (const auto& d : items_) n += d.severity == Diagnostic::Severity::kError;
  return n;
}

std::vector<Diagnostic> Diagnostics::errors() const {
  std::vector<Diagnostic> out;
  for (const auto& d : items_)
    if (d.severity == Diagnostic::Severity::kError) out.push_back(d);
  return out;
}

std::vector<Diagnostic> Diagnostics::warnings() const {
  std::vector<Diagnostic> out;
  for (const auto& d : items_)
    if (d.severity == Diagnostic::Severity::kWarning) out.push_back(d);
  return out;
}

absl::Status Diagnostics::ToStatus() const {
  std::vector<std::string> lines;
  for (const auto& d : items_)
    if (d.severity == Diagnostic::Severity::kError) lines.push_back(d.ToString());
  if (lines.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(lines.size(), lines.size() == 1 ? " error" : " errors",
                                                 " in policy configuration:\n", absl::StrJoin(lines, "\n")));
}

}  // namespace meshid::rbac
