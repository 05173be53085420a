// Internal to sql/: the PostgreSQL backend of Database (libpqxx).
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "sql/database.h"
#include "sql/store.h"
#include "sql/store_url.h"

namespace meshid::sql {

// Connects once (so a bad address or bad credentials fail here, with a one-line error) and
// keeps up to url.pool_size (else options.max_connections) connections. A connection that
// broke is dropped together with the idle ones; a transaction that failed on a reused
// connection before anything was committed is retried once on a fresh one, so requests fail
// with Unavailable while the server is down and succeed again, without a restart, once it is
// back. Every commit is synchronous (synchronous_commit=on is forced per session). Migrations
// hold a transaction-scoped advisory lock, so concurrent starts migrate once.
// Errors: Unavailable (unreachable, connection lost, commit outcome unknown), PermissionDenied
// (credentials refused, no privilege), NotFound (no such database), AlreadyExists (unique
// violation), InvalidArgument (data the server refused), Internal (anything else).
absl::StatusOr<std::unique_ptr<Database>> OpenPostgresDatabase(const StoreUrl& url, const StoreOptions& options);

}  // namespace meshid::sql
