#include "sql/sqlite_database.h"

#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <unordered_map>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "sql/connection_pool.h"

namespace meshid::sql {
namespace {

// One sqlite3 handle with its prepared statements; used by one thread at a time (the pool).
struct SqliteConn {
  sqlite3* db = nullptr;
  std::unordered_map<std::string, sqlite3_stmt*> statements;
  SqliteConn() = default;
  SqliteConn(const SqliteConn&) = delete;
  SqliteConn& operator=(const SqliteConn&) = delete;
  ~SqliteConn() {
    for (auto& [sql, stmt] : statements) sqlite3_finalize(stmt);
    sqlite3_close_v2(db);
  }
};

// Maps a SQLite result code (extended) to an absl status; `what` says what was attempted.
absl::Status MapError(int rc, sqlite3* db, const std::string& path, absl::string_view what) {
  std::string message = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  std::string text = absl::StrCat("sqlite ", path, ": ", what, ": ", OneLine(message));
  switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
      if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE) return absl::AlreadyExistsError(text);
      return absl::InvalidArgumentError(text);
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::UnavailableError(absl::StrCat(text, " (another process holds the write lock)"));
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
      return absl::PermissionDeniedError(text);
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
      return absl::FailedPreconditionError(text);
    case SQLITE_TOOBIG:
    case SQLITE_MISMATCH:
    case SQLITE_RANGE:
      return absl::InvalidArgumentError(text);
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_NOMEM:
    case SQLITE_PROTOCOL:
      return absl::UnavailableError(text);
    default:
      return absl::InternalError(text);
  }
}

// "$1" → "?1": the store's statements use PostgreSQL placeholders.
std::string ToSqlitePlaceholders(absl::string_view sql) {
  std::string out(sql);
  for (size_t i = 0; i + 1 < out.size(); ++i) {
    if (out[i] == '$' && absl::ascii_isdigit(static_cast<unsigned char>(out[i + 1]))) out[i] = '?';
  }
  return out;
}

class SqliteTx final : public SqlTx {
 public:
  SqliteTx(SqliteConn& conn, const std::string& path) : conn_(conn), path_(path) {}

  absl::StatusOr<std::vector<SqlRow>> Query(absl::string_view sql, absl::Span<const SqlParam> params) override {
    std::vector<SqlRow> rows;
    MESHID_RETURN_IF_ERROR(Run(sql, params, &rows));
    return rows;
  }

  absl::StatusOr<int64_t> Exec(absl::string_view sql, absl::Span<const SqlParam> params) override {
    MESHID_RETURN_IF_ERROR(Run(sql, params, nullptr));
    return static_cast<int64_t>(sqlite3_changes64(conn_.db));
  }

  absl::Status ExecScript(absl::string_view sql) override {
    std::string script(sql);
    char* error = nullptr;
    int rc = sqlite3_exec(conn_.db, script.c_str(), nullptr, nullptr, &error);
    sqlite3_free(error);
    if (rc != SQLITE_OK) return MapError(sqlite3_extended_errcode(conn_.db), conn_.db, path_, "script");
    return absl::OkStatus();
  }

 private:
  absl::StatusOr<sqlite3_stmt*> Prepare(absl::string_view sql) {
    std::string key(sql);
    if (auto it = conn_.statements.find(key); it != conn_.statements.end()) return it->second;
    std::string text = ToSqlitePlaceholders(sql);
    sqlite3_stmt* stmt = nullptr;
    const char* tail = nullptr;
    int rc = sqlite3_prepare_v3(conn_.db, text.c_str(), static_cast<int>(text.size()), SQLITE_PREPARE_PERSISTENT, &stmt,
                                &tail);
    if (rc != SQLITE_OK) return MapError(sqlite3_extended_errcode(conn_.db), conn_.db, path_, "prepare");
    if (stmt == nullptr || (tail != nullptr && !absl::StripAsciiWhitespace(tail).empty())) {
      sqlite3_finalize(stmt);
      return absl::InternalError("sql: Query/Exec take exactly one statement");
    }
    conn_.statements.emplace(std::move(key), stmt);
    return stmt;
  }

  absl::Status Run(absl::string_view sql, absl::Span<const SqlParam> params, std::vector<SqlRow>* rows) {
    MESHID_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare(sql));
    struct Reset {
      sqlite3_stmt* stmt;
      ~Reset() {
        sqlite3_reset(stmt);
        sqlite3_clear_bindings(stmt);
      }
    } reset{stmt};
    for (size_t i = 0; i < params.size(); ++i) {
      int index = static_cast<int>(i) + 1;
      int rc = SQLITE_OK;
      if (const auto* v = std::get_if<int64_t>(&params[i])) {
        rc = sqlite3_bind_int64(stmt, index, *v);
      } else if (const auto* s = std::get_if<std::string>(&params[i])) {
        rc = sqlite3_bind_text64(stmt, index, s->data(), s->size(), SQLITE_STATIC, SQLITE_UTF8);
      } else {
        rc = sqlite3_bind_null(stmt, index);
      }
      if (rc != SQLITE_OK) return MapError(rc, conn_.db, path_, "bind");
    }
    while (true) {
      int rc = sqlite3_step(stmt);
      if (rc == SQLITE_DONE) return absl::OkStatus();
      if (rc != SQLITE_ROW) return MapError(sqlite3_extended_errcode(conn_.db), conn_.db, path_, "statement");
      if (rows == nullptr) continue;
      SqlRow& row = rows->emplace_back();
      int columns = sqlite3_column_count(stmt);
      row.reserve(columns);
      for (int c = 0; c < columns; ++c) {
        if (sqlite3_column_type(stmt, c) == SQLITE_NULL) {
          row.emplace_back(std::nullopt);
        } else {
          const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt, c));
          row.emplace_back(std::string(text != nullptr ? text : "", sqlite3_column_bytes(stmt, c)));
        }
      }
    }
  }

  SqliteConn& conn_;
  const std::string& path_;
};

class SqliteDatabase final : public Database {
 public:
  // Opens a first connection (creating the file when allowed), so that a bad path fails here.
  static absl::StatusOr<std::unique_ptr<Database>> Open(std::string path, const StoreOptions& options) {
    std::unique_ptr<SqliteDatabase> db(new SqliteDatabase(std::move(path), options));
    MESHID_ASSIGN_OR_RETURN(auto conn, db->Connect(options.create_if_missing));
    conn.reset();  // the pool opens its own; the file now exists in WAL mode
    return db;
  }

  std::string backend() const override { return "sqlite"; }
  std::string description() const override { return "sqlite://" + path_; }

  absl::Status Transact(TxMode mode, absl::FunctionRef<absl::Status(SqlTx&)> body) override {
    MESHID_ASSIGN_OR_RETURN(auto lease, pool_.Acquire());
    // Writers of this process take turns here instead of spinning in SQLite's busy handler.
    const bool reader = mode == TxMode::kRead || mode == TxMode::kReadStatement;
    std::optional<absl::MutexLock> writer;
    if (!reader) writer.emplace(&write_mu_);
    if (mode == TxMode::kReadStatement || mode == TxMode::kWriteStatement) {
      SqliteTx tx(*lease, path_);
      return body(tx);  // autocommit: the statement is its own transaction
    }
    const char* begin = reader ? "BEGIN" : "BEGIN IMMEDIATE";
    if (int rc = sqlite3_exec(lease->db, begin, nullptr, nullptr, nullptr); rc != SQLITE_OK) {
      return MapError(sqlite3_extended_errcode(lease->db), lease->db, path_, "begin");
    }
    SqliteTx tx(*lease, path_);
    absl::Status status = body(tx);
    if (status.ok()) {
      int rc = sqlite3_exec(lease->db, "COMMIT", nullptr, nullptr, nullptr);
      if (rc == SQLITE_OK) return absl::OkStatus();
      status = MapError(sqlite3_extended_errcode(lease->db), lease->db, path_, "commit");
    }
    if (!sqlite3_get_autocommit(lease->db)) sqlite3_exec(lease->db, "ROLLBACK", nullptr, nullptr, nullptr);
    return status;
  }

 private:
  SqliteDatabase(std::string path, const StoreOptions& options)
      : path_(std::move(path)),
        busy_timeout_ms_(static_cast<int>(absl::ToInt64Milliseconds(options.busy_timeout))),
        pool_(options.max_connections, [this] { return Connect(/*create=*/false); }) {}

  absl::StatusOr<std::unique_ptr<SqliteConn>> Connect(bool create) {
    auto conn = std::make_unique<SqliteConn>();
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE | (create ? SQLITE_OPEN_CREATE : 0);
    int rc = sqlite3_open_v2(path_.c_str(), &conn->db, flags, nullptr);
    if (rc != SQLITE_OK) return OpenError(rc, conn->db, create);
    if (sqlite3_db_readonly(conn->db, "main") == 1) {
      return absl::PermissionDeniedError(
          absl::StrCat("sqlite ", path_, ": the file is read-only (meshid writes the ledger; check its permissions)"));
    }
    sqlite3_busy_timeout(conn->db, busy_timeout_ms_);
    sqlite3_extended_result_codes(conn->db, 1);
    // journal_mode=WAL is persistent in the file; asking again is cheap and checks it took.
    sqlite3_stmt* stmt = nullptr;
    rc = sqlite3_prepare_v2(conn->db, "PRAGMA journal_mode=WAL", -1, &stmt, nullptr);
    if (rc == SQLITE_OK) rc = sqlite3_step(stmt);
    std::string mode = rc == SQLITE_ROW ? reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)) : "";
    sqlite3_finalize(stmt);
    if (rc != SQLITE_ROW) return OpenError(sqlite3_extended_errcode(conn->db), conn->db, create);
    if (absl::AsciiStrToLower(mode) != "wal") {
      return absl::FailedPreconditionError(
          absl::StrCat("sqlite ", path_, ": could not switch to WAL mode (journal mode is ", mode, ")"));
    }
    // temp_store=MEMORY: a multi-row INSERT inside a transaction keeps its statement journal
    // in memory instead of creating, writing and unlinking a file in /var/tmp per ledger batch.
    rc = sqlite3_exec(conn->db, "PRAGMA synchronous=FULL; PRAGMA temp_store=MEMORY", nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) return OpenError(sqlite3_extended_errcode(conn->db), conn->db, create);
    return conn;
  }

  // Errors while opening, with the file system's reason where SQLite only says "unable to open".
  absl::Status OpenError(int rc, sqlite3* db, bool create) {
    int err = db != nullptr ? sqlite3_system_errno(db) : 0;
    std::filesystem::path file(path_);
    std::filesystem::path dir = file.has_parent_path() ? file.parent_path() : std::filesystem::path(".");
    std::error_code ec;
    const int primary = rc & 0xff;
    if (primary == SQLITE_CANTOPEN) {
      if (!std::filesystem::is_directory(dir, ec)) {
        return absl::NotFoundError(absl::StrCat("sqlite ", path_, ": directory ", dir.string(), " does not exist"));
      }
      if (!create && !std::filesystem::exists(file, ec)) {
        return absl::NotFoundError(absl::StrCat("sqlite ", path_, ": no database there"));
      }
    }
    if (primary == SQLITE_CANTOPEN || primary == SQLITE_READONLY || err == EACCES || err == EPERM || err == EROFS) {
      // SQLite in WAL mode writes the file and, beside it, its -wal and -shm files.
      if (std::filesystem::exists(file, ec) && access(path_.c_str(), W_OK) != 0) {
        return absl::PermissionDeniedError(absl::StrCat(
            "sqlite ", path_, ": the file is read-only (meshid writes the ledger; check its permissions)"));
      }
      if (access(dir.c_str(), W_OK) != 0) {
        return absl::PermissionDeniedError(absl::StrCat("sqlite ", path_, ": cannot write in directory ", dir.string(),
                                                        " (meshid keeps the database and its WAL files there)"));
      }
    }
    return MapError(rc, db, path_, "open");
  }

  const std::string path_;
  const int busy_timeout_ms_;
  absl::Mutex write_mu_;
  ConnectionPool<SqliteConn> pool_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Database>> OpenSqliteDatabase(const std::string& path, const StoreOptions& options) {
  return SqliteDatabase::Open(path, options);
}

}  // namespace meshid::sql
