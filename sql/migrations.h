// Internal to sql/ (and its tests): schema migrations and the runner that applies them.
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/logging.h"
#include "sql/database.h"
#include "sql/store.h"

namespace meshid::sql {

struct Migration {
  int version;             // NNNN of the file name, strictly increasing
  absl::string_view name;  // the file name, e.g. "0001_ledger_registry_denylist.sql"
  absl::string_view sql;   // its text
};

// sql/migrations/*.sql in order, embedded at build time (generated embedded_migrations.cc).
absl::Span<const Migration> BuiltinMigrations();

// The table recording applied migrations (one row per version).
inline constexpr absl::string_view kSchemaVersionTable = "meshid_schema_version";

// Brings the database up to date in ONE transaction (TxMode::kMigrate, so concurrent starts
// apply each migration once): creates the version table if needed, refuses a database whose
// version is above the newest of `migrations` (FailedPrecondition), applies the missing ones in
// order and records them. On any error nothing is applied. `now` is recorded as applied_at;
// what was applied is logged to `logger` (not null).
absl::Status ApplyMigrations(Database& db, absl::Span<const Migration> migrations, absl::Time now,
                             const LoggerPtr& logger);

// The highest applied version (0 for an empty database).
absl::StatusOr<int> ReadSchemaVersion(Database& db);

// OpenStore with a given migration set instead of the built-in one (tests of the migration
// runner: failing, newer and multi-step migrations).
absl::StatusOr<std::unique_ptr<Store>> OpenStoreWithMigrations(const std::string& url, const StoreOptions& options,
                                                               absl::Span<const Migration> migrations,
                                                               const Clock& clock, const LoggerPtr& logger);

}  // namespace meshid::sql
