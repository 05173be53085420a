#include "sql/database.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace meshid::sql {

absl::StatusOr<int64_t> ColumnInt(const SqlRow& row, size_t i) {
  int64_t value = 0;
  if (i >= row.size() || !row[i].has_value() || !absl::SimpleAtoi(*row[i], &value)) {
    return absl::InternalError(absl::StrCat("sql: column ", i, " is not an integer"));
  }
  return value;
}

std::string ColumnText(const SqlRow& row, size_t i) { return i < row.size() && row[i].has_value() ? *row[i] : ""; }

std::string OneLine(absl::string_view message) {
  std::string out;
  out.reserve(message.size());
  bool blank = false;
  for (char c : message) {
    if (absl::ascii_isspace(static_cast<unsigned char>(c))) {
      blank = true;
      continue;
    }
    if (blank && !out.empty()) out.push_back(' ');
    blank = false;
    out.push_back(c);
  }
  for (absl::string_view prefix : {"ERROR: ", "FATAL: "}) {
    if (absl::StartsWith(out, prefix)) out.erase(0, prefix.size());
  }
  return out;
}

}  // namespace meshid::sql
