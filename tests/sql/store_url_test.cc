#include "sql/store_url.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "sql/store.h"
#include "tests/support/status_matchers.h"

namespace meshid::sql {
namespace {

using ::meshid::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(StoreUrlTest, SqliteRelativeAndAbsolutePaths) {
  auto rel = ParseStoreUrl("sqlite://var/lib/meshid/meshid.db");
  ASSERT_OK(rel.status());
  EXPECT_EQ(rel->kind, StoreUrl::Kind::kSqlite);
  EXPECT_EQ(rel->path, "var/lib/meshid/meshid.db");
  auto abs = ParseStoreUrl("sqlite:///srv/meshid/meshid.db");
  ASSERT_OK(abs.status());
  EXPECT_EQ(abs->path, "/srv/meshid/meshid.db");
  EXPECT_EQ(abs->Redacted(), "sqlite:///srv/meshid/meshid.db");
  EXPECT_EQ(ParseStoreUrl("SQLite://./x.db")->path, "./x.db");
}

TEST(StoreUrlTest, PostgresFull) {
  auto url = ParseStoreUrl(
      "postgresql://meshid:p%40ss%3Aw'rd@db.example.com:6432/meshid_prod?sslmode=verify-full&pool_size=4");
  ASSERT_OK(url.status());
  EXPECT_EQ(url->kind, StoreUrl::Kind::kPostgres);
  EXPECT_EQ(url->user, "meshid");
  EXPECT_EQ(url->password, "p@ss:w'rd");
  EXPECT_EQ(url->host, "db.example.com");
  EXPECT_EQ(url->port, 6432);
  EXPECT_EQ(url->database, "meshid_prod");
  EXPECT_EQ(url->params.at("sslmode"), "verify-full");
  EXPECT_EQ(url->pool_size, 4);
  EXPECT_EQ(url->Redacted(), "postgresql://meshid:***@db.example.com:6432/meshid_prod");
  std::string conninfo = url->PostgresConninfo();
  EXPECT_THAT(conninfo,
              AllOf(HasSubstr("host='db.example.com'"), HasSubstr("port=6432"), HasSubstr("dbname='meshid_prod'"),
                    HasSubstr("password='p@ss:w\\'rd'"), HasSubstr("sslmode='verify-full'"),
                    HasSubstr("connect_timeout='5'"), HasSubstr("synchronous_commit=on"), Not(HasSubstr("pool_size"))));
}

TEST(StoreUrlTest, PostgresDefaultsAndIpv6) {
  auto url = ParseStoreUrl("postgres://u@[::1]/db");
  ASSERT_OK(url.status());
  EXPECT_EQ(url->host, "::1");
  EXPECT_EQ(url->port, 5432);
  EXPECT_TRUE(url->password.empty());
  EXPECT_EQ(url->Redacted(), "postgresql://u@[::1]:5432/db");
  EXPECT_THAT(url->PostgresConninfo(), Not(HasSubstr("password")));
  EXPECT_EQ(ParseStoreUrl("postgresql://u@[::1]:5433/db")->port, 5433);
  EXPECT_THAT(ParseStoreUrl("postgresql://u@h/db?connect_timeout=1")->PostgresConninfo(),
              HasSubstr("connect_timeout='1'"));
}

struct BadUrl {
  const char* url;
  const char* message;
};

class BadStoreUrlTest : public ::testing::TestWithParam<BadUrl> {};

TEST_P(BadStoreUrlTest, IsInvalidArgumentNamingTheProblem) {
  auto url = ParseStoreUrl(GetParam().url);
  EXPECT_THAT(url.status(), StatusIs(absl::StatusCode::kInvalidArgument,
                                     AllOf(HasSubstr("datastore URL"), HasSubstr(GetParam().message),
                                           Not(HasSubstr("topsecret")), Not(HasSubstr("\n")))));
  // OpenStore reports the same without touching anything.
  EXPECT_EQ(OpenStore(GetParam().url, SystemClock::Instance(), MakeNullLogger()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BadStoreUrlTest,
    ::testing::Values(BadUrl{"", "empty"}, BadUrl{"meshid.db", "not a URL"}, BadUrl{"/var/lib/meshid.db", "not a URL"},
                      BadUrl{"mysql://u@h/db", "unsupported scheme 'mysql'"}, BadUrl{"sqlite://", "needs a file path"},
                      BadUrl{"sqlite:///var/lib/", "names a directory"},
                      BadUrl{"sqlite://x.db?mode=ro", "no parameters"}, BadUrl{"sqlite://x.db#frag", "fragment"},
                      BadUrl{"sqlite://x\n.db", "control characters"},
                      BadUrl{"postgresql://u:topsecret@h:5432", "needs a database"},
                      BadUrl{"postgresql://h:5432/db", "needs a user"},
                      BadUrl{"postgresql://:topsecret@h/db", "empty user name"},
                      BadUrl{"postgresql://u:topsecret@/db", "needs a host"},
                      BadUrl{"postgresql://u:topsecret@h:0/db", "port must be a number from 1 to 65535"},
                      BadUrl{"postgresql://u:topsecret@h:65536/db", "port must be a number"},
                      BadUrl{"postgresql://u:topsecret@h:+80/db", "port must be a number"},
                      BadUrl{"postgresql://u:topsecret@h:x/db", "port must be a number"},
                      BadUrl{"postgresql://u:topsecret@h:/db", "empty port"},
                      BadUrl{"postgresql://u:topsecret@h/", "needs a database name"},
                      BadUrl{"postgresql://u:topsecret@h/a/b", "contains '/'"},
                      BadUrl{"postgresql://u:top%zzsecret@h/db", "bad percent-escape in the password"},
                      BadUrl{"postgresql://u%00:topsecret@h/db", "NUL byte in the user name"},
                      BadUrl{"postgresql://u:topsecret@[::1/db", "unterminated"},
                      BadUrl{"postgresql://u:topsecret@[nothex]/db", "IPv6"},
                      BadUrl{"postgresql://u:topsecret@h o st/db", "not allowed in a host name"},
                      BadUrl{"postgresql://u:topsecret@h/db?sslmode", "name=value"},
                      BadUrl{"postgresql://u:topsecret@h/db?host=evil", "unknown parameter 'host'"},
                      BadUrl{"postgresql://u:topsecret@h/db?sslmode=a&sslmode=b", "given twice"},
                      BadUrl{"postgresql://u:topsecret@h/db?pool_size=0", "pool_size must be a number from 1 to 100"}),
    [](const ::testing::TestParamInfo<BadUrl>& info) {
      std::string name = absl::StrCat(info.index, "_");
      for (char c : std::string(info.param.message))
        name.push_back(absl::ascii_isalnum(static_cast<unsigned char>(c)) ? c : '_');
      return name;
    });

TEST(StoreUrlTest, DefaultUrlFollowsTheDataDirectory) {
  EXPECT_EQ(DefaultStoreUrl("./var/lib/meshid"), "sqlite://./var/lib/meshid/meshid.db");
  EXPECT_EQ(DefaultStoreUrl("/var/lib/meshid/"), "sqlite:///var/lib/meshid/meshid.db");
  EXPECT_EQ(DefaultStoreUrl("/"), "sqlite:///meshid.db");
  EXPECT_EQ(ParseStoreUrl(DefaultStoreUrl("/var/lib/meshid"))->path, "/var/lib/meshid/meshid.db");
  EXPECT_EQ(StoreUrlFromFlags("/data", ""), "sqlite:///data/meshid.db");
  EXPECT_EQ(StoreUrlFromFlags("/data", "postgresql://u@h/db"), "postgresql://u@h/db");
}

}  // namespace
}  // namespace meshid::sql
