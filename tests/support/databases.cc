#include "tests/support/databases.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <pqxx/pqxx>
#include <regex>

#include "absl/strings/str_cat.h"
#include "sql/store_url.h"
#include "tests/support/subprocess.h"

namespace meshid::testing {

std::string BackendName(Backend backend) { return backend == Backend::kSqlite ? "sqlite" : "postgresql"; }

std::optional<std::string> PostgresAdminUrl() {
  const char* url = std::getenv("MESHID_TEST_POSTGRES_URL");
  if (url == nullptr || *url == '\0') return std::nullopt;
  return std::string(url);
}

std::string WithDatabase(const std::string& admin_url, const std::string& database) {
  auto parsed = sql::ParseStoreUrl(admin_url);
  if (!parsed.ok()) return "";
  return absl::StrCat("postgresql://", parsed->user, parsed->password.empty() ? "" : ":", parsed->password, "@",
                      parsed->host, ":", parsed->port, "/", database);
}

std::unique_ptr<TestDatabase> TestDatabase::Create(Backend backend) {
  auto db = std::unique_ptr<TestDatabase>(new TestDatabase(backend));
  if (backend == Backend::kSqlite) {
    db->dir_ = std::make_unique<TempDir>("meshid-sql-test");
    db->url_ = "sqlite://" + db->dir_->File("meshid.db");
    return db;
  }
  auto admin = PostgresAdminUrl();
  if (!admin) return nullptr;
  static std::atomic<int> counter{0};
  db->admin_url_ = *admin;
  db->database_ = absl::StrCat("meshid_t_", getpid(), "_", counter++);
  pqxx::connection conn(db->admin_url_);
  pqxx::nontransaction tx(conn);
  tx.exec("DROP DATABASE IF EXISTS " + db->database_);
  tx.exec("CREATE DATABASE " + db->database_);
  db->url_ = WithDatabase(db->admin_url_, db->database_);
  return db;
}

TestDatabase::~TestDatabase() {
  if (database_.empty()) return;
  try {
    pqxx::connection conn(admin_url_);
    pqxx::nontransaction tx(conn);
    tx.exec("DROP DATABASE IF EXISTS " + database_ + " WITH (FORCE)");
  } catch (const std::exception&) {
    // The server may be gone (tests of outages); the whole cluster is thrown away later.
  }
}

PrivatePostgres::PrivatePostgres() {
  std::string pattern = (std::filesystem::temp_directory_path() / "meshid-pg-private.XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) {
    ADD_FAILURE() << "cannot create a directory for a private PostgreSQL: " << pattern;
    return;
  }
  dir_ = pattern;
  auto [status, out] = RunShell(absl::StrCat(PG_TEST_SERVER_SCRIPT, " start ", dir_));
  start_output_ = out;
  std::smatch m;
  static const std::regex kUrlExport("export MESHID_TEST_POSTGRES_URL=(\\S+)");
  if (status == 0 && std::regex_search(out, m, kUrlExport)) admin_url_ = m[1].str();
  if (admin_url_.empty()) ADD_FAILURE() << "a private PostgreSQL did not start:\n" << out;
}

PrivatePostgres::~PrivatePostgres() {
  if (!dir_.empty()) RunShell(absl::StrCat(PG_TEST_SERVER_SCRIPT, " stop ", dir_));
}

absl::Status PrivatePostgres::Pause() { return RunScript("pause"); }
absl::Status PrivatePostgres::Resume() { return RunScript("resume"); }

absl::Status PrivatePostgres::RunScript(const char* command) const {
  auto [status, out] = RunShell(absl::StrCat(PG_TEST_SERVER_SCRIPT, " ", command, " ", dir_));
  if (status != 0) {
    return absl::InternalError(absl::StrCat("pg-test-server.sh ", command, " exited ", status, ": ", out));
  }
  return absl::OkStatus();
}

}  // namespace meshid::testing
