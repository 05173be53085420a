#include "sql/migrations.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace meshid::sql {

absl::StatusOr<int> ReadSchemaVersion(Database& db) {
  int version = 0;
  MESHID_RETURN_IF_ERROR(db.Transact(TxMode::kRead, [&](SqlTx& tx) -> absl::Status {
    MESHID_ASSIGN_OR_RETURN(auto rows, tx.Query(absl::StrCat("SELECT max(version) FROM ", kSchemaVersionTable)));
    version = 0;
    if (!rows.empty() && !rows[0].empty() && rows[0][0].has_value()) {
      MESHID_ASSIGN_OR_RETURN(int64_t v, ColumnInt(rows[0], 0));
      version = static_cast<int>(v);
    }
    return absl::OkStatus();
  }));
  return version;
}

absl::Status ApplyMigrations(Database& db, absl::Span<const Migration> migrations, absl::Time now,
                             const LoggerPtr& logger) {
  for (size_t i = 1; i < migrations.size(); ++i) {
    if (migrations[i].version <= migrations[i - 1].version) {
      return absl::InternalError(absl::StrCat("sql: migration versions are not increasing at ", migrations[i].name));
    }
  }
  const int newest = migrations.empty() ? 0 : migrations.back().version;
  std::vector<std::string> applied;
  int before = 0;
  absl::Status status = db.Transact(TxMode::kMigrate, [&](SqlTx& tx) -> absl::Status {
    applied.clear();
    MESHID_RETURN_IF_ERROR(tx.ExecScript(absl::StrCat("CREATE TABLE IF NOT EXISTS ", kSchemaVersionTable,
                                                      " (version BIGINT PRIMARY KEY, name TEXT NOT NULL,"
                                                      " applied_at_us BIGINT NOT NULL)")));
    MESHID_ASSIGN_OR_RETURN(auto rows, tx.Query(absl::StrCat("SELECT max(version) FROM ", kSchemaVersionTable)));
    before = 0;
    if (!rows.empty() && !rows[0].empty() && rows[0][0].has_value()) {
      MESHID_ASSIGN_OR_RETURN(int64_t v, ColumnInt(rows[0], 0));
      before = static_cast<int>(v);
    }
    if (before > newest) {
      return absl::FailedPreconditionError(absl::StrCat(db.description(), ": the database schema is at version ",
                                                        before, ", newer than this meshid understands (", newest,
                                                        "); upgrade meshid, or point --datastore at another database"));
    }
    for (const Migration& m : migrations) {
      if (m.version <= before) continue;
      absl::Status s = tx.ExecScript(m.sql);
      if (!s.ok()) return absl::Status(s.code(), absl::StrCat("migration ", m.name, ": ", s.message()));
      MESHID_RETURN_IF_ERROR(
          tx.Exec(absl::StrCat("INSERT INTO ", kSchemaVersionTable,
                               " (version, name, applied_at_us) VALUES ($1, $2, $3)"),
                  {SqlParam(int64_t{m.version}), SqlParam(std::string(m.name)), SqlParam(absl::ToUnixMicros(now))})
              .status());
      applied.emplace_back(m.name);
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  if (!applied.empty()) {
    logger->info("datastore {}: schema version {} -> {} (applied {})", db.description(), before, newest,
                 absl::StrJoin(applied, ", "));
  }
  return absl::OkStatus();
}

}  // namespace meshid::sql
