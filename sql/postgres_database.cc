#include "sql/postgres_database.h"

#include <functional>
#include <memory>
#include <pqxx/pqxx>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "sql/connection_pool.h"

namespace meshid::sql {
namespace {

// pg_advisory_xact_lock key held while migrating ("meshid" + 1).
constexpr int64_t kMigrationLockKey = 0x6D6573686964'0001;

bool IsConnectionState(const std::string& sqlstate) {
  return absl::StartsWith(sqlstate, "08") || sqlstate == "57P01" || sqlstate == "57P02" || sqlstate == "57P03";
}

absl::Status MapSqlError(const pqxx::sql_error& e, const std::string& where) {
  const std::string& state = e.sqlstate();
  std::string text = absl::StrCat(where, ": ", OneLine(e.what()));
  if (state == "23505") return absl::AlreadyExistsError(text);
  if (absl::StartsWith(state, "22") || absl::StartsWith(state, "23")) return absl::InvalidArgumentError(text);
  if (absl::StartsWith(state, "28") || state == "42501") return absl::PermissionDeniedError(text);
  if (state == "3D000") return absl::NotFoundError(text);
  if (IsConnectionState(state) || absl::StartsWith(state, "53") || state == "40001" || state == "40P01" ||
      state == "55P03" || state == "57014") {
    return absl::UnavailableError(text);
  }
  return absl::InternalError(text);
}

// Errors while connecting: libpq reports them as text only.
absl::Status MapConnectError(const std::exception& e, const std::string& where) {
  std::string message = OneLine(e.what());
  if (absl::StrContains(message, "password authentication failed") ||
      absl::StrContains(message, "no pg_hba.conf entry") || absl::StrContains(message, "no password supplied") ||
      absl::StrContains(message, "authentication failed") ||
      (absl::StrContains(message, "role \"") && absl::StrContains(message, "does not exist"))) {
    return absl::PermissionDeniedError(absl::StrCat(where, ": credentials refused: ", message));
  }
  if (absl::StrContains(message, "database \"") && absl::StrContains(message, "does not exist")) {
    return absl::NotFoundError(absl::StrCat(where, ": ", message));
  }
  return absl::UnavailableError(absl::StrCat(where, ": cannot connect: ", message));
}

class PgTx final : public SqlTx {
 public:
  PgTx(pqxx::transaction_base& work, const std::string& where) : work_(work), where_(where) {}

  absl::StatusOr<std::vector<SqlRow>> Query(absl::string_view sql, absl::Span<const SqlParam> params) override {
    MESHID_ASSIGN_OR_RETURN(pqxx::result result, Run(sql, params));
    std::vector<SqlRow> rows;
    rows.reserve(result.size());
    for (const auto& r : result) {
      SqlRow& row = rows.emplace_back();
      row.reserve(r.size());
      for (const auto& field : r) {
        if (field.is_null()) {
          row.emplace_back(std::nullopt);
        } else {
          row.emplace_back(std::string(field.c_str(), field.size()));
        }
      }
    }
    return rows;
  }

  absl::StatusOr<int64_t> Exec(absl::string_view sql, absl::Span<const SqlParam> params) override {
    MESHID_ASSIGN_OR_RETURN(pqxx::result result, Run(sql, params));
    return static_cast<int64_t>(result.affected_rows());
  }

  absl::Status ExecScript(absl::string_view sql) override {
    try {
      work_.exec(std::string(sql));
      return absl::OkStatus();
    } catch (const std::exception& e) {
      return Map(e);
    }
  }

  bool broken() const { return broken_; }

 private:
  absl::StatusOr<pqxx::result> Run(absl::string_view sql, absl::Span<const SqlParam> params) {
    std::vector<std::string> storage;
    storage.reserve(params.size());
    std::vector<const char*> values;
    values.reserve(params.size());
    for (const SqlParam& p : params) {
      if (const auto* v = std::get_if<int64_t>(&p)) {
        values.push_back(storage.emplace_back(std::to_string(*v)).c_str());
      } else if (const auto* s = std::get_if<std::string>(&p)) {
        values.push_back(s->c_str());
      } else {
        values.push_back(nullptr);
      }
    }
    try {
      // Named prepared statements: PostgreSQL parses and plans each text once per connection
      // instead of on every call. Redefining a name with the same text is a no-op in libpqxx.
      std::string text(sql);
      std::string name = absl::StrCat("meshid_", absl::Hex(std::hash<std::string>{}(text)), "_", text.size());
      work_.conn().prepare(name, text);
      return work_.exec_prepared(name, pqxx::prepare::make_dynamic_params(values));
    } catch (const std::exception& e) {
      return Map(e);
    }
  }

  absl::Status Map(const std::exception& e) {
    if (const auto* broken = dynamic_cast<const pqxx::broken_connection*>(&e)) {
      broken_ = true;
      return absl::UnavailableError(absl::StrCat(where_, ": lost the connection: ", OneLine(broken->what())));
    }
    if (const auto* sql = dynamic_cast<const pqxx::sql_error*>(&e)) {
      if (IsConnectionState(sql->sqlstate())) broken_ = true;
      return MapSqlError(*sql, where_);
    }
    return absl::InternalError(absl::StrCat(where_, ": ", OneLine(e.what())));
  }

  pqxx::transaction_base& work_;
  const std::string& where_;
  bool broken_ = false;
};

class PostgresDatabase final : public Database {
 public:
  // Connects once, so that a bad address or bad credentials fail here.
  static absl::StatusOr<std::unique_ptr<Database>> Open(const StoreUrl& url, const StoreOptions& options) {
    std::unique_ptr<PostgresDatabase> db(new PostgresDatabase(url, options));
    MESHID_ASSIGN_OR_RETURN(auto lease, db->pool_.Acquire());
    return db;
  }

  std::string backend() const override { return "postgresql"; }
  std::string description() const override { return where_; }

  absl::Status Transact(TxMode mode, absl::FunctionRef<absl::Status(SqlTx&)> body) override {
    for (int attempt = 0;; ++attempt) {
      MESHID_ASSIGN_OR_RETURN(auto lease, pool_.Acquire());
      const bool may_retry = lease.reused() && attempt == 0;
      absl::Status status;
      bool broken = false;
      try {
        std::unique_ptr<pqxx::transaction_base> work;
        if (mode == TxMode::kReadStatement || mode == TxMode::kWriteStatement) {
          work = std::make_unique<pqxx::nontransaction>(*lease);
        } else {
          work = std::make_unique<pqxx::work>(*lease);
        }
        if (mode == TxMode::kMigrate) work->exec(absl::StrCat("SELECT pg_advisory_xact_lock(", kMigrationLockKey, ")"));
        PgTx tx(*work, where_);
        status = body(tx);
        broken = tx.broken();
        if (status.ok()) {
          work->commit();
          return absl::OkStatus();
        }
      } catch (const pqxx::in_doubt_error& e) {
        lease.Discard();
        pool_.DropIdle();
        return absl::UnavailableError(absl::StrCat(
            where_, ": lost the connection while committing; the outcome is unknown: ", OneLine(e.what())));
      } catch (const pqxx::broken_connection& e) {
        broken = true;
        status = absl::UnavailableError(absl::StrCat(
            where_, ": lost the connection", mode == TxMode::kWriteStatement ? " (the write's outcome is unknown)" : "",
            ": ", OneLine(e.what())));
      } catch (const pqxx::sql_error& e) {
        broken = IsConnectionState(e.sqlstate());
        status = MapSqlError(e, where_);
      } catch (const std::exception& e) {
        status = absl::InternalError(absl::StrCat(where_, ": ", OneLine(e.what())));
      }
      if (broken) {
        lease.Discard();
        pool_.DropIdle();
        // The pooled connection was stale: nothing was committed, or (kWriteStatement) the
        // statement may have run and running it again is safe.
        if (may_retry) continue;
      }
      return status;
    }
  }

 private:
  PostgresDatabase(const StoreUrl& url, const StoreOptions& options)
      : where_(url.Redacted()),
        conninfo_(url.PostgresConninfo()),
        pool_(url.pool_size > 0 ? url.pool_size : options.max_connections, [this] { return Connect(); }) {}

  absl::StatusOr<std::unique_ptr<pqxx::connection>> Connect() {
    try {
      return std::make_unique<pqxx::connection>(conninfo_);
    } catch (const std::exception& e) {
      return MapConnectError(e, where_);
    }
  }

  const std::string where_;  // the URL without password, prefixed to every error
  const std::string conninfo_;
  ConnectionPool<pqxx::connection> pool_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Database>> OpenPostgresDatabase(const StoreUrl& url, const StoreOptions& options) {
  return PostgresDatabase::Open(url, options);
}

}  // namespace meshid::sql
