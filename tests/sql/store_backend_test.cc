// Behaviour specific to one backend: SQLite file problems and durability, PostgreSQL
// connection problems and recovery after an outage.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "sql/store.h"
#include "sql/store_url.h"
#include "tests/support/databases.h"
#include "tests/support/dependencies.h"
#include "tests/support/status_matchers.h"
#include "tests/support/temp_dir.h"

namespace meshid {
namespace {

using ::meshid::testing::PostgresAdminUrl;
using ::meshid::testing::StatusIs;
using ::meshid::testing::TempDir;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::SizeIs;

IssuanceRecord Record(int n) {
  IssuanceRecord r;
  r.serial_hex = absl::StrFormat("%032X", n + 1);
  r.spiffe_id = "spiffe://cluster.local/ns/default/sa/web";
  r.not_before = absl::FromUnixSeconds(1'800'000'000);
  r.not_after = r.not_before + absl::Hours(1);
  r.public_key_sha256 = std::string(64, 'a');
  r.issuer_serial_hex = "01";
  r.auth_method = "jwt";
  r.auth_detail = "iss=a sub=b";
  r.issued_at = r.not_before;
  return r;
}

// Runs `fn` in a child process as the unprivileged user `nobody` when we are root (root may
// write any file, so a read-only file is only read-only to someone else); returns its status.
absl::Status RunUnprivileged(const std::function<absl::Status()>& fn) {
  if (geteuid() != 0) return fn();
  int fds[2];
  if (pipe(fds) != 0) return absl::InternalError("pipe");
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    absl::Status s = absl::InternalError("could not drop privileges");
    if (setgroups(0, nullptr) == 0 && setgid(65534) == 0 && setuid(65534) == 0) s = fn();
    std::string out = absl::StrCat(static_cast<int>(s.code()), "|", s.message());
    (void)!write(fds[1], out.data(), out.size());
    _exit(0);
  }
  close(fds[1]);
  std::string out;
  char buf[1024];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof(buf))) > 0) out.append(buf, n);
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  size_t bar = out.find('|');
  if (bar == std::string::npos) return absl::InternalError("child reported nothing");
  return absl::Status(static_cast<absl::StatusCode>(std::stoi(out.substr(0, bar))), out.substr(bar + 1));
}

// ---- SQLite ----

TEST(SqliteStoreTest, ReadOnlyFileIsPermissionDenied) {
  TempDir dir;
  const std::string path = dir.path() + "/meshid.db";
  ASSERT_OK(OpenStore("sqlite://" + path, SystemClock::Instance(), MakeNullLogger()).status());
  ASSERT_EQ(chmod(path.c_str(), 0444), 0);
  ASSERT_EQ(chmod(dir.path().c_str(), 0555), 0);
  absl::Status status = RunUnprivileged(
      [&] { return OpenStore("sqlite://" + path, SystemClock::Instance(), MakeNullLogger()).status(); });
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kPermissionDenied, AllOf(HasSubstr(path), HasSubstr("read-only"))));
  EXPECT_THAT(std::string(status.message()), Not(HasSubstr("\n")));
}

TEST(SqliteStoreTest, UnwritableDirectoryIsPermissionDenied) {
  TempDir dir;
  ASSERT_EQ(chmod(dir.path().c_str(), 0555), 0);
  const std::string path = dir.path() + "/meshid.db";
  absl::Status status = RunUnprivileged(
      [&] { return OpenStore("sqlite://" + path, SystemClock::Instance(), MakeNullLogger()).status(); });
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr(path)));
}

TEST(SqliteStoreTest, MissingDirectoryIsNotFound) {
  TempDir dir;
  auto store =
      OpenStore("sqlite://" + dir.path() + "/no/such/dir/meshid.db", SystemClock::Instance(), MakeNullLogger());
  EXPECT_THAT(store.status(), StatusIs(absl::StatusCode::kNotFound, HasSubstr("does not exist")));
}

TEST(SqliteStoreTest, MissingFileIsNotFoundWhenCreationIsNotAllowed) {
  TempDir dir;
  StoreOptions options;
  options.create_if_missing = false;
  auto store = OpenStore("sqlite://" + dir.path() + "/meshid.db", options, SystemClock::Instance(), MakeNullLogger());
  EXPECT_THAT(store.status(), StatusIs(absl::StatusCode::kNotFound, HasSubstr("no database")));
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/meshid.db"));
}

TEST(SqliteStoreTest, FileThatIsNotADatabaseIsRefused) {
  TempDir dir;
  const std::string path = dir.path() + "/meshid.db";
  std::ofstream(path) << std::string(4096, 'x');
  auto store = OpenStore("sqlite://" + path, SystemClock::Instance(), MakeNullLogger());
  EXPECT_THAT(store.status(), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not a database")));
}

TEST(SqliteStoreTest, UsesWalMode) {
  TempDir dir;
  const std::string path = dir.path() + "/meshid.db";
  auto store = OpenStore("sqlite://" + path, SystemClock::Instance(), MakeNullLogger());
  ASSERT_OK(store.status());
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &stmt, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0))), "wal");
  sqlite3_finalize(stmt);
  sqlite3_close(db);
}

TEST(SqliteStoreTest, CommittedBatchSurvivesKill9) {
  TempDir dir;
  const std::string url = "sqlite://" + dir.path() + "/meshid.db";
  pid_t pid = fork();
  if (pid == 0) {
    auto store = OpenStore(url, SystemClock::Instance(), MakeNullLogger());
    if (store.ok() && (*store)->RecordIssuances({Record(1), Record(2)}).ok()) kill(getpid(), SIGKILL);
    _exit(1);  // only reached when recording failed
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "the child could not record its batch";
  auto store = OpenStore(url, SystemClock::Instance(), MakeNullLogger());
  ASSERT_OK(store.status());
  EXPECT_THAT(*(*store)->ListIssuances({}), ElementsAre(Record(2), Record(1)));
}

// ---- PostgreSQL ----

int UnusedPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  int port = ntohs(addr.sin_port);
  close(fd);
  return port;
}

TEST(PostgresStoreTest, UnreachableServerIsUnavailableOnOneLine) {
  const int port = UnusedPort();
  auto store = OpenStore(absl::StrCat("postgresql://meshid:s3cret-pw@127.0.0.1:", port, "/meshid"),
                         SystemClock::Instance(), MakeNullLogger());
  EXPECT_THAT(store.status(), StatusIs(absl::StatusCode::kUnavailable,
                                       AllOf(HasSubstr("cannot connect"), HasSubstr(absl::StrCat("127.0.0.1:", port)),
                                             Not(HasSubstr("s3cret-pw")), Not(HasSubstr("\n")))));
}

class PostgresServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto admin = PostgresAdminUrl();
    MESHID_REQUIRE_DEPENDENCY(admin.has_value(), testing::kPostgresDependency);
    admin_url_ = *admin;
  }
  std::string admin_url_;
};

TEST_F(PostgresServerTest, WrongPasswordIsPermissionDenied) {
  auto parsed = sql::ParseStoreUrl(admin_url_);
  ASSERT_OK(parsed.status());
  auto store = OpenStore(absl::StrCat("postgresql://", parsed->user, ":wrong-password@", parsed->host, ":",
                                      parsed->port, "/", parsed->database),
                         SystemClock::Instance(), MakeNullLogger());
  EXPECT_THAT(store.status(),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       AllOf(HasSubstr("credentials refused"), HasSubstr("password authentication failed"),
                             Not(HasSubstr("wrong-password")), Not(HasSubstr("\n")))));
}

TEST_F(PostgresServerTest, MissingDatabaseIsNotFound) {
  auto store = OpenStore(testing::WithDatabase(admin_url_, "meshid_no_such_database"), SystemClock::Instance(),
                         MakeNullLogger());
  EXPECT_THAT(store.status(), StatusIs(absl::StatusCode::kNotFound, HasSubstr("meshid_no_such_database")));
}

TEST_F(PostgresServerTest, DescriptionHasNoPassword) {
  auto db = testing::TestDatabase::Create(testing::Backend::kPostgres);
  auto store = OpenStore(db->url(), SystemClock::Instance(), MakeNullLogger());
  ASSERT_OK(store.status());
  auto parsed = sql::ParseStoreUrl(db->url());
  EXPECT_THAT((*store)->description(), AllOf(HasSubstr(parsed->host), Not(HasSubstr(parsed->password))));
}

// A server that goes away and comes back: calls fail with Unavailable meanwhile and work again
// afterwards on the same Store, without reopening it. Uses a private server, so pausing it
// disturbs no other test.
TEST_F(PostgresServerTest, RecoversAfterTheServerWasStoppedAndStarted) {
  testing::PrivatePostgres server;
  ASSERT_TRUE(server.ok()) << server.start_output();
  auto store = OpenStore(server.url(), SystemClock::Instance(), MakeNullLogger());
  ASSERT_OK(store.status());
  ASSERT_OK((*store)->RecordIssuances({Record(1)}));

  // Idle pooled connections die with the restart; the next call still succeeds.
  ASSERT_OK(server.Pause());
  ASSERT_OK(server.Resume());
  EXPECT_OK((*store)->RecordIssuances({Record(2)}));

  ASSERT_OK(server.Pause());
  EXPECT_THAT((*store)->RecordIssuances({Record(3)}), StatusIs(absl::StatusCode::kUnavailable, Not(HasSubstr("\n"))));
  EXPECT_THAT((*store)->GetIdentityStatus("spiffe://cluster.local/ns/a/sa/b").status(),
              StatusIs(absl::StatusCode::kUnavailable, ::testing::_));
  EXPECT_THAT((*store)->ListIssuances({}).status(), StatusIs(absl::StatusCode::kUnavailable, ::testing::_));
  ASSERT_OK(server.Resume());
  EXPECT_OK((*store)->RecordIssuances({Record(4)}));
  EXPECT_THAT(*(*store)->ListIssuances({}), ElementsAre(Record(4), Record(2), Record(1)));
}

}  // namespace
}  // namespace meshid
