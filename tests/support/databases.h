// Databases for tests, on both store backends: a fresh SQLite file in a new temporary
// directory, or a fresh database on the PostgreSQL server the suite shares (named by
// MESHID_TEST_POSTGRES_URL; scripts/test.sh starts one with scripts/pg-test-server.sh), and a
// private PostgreSQL server for tests that stop and start it.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "tests/support/temp_dir.h"

namespace meshid::testing {

enum class Backend { kSqlite, kPostgres };

// "sqlite" or "postgresql" (the names the stores report, and the test name suffixes).
std::string BackendName(Backend backend);

// What MESHID_REQUIRE_DEPENDENCY (tests/support/dependencies.h) reports when a PostgreSQL case
// finds no server.
inline constexpr char kPostgresDependency[] =
    "PostgreSQL (MESHID_TEST_POSTGRES_URL is not set; start a server with "
    "eval \"$(scripts/pg-test-server.sh start)\", as scripts/test.sh does)";

// MESHID_TEST_POSTGRES_URL (the shared server's superuser URL), or nullopt when not set.
std::optional<std::string> PostgresAdminUrl();

// postgresql://user:password@host:port/<database> on the server of `admin_url` ("" if that
// URL does not parse).
std::string WithDatabase(const std::string& admin_url, const std::string& database);

// A fresh database of one backend, dropped (PostgreSQL) or removed (SQLite) with the object, so
// that tests running in parallel never share one. Not thread-safe; one owner.
class TestDatabase {
 public:
  // nullptr when the backend is not available here: PostgreSQL without MESHID_TEST_POSTGRES_URL
  // (callers then use MESHID_REQUIRE_DEPENDENCY with kPostgresDependency). A configured server
  // that refuses to create the database throws pqxx's exception, which fails the test.
  static std::unique_ptr<TestDatabase> Create(Backend backend);
  ~TestDatabase();
  TestDatabase(const TestDatabase&) = delete;
  TestDatabase& operator=(const TestDatabase&) = delete;

  // The store URL (sqlite://<dir>/meshid.db or postgresql://...).
  const std::string& url() const { return url_; }
  Backend backend() const { return backend_; }
  // SQLite only: the directory holding meshid.db (what `--data-dir` takes).
  const std::string& dir() const { return dir_->path(); }

 private:
  explicit TestDatabase(Backend backend) : backend_(backend) {}

  Backend backend_;
  std::string url_;
  std::unique_ptr<TempDir> dir_;  // SQLite
  std::string admin_url_;         // PostgreSQL
  std::string database_;
};

// A PostgreSQL server of its own (scripts/pg-test-server.sh in a new temporary directory), for
// tests that pause and resume it without disturbing the shared one; stopped and removed with
// the object. A server that does not start is a test failure (and url() is then ""). Not
// thread-safe; one owner.
class PrivatePostgres {
 public:
  PrivatePostgres();
  ~PrivatePostgres();
  PrivatePostgres(const PrivatePostgres&) = delete;
  PrivatePostgres& operator=(const PrivatePostgres&) = delete;

  bool ok() const { return !admin_url_.empty(); }
  // What `pg-test-server.sh start` printed.
  const std::string& start_output() const { return start_output_; }
  // The superuser URL (database "postgres").
  const std::string& url() const { return admin_url_; }
  // Stops the server, keeping its data and port; Resume() starts it again.
  absl::Status Pause();
  absl::Status Resume();

 private:
  absl::Status RunScript(const char* command) const;

  std::string dir_;
  std::string admin_url_;
  std::string start_output_;
};

}  // namespace meshid::testing
