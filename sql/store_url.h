// Parsing of datastore URLs (the `--datastore` flag):
//   sqlite://<path>                         relative path (sqlite://var/lib/meshid/meshid.db)
//   sqlite:///<absolute path>
//   postgresql://user[:password]@host[:port]/database[?param=value&...]   (also postgres://)
// PostgreSQL user, password and database are percent-decoded; host is a name, an IPv4 address
// or [IPv6]; the port defaults to 5432. Query parameters are the libpq connection parameters
// meshid passes through (sslmode, sslrootcert, sslcert, sslkey, connect_timeout,
// application_name, target_session_attrs, keepalives, keepalives_idle, keepalives_interval,
// keepalives_count) plus meshid's own `pool_size`.
#pragma once

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace meshid::sql {

struct StoreUrl {
  enum class Kind { kSqlite, kPostgres };
  Kind kind = Kind::kSqlite;
  std::string path;  // SQLite: the file
  // PostgreSQL:
  std::string user;
  std::string password;
  std::string host;  // without brackets for IPv6
  int port = 5432;
  std::string database;
  std::map<std::string, std::string> params;  // libpq parameters, validated
  int pool_size = 0;                          // 0: StoreOptions::max_connections

  // The URL without the password, for logs and error messages.
  std::string Redacted() const;
  // PostgreSQL: a libpq key=value connection string (values quoted), with meshid's defaults
  // for connect_timeout (5 s), application_name and client_min_messages unless given.
  std::string PostgresConninfo() const;
};

// InvalidArgument naming what is wrong (never echoing a password).
absl::StatusOr<StoreUrl> ParseStoreUrl(absl::string_view url);

}  // namespace meshid::sql
