// Fresh, empty databases for the store tests: a SQLite file in a new temporary directory, or a
// new database on the PostgreSQL server named by MESHID_TEST_POSTGRES_URL (started by
// scripts/pg-test-server.sh; scripts/test.sh does that), created through that admin URL and
// dropped afterwards, so tests running in parallel never share one.
#pragma once

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <pqxx/pqxx>
#include <regex>
#include <string>

#include "absl/strings/str_cat.h"
#include "sql/store_url.h"
#include "tests/integration/subprocess.h"

namespace meshid::testing {

enum class Backend { kSqlite, kPostgres };

inline std::string BackendName(Backend b) { return b == Backend::kSqlite ? "sqlite" : "postgresql"; }

inline constexpr const char* kNoPostgresMessage =
    "MESHID_TEST_POSTGRES_URL is not set, so the PostgreSQL cases cannot run here; start a server with "
    "eval \"$(scripts/pg-test-server.sh start)\" (scripts/test.sh does this)";

inline std::optional<std::string> PostgresAdminUrl() {
  const char* url = std::getenv("MESHID_TEST_POSTGRES_URL");
  if (url == nullptr || *url == '\0') return std::nullopt;
  return std::string(url);
}

// A new temporary directory, removed with the object.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "meshid-sql-test.XXXXXX").string();
    path_ = mkdtemp(tmpl.data()) != nullptr ? tmpl : "";
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::permissions(path_, std::filesystem::perms::owner_all, std::filesystem::perm_options::add, ec);
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// postgresql://user:password@host:port/<database> from an admin URL.
inline std::string WithDatabase(const std::string& admin_url, const std::string& database) {
  auto parsed = sql::ParseStoreUrl(admin_url);
  if (!parsed.ok()) return "";
  return absl::StrCat("postgresql://", parsed->user, parsed->password.empty() ? "" : ":", parsed->password, "@",
                      parsed->host, ":", parsed->port, "/", database);
}

class TestDatabase {
 public:
  // nullptr when the backend is not available here (PostgreSQL without MESHID_TEST_POSTGRES_URL).
  static std::unique_ptr<TestDatabase> Create(Backend backend) {
    auto db = std::unique_ptr<TestDatabase>(new TestDatabase(backend));
    if (backend == Backend::kSqlite) {
      db->dir_ = std::make_unique<TempDir>();
      db->url_ = "sqlite://" + db->dir_->path() + "/meshid.db";
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
  ~TestDatabase() {
    if (database_.empty()) return;
    try {
      pqxx::connection conn(admin_url_);
      pqxx::nontransaction tx(conn);
      tx.exec("DROP DATABASE IF EXISTS " + database_ + " WITH (FORCE)");
    } catch (const std::exception&) {
      // The server may be gone (tests of outages); the whole cluster is thrown away later.
    }
  }
  const std::string& url() const { return url_; }
  Backend backend() const { return backend_; }
  // SQLite only: the directory holding the file.
  const std::string& dir() const { return dir_->path(); }

 private:
  explicit TestDatabase(Backend backend) : backend_(backend) {}
  Backend backend_;
  std::string url_;
  std::unique_ptr<TempDir> dir_;
  std::string admin_url_;
  std::string database_;
};

// A private PostgreSQL server (scripts/pg-test-server.sh start DIR) that a test may pause and
// resume without disturbing the shared one; stopped and removed with the object.
class PrivatePostgres {
 public:
  PrivatePostgres() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "meshid-pg-private.XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) return;
    dir_ = tmpl;
    auto [status, out] = RunShell(Script("start"));
    std::smatch m;
    static const std::regex re("export MESHID_TEST_POSTGRES_URL=(\\S+)");
    if (status == 0 && std::regex_search(out, m, re)) admin_url_ = m[1].str();
    start_output_ = out;
  }
  ~PrivatePostgres() {
    if (!dir_.empty()) RunShell(Script("stop"));
  }
  bool ok() const { return !admin_url_.empty(); }
  const std::string& start_output() const { return start_output_; }
  std::string url() const { return admin_url_; }
  int Pause() { return RunShell(Script("pause")).first; }
  int Resume() { return RunShell(Script("resume")).first; }

 private:
  std::string Script(const char* command) const { return absl::StrCat(PG_TEST_SERVER_SCRIPT, " ", command, " ", dir_); }
  std::string dir_;
  std::string admin_url_;
  std::string start_output_;
};

}  // namespace meshid::testing
