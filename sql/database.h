// Internal to sql/: the small SQL surface the store is written against, implemented once per
// backend (sqlite_database.cc, postgres_database.cc). Statements use PostgreSQL placeholders
// ($1, $2, ...); the SQLite backend rewrites them. Every value travels as NULL, a 64-bit
// integer or text, and every result column comes back as text (or NULL), so the store's
// queries and row decoding are shared by both backends.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace meshid::sql {

using SqlParam = std::variant<std::nullptr_t, int64_t, std::string>;
using SqlRow = std::vector<std::optional<std::string>>;

// One open transaction. Used by one thread, only inside Database::Transact.
class SqlTx {
 public:
  virtual ~SqlTx() = default;
  // Runs one statement and returns its rows (none for statements without results).
  virtual absl::StatusOr<std::vector<SqlRow>> Query(absl::string_view sql, absl::Span<const SqlParam> params = {}) = 0;
  // Runs one statement and returns how many rows it changed.
  virtual absl::StatusOr<int64_t> Exec(absl::string_view sql, absl::Span<const SqlParam> params = {}) = 0;
  // Runs several statements without parameters (a migration file).
  virtual absl::Status ExecScript(absl::string_view sql) = 0;
};

enum class TxMode {
  kRead,  // reads only
  // Exactly one read statement, run without an explicit transaction (autocommit): saves
  // PostgreSQL the BEGIN and COMMIT round trips on hot single-row lookups.
  kReadStatement,
  kWrite,  // reads and writes; writers on one database are serialized
  // Exactly one write statement, run without an explicit transaction: a single statement is
  // atomic and, once it returns, committed durably. Saves PostgreSQL two round trips per ledger
  // batch. A connection lost mid-statement leaves the outcome unknown and a stale pooled
  // connection is retried once, so the statement must be safe to run twice (an INSERT of
  // unique keys: a repeat fails with AlreadyExists).
  kWriteStatement,
  kMigrate,  // like kWrite, and exclusive against other processes migrating the same database
};

class Database {
 public:
  virtual ~Database() = default;
  virtual std::string backend() const = 0;
  // Where the data lives, without credentials.
  virtual std::string description() const = 0;
  // Runs `body` inside one transaction: commits if it returns OK (returning only once the
  // commit is durable), rolls back otherwise and returns its error. Errors of the database are
  // mapped to absl codes (see store.h). `body` may run a second time when a pooled connection
  // turned out to be dead before anything was committed, so it must reset what it fills in.
  // Thread-safe.
  virtual absl::Status Transact(TxMode mode, absl::FunctionRef<absl::Status(SqlTx&)> body) = 0;
};

// Helpers for decoding result text.
absl::StatusOr<int64_t> ColumnInt(const SqlRow& row, size_t i);
std::string ColumnText(const SqlRow& row, size_t i);

// Collapses a multi-line driver message into one line (newlines and runs of blanks become one
// space; "ERROR:"/"FATAL:" prefixes removed).
std::string OneLine(absl::string_view message);

}  // namespace meshid::sql
