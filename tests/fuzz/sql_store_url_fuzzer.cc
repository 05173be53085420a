// The datastore URL parser (`--datastore`, an operator-supplied string that may carry a
// password): never crashes, never puts the password into an error or the redacted form, and
// whatever it accepts yields a well-formed libpq connection string.
#include <cstddef>
#include <cstdint>
#include <string>

#include "sql/store_url.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string input(reinterpret_cast<const char*>(data), size);
  auto url = meshid::sql::ParseStoreUrl(input);
  if (!url.ok()) {
    if (std::string(url.status().message()).find('\n') != std::string::npos) __builtin_trap();  // one line
    return 0;
  }
  std::string redacted = url->Redacted();
  if (url->kind == meshid::sql::StoreUrl::Kind::kSqlite) {
    if (url->path.empty() || redacted != "sqlite://" + url->path) __builtin_trap();
    return 0;
  }
  if (url->user.empty() || url->host.empty() || url->database.empty() || url->port < 1 || url->port > 65535) {
    __builtin_trap();
  }
  if (url->password.size() >= 4 && redacted.find(url->password) != std::string::npos &&
      url->user.find(url->password) == std::string::npos && url->host.find(url->password) == std::string::npos &&
      url->database.find(url->password) == std::string::npos) {
    __builtin_trap();  // the password leaked into the redacted form
  }
  // Every value in the conninfo is quoted: no unescaped quote ends one early.
  std::string conninfo = url->PostgresConninfo();
  bool in_quotes = false;
  for (size_t i = 0; i < conninfo.size(); ++i) {
    if (in_quotes && conninfo[i] == '\\') {
      ++i;
    } else if (conninfo[i] == '\'') {
      in_quotes = !in_quotes;
    }
  }
  if (in_quotes) __builtin_trap();
  return 0;
}
