// Internal to sql/: the SQLite backend of Database.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "sql/database.h"
#include "sql/store.h"

namespace meshid::sql {

// Opens (creating it if allowed) the database file at `path` in WAL mode with synchronous=FULL:
// a commit returns after the WAL is fsync'd, so a committed transaction survives kill -9 and
// power loss. (synchronous=NORMAL would survive kill -9 but may lose the last commits on
// power loss, which the ledger's "durable before the certificate is returned" rule forbids;
// group commit in the CA amortizes the fsync.) Up to options.max_connections connections are
// pooled: readers run concurrently, writers of this process are serialized by a mutex and wait
// up to options.busy_timeout for writers of other processes. Errors: PermissionDenied for a
// file or directory that cannot be written, NotFound for a missing directory (or a missing
// file when !create_if_missing), FailedPrecondition for a file that is not a SQLite database.
absl::StatusOr<std::unique_ptr<Database>> OpenSqliteDatabase(const std::string& path, const StoreOptions& options);

}  // namespace meshid::sql
