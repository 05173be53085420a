// The store contract, run against both backends (SQLite and a real PostgreSQL server).
#include "sql/store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/clock.h"
#include "sql/migrations.h"
#include "sql/pruner.h"
#include "store/validation.h"
#include "tests/support/databases.h"
#include "tests/support/dependencies.h"
#include "tests/support/fake_clock.h"
#include "tests/support/status_matchers.h"
#include "tests/support/temp_dir.h"

namespace meshid {
namespace {

using ::meshid::testing::Backend;
using ::meshid::testing::FakeClock;
using ::meshid::testing::TestDatabase;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::SizeIs;

using ::meshid::testing::IsOkAndHolds;
using ::meshid::testing::StatusIs;

const absl::Time kT0 = absl::FromUnixSeconds(1'800'000'000);

IssuanceRecord Record(int n, absl::string_view spiffe_id = "spiffe://cluster.local/ns/default/sa/web",
                      absl::Time not_after = kT0 + absl::Hours(1)) {
  IssuanceRecord r;
  r.serial_hex = absl::StrFormat("%032X", n + 1);
  r.spiffe_id = std::string(spiffe_id);
  r.not_before = not_after - absl::Hours(1) - absl::Minutes(1);
  r.not_after = not_after;
  r.public_key_sha256 = absl::StrFormat("%064x", n * 7919 + 1);
  r.issuer_serial_hex = "7A3F";
  r.auth_method = "jwt";
  r.auth_detail = absl::StrCat("iss=https://kubernetes.default.svc sub=system:serviceaccount:default:web-", n);
  r.issued_at = kT0 + absl::Microseconds(n);  // distinct, microsecond precise
  return r;
}

RegistryEntry Entry(absl::string_view spiffe_id) {
  RegistryEntry e;
  e.spiffe_id = std::string(spiffe_id);
  e.allowed_auth = {"jwt-sub:system:serviceaccount:default:web", "client-cert"};
  e.max_ttl = absl::Minutes(30);
  e.dns_names = {"web.default.svc", "web.default.svc.cluster.local"};
  e.note = "owner: team wéb ✓";
  e.created_at = kT0 + absl::Microseconds(123456);
  return e;
}

// An entry a node agent (`parent_id`) may mint for the workloads of its node matching `selectors`.
RegistryEntry NodeEntry(absl::string_view spiffe_id, absl::string_view parent_id,
                        std::vector<std::string> selectors = {"unix:uid:1000"}) {
  RegistryEntry e;
  e.spiffe_id = std::string(spiffe_id);
  e.parent_id = std::string(parent_id);
  e.selectors = std::move(selectors);
  e.max_ttl = absl::Hours(1);
  e.dns_names = {"web.default.svc"};
  e.note = "on node ✓";
  e.created_at = kT0 + absl::Microseconds(654321);
  return e;
}

const std::string kNodeA = "spiffe://cluster.local/agent/node-a";
const std::string kNodeB = "spiffe://cluster.local/agent/node-b";

class StoreTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    db_ = TestDatabase::Create(GetParam());
    MESHID_REQUIRE_DEPENDENCY(db_ != nullptr, testing::kPostgresDependency);
  }

  std::unique_ptr<Store> Open() {
    auto store = OpenStore(db_->url(), SystemClock::Instance(), MakeNullLogger());
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  std::unique_ptr<TestDatabase> db_;
};

std::string ParamName(const ::testing::TestParamInfo<Backend>& info) { return testing::BackendName(info.param); }

INSTANTIATE_TEST_SUITE_P(Backends, StoreTest, ::testing::Values(Backend::kSqlite, Backend::kPostgres), ParamName);

// ---- migrations ----

TEST_P(StoreTest, FreshDatabaseIsMigratedToTheNewestVersion) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->backend(), testing::BackendName(GetParam()));
  auto version = store->SchemaVersion();
  ASSERT_OK(version.status());
  ASSERT_FALSE(sql::BuiltinMigrations().empty());
  EXPECT_EQ(*version, sql::BuiltinMigrations().back().version);
  EXPECT_EQ(sql::BuiltinMigrations().front().version, 1);
}

TEST_P(StoreTest, ReopeningKeepsDataAndVersion) {
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    ASSERT_OK(store->RecordIssuances({Record(1)}));
    ASSERT_OK(store->CreateEntry(Entry("spiffe://cluster.local/ns/a/sa/b")));
  }
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(*store->SchemaVersion(), sql::BuiltinMigrations().back().version);
  EXPECT_THAT(*store->ListIssuances({}), ElementsAre(Record(1)));
  EXPECT_THAT(*store->ListEntries(std::nullopt), SizeIs(1));
}

std::vector<sql::Migration> BuiltinPlus(std::initializer_list<sql::Migration> extra) {
  std::vector<sql::Migration> all(sql::BuiltinMigrations().begin(), sql::BuiltinMigrations().end());
  all.insert(all.end(), extra);
  return all;
}

TEST_P(StoreTest, DatabaseNewerThanTheBinaryIsRefused) {
  auto future = BuiltinPlus({{9999, "9999_future.sql", "CREATE TABLE future_thing (a BIGINT);"}});
  auto newer = sql::OpenStoreWithMigrations(db_->url(), {}, future, SystemClock::Instance(), MakeNullLogger());
  ASSERT_OK(newer.status());
  EXPECT_EQ(*(*newer)->SchemaVersion(), 9999);
  newer->reset();

  auto store = OpenStore(db_->url(), SystemClock::Instance(), MakeNullLogger());
  EXPECT_THAT(store.status(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                       HasSubstr("schema is at version 9999, newer than this meshid understands")));
  EXPECT_THAT(std::string(store.status().message()), Not(HasSubstr("\n")));
}

TEST_P(StoreTest, FailedMigrationLeavesNothingHalfApplied) {
  const int next = sql::BuiltinMigrations().back().version + 1;
  std::string broken_name = absl::StrFormat("%04d_broken.sql", next);
  std::string good_name = absl::StrFormat("%04d_good.sql", next);
  auto broken = BuiltinPlus({{next, broken_name,
                              "CREATE TABLE half_applied (a BIGINT);\n"
                              "INSERT INTO half_applied (a) VALUES (1);\n"
                              "INSERT INTO no_such_table (a) VALUES (1);\n"}});
  // On a fresh database nothing at all is applied: not even the built-in migrations.
  auto store = sql::OpenStoreWithMigrations(db_->url(), {}, broken, SystemClock::Instance(), MakeNullLogger());
  EXPECT_THAT(store.status(), Not(StatusIs(absl::StatusCode::kOk, ::testing::_)));
  EXPECT_THAT(std::string(store.status().message()), HasSubstr("migration " + broken_name));

  // Both CREATE TABLEs below would fail if anything of the broken run had been kept.
  auto good = BuiltinPlus({{next, good_name, "CREATE TABLE half_applied (a BIGINT);"}});
  auto fixed = sql::OpenStoreWithMigrations(db_->url(), {}, good, SystemClock::Instance(), MakeNullLogger());
  ASSERT_OK(fixed.status());
  EXPECT_EQ(*(*fixed)->SchemaVersion(), next);
}

TEST_P(StoreTest, FailedUpgradeKeepsTheOldVersionAndData) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_OK(store->RecordIssuances({Record(1)}));
  store.reset();
  const int next = sql::BuiltinMigrations().back().version + 1;
  auto broken = BuiltinPlus({{next, "broken.sql", "DROP TABLE issuances; SELECT * FROM no_such_table;"}});
  EXPECT_FALSE(sql::OpenStoreWithMigrations(db_->url(), {}, broken, SystemClock::Instance(), MakeNullLogger()).ok());
  store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(*store->SchemaVersion(), sql::BuiltinMigrations().back().version);
  EXPECT_THAT(*store->ListIssuances({}), ElementsAre(Record(1)));
}

TEST_P(StoreTest, MigrationsApplyInOrderOnUpgrade) {
  const int next = sql::BuiltinMigrations().back().version + 1;
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    ASSERT_OK(store->RecordIssuances({Record(1)}));
  }
  auto upgraded = BuiltinPlus(
      {{next, "a.sql", "CREATE TABLE step_a (a BIGINT);"}, {next + 1, "b.sql", "INSERT INTO step_a (a) VALUES (7);"}});
  auto store = sql::OpenStoreWithMigrations(db_->url(), {}, upgraded, SystemClock::Instance(), MakeNullLogger());
  ASSERT_OK(store.status());
  EXPECT_EQ(*(*store)->SchemaVersion(), next + 1);
  EXPECT_THAT(*(*store)->ListIssuances({}), ElementsAre(Record(1)));
}

// A database at schema version 5 (before entries had parents) holding a registry entry, a block
// and a ledger row, upgraded by the built-in migrations: everything is kept, the entry becomes a
// direct entry, the certificate was minted by nobody, and entries with parents can be added.
TEST_P(StoreTest, UpgradeFromVersion5KeepsEntriesAndLedger) {
  auto builtin = sql::BuiltinMigrations();
  ASSERT_GE(builtin.size(), 6u);
  ASSERT_EQ(builtin[4].version, 5);
  // Version 5 as a 0005 binary left it, with rows written in its schema (in 0005's own
  // transaction: this store cannot write that schema through its API any more).
  const std::string version5_with_rows = absl::StrCat(
      builtin[4].sql,
      "\nINSERT INTO registry_entries (spiffe_id, allowed_auth, max_ttl_us, dns_names, note, created_at_us) VALUES "
      "('spiffe://cluster.local/ns/default/sa/web', '[\"jwt-sub:system:serviceaccount:default:web\",\"client-cert\"]', "
      "1800000000, '[\"web.default.svc\",\"web.default.svc.cluster.local\"]', 'owner: team wéb ✓', 1800000000123456);\n"
      "INSERT INTO blocked_identities (spiffe_id, reason, blocked_at_us) VALUES "
      "('spiffe://cluster.local/ns/default/sa/web', 'incident 7', 1800000000000000);\n"
      "INSERT INTO issuances (serial, spiffe_id, not_before_us, not_after_us, public_key_sha256, issuer_serial, "
      "auth_method, auth_detail, issued_at_us) VALUES ('",
      Record(1).serial_hex, "', '", Record(1).spiffe_id, "', ", absl::ToUnixMicros(Record(1).not_before), ", ",
      absl::ToUnixMicros(Record(1).not_after), ", '", Record(1).public_key_sha256, "', '", Record(1).issuer_serial_hex,
      "', '", Record(1).auth_method, "', '", Record(1).auth_detail, "', ", absl::ToUnixMicros(Record(1).issued_at),
      ");\n");
  std::vector<sql::Migration> old(builtin.begin(), builtin.begin() + 4);
  old.push_back({5, builtin[4].name, version5_with_rows});
  int64_t generation_before = 0;
  {
    auto store = sql::OpenStoreWithMigrations(db_->url(), {}, old, SystemClock::Instance(), MakeNullLogger());
    ASSERT_OK(store.status());
    EXPECT_EQ(*(*store)->SchemaVersion(), 5);
    generation_before = *(*store)->GetRegistryGeneration();
  }

  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(*store->SchemaVersion(), sql::BuiltinMigrations().back().version);
  const std::string id = "spiffe://cluster.local/ns/default/sa/web";
  RegistryEntry kept = Entry(id);  // the row above, read back as a direct entry without selectors
  EXPECT_THAT(*store->ListEntries(std::nullopt), ElementsAre(kept));
  EXPECT_THAT(*store->ListEntries(std::string()), ElementsAre(kept));
  EXPECT_THAT(*store->ListIssuances({}), ElementsAre(Record(1)));
  EXPECT_EQ((*store->ListIssuances({}))[0].minted_by, "");
  auto status = store->GetIdentityStatus(id);
  ASSERT_OK(status.status());
  EXPECT_EQ(status->entry, kept);
  ASSERT_TRUE(status->blocked.has_value());
  EXPECT_EQ(status->blocked->reason, "incident 7");
  // The migration moved the generation: a CA's status read before it is stale.
  EXPECT_GT(status->registry_generation, generation_before);

  // The new key: a second entry of the identity with a parent, the direct one still unique.
  EXPECT_THAT(store->CreateEntry(kept), StatusIs(absl::StatusCode::kAlreadyExists, ::testing::_));
  RegistryEntry on_a = NodeEntry(id, kNodeA);
  ASSERT_OK(store->CreateEntry(on_a));
  EXPECT_THAT(*store->ListEntries(std::nullopt), ElementsAre(kept, on_a));
  IssuanceRecord minted = Record(2);
  minted.minted_by = kNodeA;
  ASSERT_OK(store->RecordIssuances({minted}));
  EXPECT_THAT(*store->ListIssuances({}), ElementsAre(minted, Record(1)));
}

TEST_P(StoreTest, ConcurrentFirstOpensMigrateOnce) {
  constexpr int kOpeners = 6;
  std::vector<absl::Status> results(kOpeners);
  std::vector<std::thread> threads;
  for (int i = 0; i < kOpeners; ++i) {
    threads.emplace_back(
        [&, i] { results[i] = OpenStore(db_->url(), SystemClock::Instance(), MakeNullLogger()).status(); });
  }
  for (auto& t : threads) t.join();
  for (const auto& s : results) EXPECT_OK(s);
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(*store->SchemaVersion(), sql::BuiltinMigrations().back().version);
}

// ---- ledger ----

TEST_P(StoreTest, LedgerRoundTripNewestFirst) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  std::vector<IssuanceRecord> batch = {Record(1), Record(2), Record(3)};
  batch[2].auth_method = "client-cert";
  batch[2].auth_detail = "serial=ABCDEF";
  batch[1].minted_by = "spiffe://cluster.local/agent/node-a";
  ASSERT_OK(store->RecordIssuances(batch));
  auto listed = store->ListIssuances({});
  ASSERT_OK(listed.status());
  EXPECT_THAT(*listed, ElementsAre(batch[2], batch[1], batch[0]));
  EXPECT_OK(store->RecordIssuances({}));  // an empty batch is fine
}

TEST_P(StoreTest, TimestampsRoundTripAtMicrosecondPrecision) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  IssuanceRecord r = Record(1);
  r.not_before = absl::FromUnixMicros(1'700'000'000'123'456);
  r.not_after = absl::FromCivil(absl::CivilSecond(2099, 12, 31, 23, 59, 59), absl::UTCTimeZone());
  r.issued_at = absl::FromUnixMicros(1'700'000'000'999'999);
  ASSERT_OK(store->RecordIssuances({r}));
  auto listed = store->ListIssuances({});
  ASSERT_OK(listed.status());
  ASSERT_THAT(*listed, SizeIs(1));
  EXPECT_EQ((*listed)[0], r);
  EXPECT_EQ(absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", (*listed)[0].not_after, absl::UTCTimeZone()),
            "2099-12-31T23:59:59Z");
}

TEST_P(StoreTest, LedgerQueries) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const std::string web = "spiffe://cluster.local/ns/default/sa/web";
  const std::string db = "spiffe://cluster.local/ns/default/sa/db";
  std::vector<IssuanceRecord> batch;
  for (int i = 0; i < 10; ++i) batch.push_back(Record(i, i % 2 == 0 ? web : db, kT0 + absl::Hours(i)));
  ASSERT_OK(store->RecordIssuances(batch));

  IssuanceQuery by_id;
  by_id.spiffe_id = db;
  auto dbs = store->ListIssuances(by_id);
  ASSERT_OK(dbs.status());
  EXPECT_THAT(*dbs, ElementsAre(batch[9], batch[7], batch[5], batch[3], batch[1]));

  IssuanceQuery by_serial;
  by_serial.serial_hex = batch[4].serial_hex;
  EXPECT_THAT(*store->ListIssuances(by_serial), ElementsAre(batch[4]));
  by_serial.serial_hex = "FFFF";
  EXPECT_THAT(*store->ListIssuances(by_serial), SizeIs(0));

  IssuanceQuery expired;
  expired.expired_only = true;
  expired.now = kT0 + absl::Hours(3);  // not_after <= now: records 0..3
  EXPECT_THAT(*store->ListIssuances(expired), ElementsAre(batch[3], batch[2], batch[1], batch[0]));
  expired.spiffe_id = web;
  EXPECT_THAT(*store->ListIssuances(expired), ElementsAre(batch[2], batch[0]));

  IssuanceQuery limited;
  limited.limit = 3;
  EXPECT_THAT(*store->ListIssuances(limited), ElementsAre(batch[9], batch[8], batch[7]));
  limited.limit = 0;
  EXPECT_THAT(*store->ListIssuances(limited), SizeIs(10));
}

TEST_P(StoreTest, DuplicateSerialRollsBackTheWholeBatch) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_OK(store->RecordIssuances({Record(1)}));
  auto status = store->RecordIssuances({Record(2), Record(3), Record(1), Record(4)});
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr(Record(1).serial_hex)));
  EXPECT_THAT(*store->ListIssuances({}), ElementsAre(Record(1)));

  // Within one batch, too.
  EXPECT_THAT(store->RecordIssuances({Record(5), Record(5)}),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("appears twice")));
  EXPECT_THAT(*store->ListIssuances({}), ElementsAre(Record(1)));
}

TEST_P(StoreTest, LargeBatchesSpanSeveralStatementsAndStayAtomic) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  std::vector<IssuanceRecord> batch;
  for (int i = 0; i < 200; ++i) batch.push_back(Record(i));
  ASSERT_OK(store->RecordIssuances(batch));
  IssuanceQuery all;
  all.limit = 0;
  EXPECT_THAT(*store->ListIssuances(all), SizeIs(200));

  // 150 new rows and, in the third statement's chunk, one that exists: none is written.
  std::vector<IssuanceRecord> second;
  for (int i = 1000; i < 1150; ++i) second.push_back(Record(i));
  second[140] = Record(17);
  EXPECT_THAT(store->RecordIssuances(second),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr(Record(17).serial_hex)));
  EXPECT_THAT(*store->ListIssuances(all), SizeIs(200));
}

TEST_P(StoreTest, InvalidRecordsAreRefusedNamingTheField) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  IssuanceRecord lower = Record(2);
  lower.serial_hex = "abc";
  EXPECT_THAT(store->RecordIssuances({Record(1), lower}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("records[1].serial_hex")));
  IssuanceRecord bad_hash = Record(3);
  bad_hash.public_key_sha256 = "00";
  EXPECT_THAT(store->RecordIssuances({bad_hash}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("records[0].public_key_sha256")));
  IssuanceRecord bad_id = Record(4);
  bad_id.spiffe_id = "https://example.com/x";
  EXPECT_THAT(store->RecordIssuances({bad_id}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("spiffe_id")));
  IssuanceRecord bad_text = Record(5);
  bad_text.auth_detail = std::string("sub=\xff\xfe", 6);
  EXPECT_THAT(store->RecordIssuances({bad_text}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("auth_detail")));
  IssuanceRecord inverted = Record(6);
  inverted.not_after = inverted.not_before - absl::Seconds(1);
  EXPECT_THAT(store->RecordIssuances({inverted}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not_after")));
  IssuanceRecord infinite = Record(7);
  infinite.issued_at = absl::InfiniteFuture();
  EXPECT_THAT(store->RecordIssuances({infinite}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("issued_at")));
  IssuanceRecord bad_minter = Record(8);
  bad_minter.minted_by = "node-a";
  EXPECT_THAT(store->RecordIssuances({Record(9), bad_minter}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("records[1].minted_by: SPIFFE ID must start with \"spiffe://\"")));
  bad_minter.minted_by = "spiffe://cluster.local";  // a trust domain, not an agent
  EXPECT_THAT(store->RecordIssuances({bad_minter}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("records[0].minted_by: SPIFFE ID has no path")));
  EXPECT_THAT(*store->ListIssuances({}), SizeIs(0));
}

TEST_P(StoreTest, ConcurrentWritersAndReaders) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_OK(store->CreateEntry(Entry("spiffe://cluster.local/ns/default/sa/web")));
  constexpr int kWriters = 6;
  constexpr int kBatches = 25;
  constexpr int kBatchSize = 5;
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      for (int b = 0; b < kBatches; ++b) {
        std::vector<IssuanceRecord> batch;
        for (int i = 0; i < kBatchSize; ++i) batch.push_back(Record((w * kBatches + b) * kBatchSize + i));
        if (!store->RecordIssuances(batch).ok()) ++errors;
      }
    });
  }
  for (int r = 0; r < 3; ++r) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        auto status = store->GetIdentityStatus("spiffe://cluster.local/ns/default/sa/web");
        if (!status.ok() || !status->entry.has_value()) ++errors;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors.load(), 0);
  IssuanceQuery all;
  all.limit = 0;
  EXPECT_THAT(*store->ListIssuances(all), SizeIs(kWriters * kBatches * kBatchSize));
}

TEST_P(StoreTest, TwoStoresOnOneDatabaseSeeEachOthersWrites) {
  auto a = Open();
  auto b = Open();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  const std::string id = "spiffe://cluster.local/ns/default/sa/web";
  ASSERT_OK(a->Block(id, "compromised", kT0));
  auto status = b->GetIdentityStatus(id);
  ASSERT_OK(status.status());
  ASSERT_TRUE(status->blocked.has_value());
  EXPECT_EQ(status->blocked->reason, "compromised");
  ASSERT_OK(b->RecordIssuances({Record(1)}));
  EXPECT_THAT(*a->ListIssuances({}), ElementsAre(Record(1)));
}

// ---- registry and deny list ----

TEST_P(StoreTest, RegistryCreateListDelete) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  RegistryEntry web = Entry("spiffe://cluster.local/ns/default/sa/web");
  RegistryEntry api = Entry("spiffe://cluster.local/ns/default/sa/api");
  api.allowed_auth = {"*"};
  api.dns_names = {};
  api.max_ttl = absl::ZeroDuration();
  api.note = "";
  ASSERT_OK(store->CreateEntry(web));
  ASSERT_OK(store->CreateEntry(api));
  EXPECT_THAT(*store->ListEntries(std::nullopt), ElementsAre(api, web));
  EXPECT_THAT(store->CreateEntry(web),
              StatusIs(absl::StatusCode::kAlreadyExists,
                       absl::StrCat("a direct registry entry for ", web.spiffe_id, " already exists")));
  ASSERT_OK(store->DeleteEntry(web.spiffe_id, ""));
  EXPECT_THAT(*store->ListEntries(std::nullopt), ElementsAre(api));
  EXPECT_THAT(store->DeleteEntry(web.spiffe_id, ""),
              StatusIs(absl::StatusCode::kNotFound, absl::StrCat("no direct registry entry for ", web.spiffe_id)));
}

TEST_P(StoreTest, EntriesWithParentsAndSelectorsRoundTrip) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const std::string id = "spiffe://cluster.local/ns/default/sa/web";
  RegistryEntry direct = Entry(id);
  // One identity, two node agents, each with its own selectors.
  RegistryEntry on_a = NodeEntry(id, kNodeA,
                                 {"unix:gid:27", "unix:path:/usr/bin/envoy",
                                  "unix:sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                                  "unix:uid:1000", "unix:user:www-data"});
  RegistryEntry on_b = NodeEntry(id, kNodeB, {"unix:group:web", "unix:uid:0"});
  on_b.max_ttl = absl::ZeroDuration();
  on_b.dns_names = {};
  on_b.note = "";
  RegistryEntry other_on_a = NodeEntry("spiffe://cluster.local/ns/default/sa/api", kNodeA);
  ASSERT_OK(store->CreateEntry(on_b));
  ASSERT_OK(store->CreateEntry(direct));
  ASSERT_OK(store->CreateEntry(on_a));
  ASSERT_OK(store->CreateEntry(other_on_a));

  // By (spiffe_id, parent_id): the direct entry ("") first.
  EXPECT_THAT(*store->ListEntries(std::nullopt), ElementsAre(other_on_a, direct, on_a, on_b));
  EXPECT_THAT(*store->ListEntries(kNodeA), ElementsAre(other_on_a, on_a));
  EXPECT_THAT(*store->ListEntries(kNodeB), ElementsAre(on_b));
  EXPECT_THAT(*store->ListEntries(std::string()), ElementsAre(direct));
  EXPECT_THAT(*store->ListEntries("spiffe://cluster.local/agent/node-c"), SizeIs(0));

  // The same (spiffe_id, parent_id) twice is refused, whatever the selectors.
  RegistryEntry again = on_a;
  again.selectors = {"unix:uid:1"};
  EXPECT_THAT(store->CreateEntry(again),
              StatusIs(absl::StatusCode::kAlreadyExists,
                       absl::StrCat("a registry entry for ", id, " with parent ", kNodeA, " already exists")));
  EXPECT_THAT(*store->ListEntries(kNodeA), ElementsAre(other_on_a, on_a));

  // Deleting names the parent: the other entries of the identity stay.
  ASSERT_OK(store->DeleteEntry(id, kNodeA));
  EXPECT_THAT(*store->ListEntries(std::nullopt), ElementsAre(other_on_a, direct, on_b));
  EXPECT_THAT(
      store->DeleteEntry(id, kNodeA),
      StatusIs(absl::StatusCode::kNotFound, absl::StrCat("no registry entry for ", id, " with parent ", kNodeA)));
  EXPECT_THAT(store->DeleteEntry("spiffe://cluster.local/ns/default/sa/api", kNodeB),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(kNodeB)));
  ASSERT_OK(store->DeleteEntry(id, ""));
  EXPECT_THAT(*store->ListEntries(std::nullopt), ElementsAre(other_on_a, on_b));
}

TEST_P(StoreTest, InvalidEntriesAreRefusedNamingTheField) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  RegistryEntry e = Entry("spiffe://Cluster.local/ns/a/sa/b");
  EXPECT_THAT(store->CreateEntry(e), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("spiffe_id")));
  e = Entry("spiffe://cluster.local/ns/a/sa/b");
  e.allowed_auth = {};
  EXPECT_THAT(store->CreateEntry(e), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("allowed_auth")));
  e.allowed_auth = {"*", "jwt-sub:"};
  EXPECT_THAT(store->CreateEntry(e), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("allowed_auth[1]")));
  e.allowed_auth = {"password"};
  EXPECT_THAT(store->CreateEntry(e), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("allowed_auth[0]")));
  e.allowed_auth = {"*", "*"};
  EXPECT_THAT(store->CreateEntry(e), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("listed twice")));
  e.allowed_auth = {"jwt-iss:https://issuer.example"};
  e.dns_names = {"ok.example", "-bad.example"};
  EXPECT_THAT(store->CreateEntry(e), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dns_names[1]")));
  e.dns_names = {"*.svc.example"};
  e.max_ttl = absl::Seconds(-1);
  EXPECT_THAT(store->CreateEntry(e), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_ttl")));
  e.max_ttl = absl::Hours(2);
  e.note = std::string(2000, 'x');
  EXPECT_THAT(store->CreateEntry(e), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("note")));
  e.note = "fine";
  EXPECT_OK(store->CreateEntry(e));
  EXPECT_THAT(*store->ListEntries(std::nullopt), ElementsAre(e));
}

TEST_P(StoreTest, InvalidParentsAndSelectorsAreRefusedNamingTheField) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const std::string id = "spiffe://cluster.local/ns/a/sa/b";
  struct Case {
    std::string what;
    std::function<void(RegistryEntry&)> change;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {"parent not a SPIFFE ID", [](RegistryEntry& e) { e.parent_id = "node-a"; },
            "parent_id: SPIFFE ID must start with \"spiffe://\""},
           {"parent is the identity", [&](RegistryEntry& e) { e.parent_id = id; },
            "parent_id: must differ from spiffe_id"},
           {"parent and allowed_auth", [](RegistryEntry& e) { e.allowed_auth = {"*"}; },
            "allowed_auth: must be empty for an entry with a parent_id"},
           {"parent without selectors", [](RegistryEntry& e) { e.selectors = {}; },
            "selectors: an entry with a parent_id needs at least one"},
           {"selectors without parent",
            [](RegistryEntry& e) {
              e.parent_id = "";
              e.allowed_auth = {"*"};
            },
            "selectors: only an entry with a parent_id has selectors"},
           {"no parent, no allowed_auth",
            [](RegistryEntry& e) {
              e.parent_id = "";
              e.selectors = {};
            },
            "allowed_auth: at least one of"},
           {"malformed selector",
            [](RegistryEntry& e) {
              e.selectors = {"unix:gid:1", "unix:uid:-1"};
            },
            "selectors[1]: selector \"unix:uid:-1\": uid must be a decimal number"},
           {"unknown kind", [](RegistryEntry& e) { e.selectors = {"k8s:ns:default"}; },
            "selectors[0]: selector \"k8s:ns:default\": unknown type \"k8s\""},
           {"not canonical", [](RegistryEntry& e) { e.selectors = {"unix:sha256:" + std::string(64, 'A')}; },
            "selectors[0]: \"unix:sha256:AAAA"},
           {"not sorted",
            [](RegistryEntry& e) {
              e.selectors = {"unix:uid:1", "unix:gid:1"};
            },
            "selectors[1]: \"unix:gid:1\" is out of order (selectors are sorted)"},
           {"listed twice",
            [](RegistryEntry& e) {
              e.selectors = {"unix:uid:1", "unix:uid:1"};
            },
            "selectors[1]: \"unix:uid:1\" is listed twice"},
           {"not UTF-8", [](RegistryEntry& e) { e.selectors = {"unix:path:/bin/\xff"}; },
            "selectors[0]: not valid UTF-8"},
           {"too many",
            [](RegistryEntry& e) {
              e.selectors.clear();
              for (int i = 100; i < 100 + 65; ++i) e.selectors.push_back(absl::StrCat("unix:gid:", i));
            },
            "selectors: 65 of them, more than the 64 allowed"},
       }) {
    RegistryEntry e = NodeEntry(id, kNodeA);
    c.change(e);
    EXPECT_THAT(store->CreateEntry(e), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message))) << c.what;
  }
  EXPECT_THAT(*store->ListEntries(std::nullopt), SizeIs(0));
  RegistryEntry most = NodeEntry(id, kNodeA, {});
  for (int i = 100; i < 100 + 64; ++i) most.selectors.push_back(absl::StrCat("unix:gid:", i));
  EXPECT_OK(store->CreateEntry(most));
  EXPECT_THAT(*store->ListEntries(kNodeA), ElementsAre(most));
}

TEST_P(StoreTest, DenyList) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const std::string a = "spiffe://cluster.local/ns/default/sa/a";
  const std::string b = "spiffe://cluster.local/ns/default/sa/b";
  ASSERT_OK(store->Block(b, "leaked key", kT0));
  ASSERT_OK(store->Block(a, "", kT0 + absl::Seconds(1)));
  ASSERT_OK(store->Block(a, "rotated out ✓", kT0 + absl::Seconds(2)));  // blocking again updates
  auto blocked = store->ListBlocked();
  ASSERT_OK(blocked.status());
  ASSERT_THAT(*blocked, SizeIs(2));
  EXPECT_EQ((*blocked)[0].spiffe_id, a);
  EXPECT_EQ((*blocked)[0].reason, "rotated out ✓");
  EXPECT_EQ((*blocked)[0].blocked_at, kT0 + absl::Seconds(2));
  EXPECT_EQ((*blocked)[1].spiffe_id, b);
  ASSERT_OK(store->Unblock(a));
  EXPECT_THAT(store->Unblock(a), StatusIs(absl::StatusCode::kNotFound, HasSubstr("not blocked")));
  EXPECT_THAT(*store->ListBlocked(), SizeIs(1));
  EXPECT_THAT(store->Block("not-a-spiffe-id", "", kT0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("spiffe_id")));
}

TEST_P(StoreTest, IdentityStatusCombinesEntryAndBlock) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const std::string id = "spiffe://cluster.local/ns/default/sa/web";
  auto status = store->GetIdentityStatus(id);
  ASSERT_OK(status.status());
  EXPECT_FALSE(status->entry.has_value());
  EXPECT_FALSE(status->blocked.has_value());

  RegistryEntry entry = Entry(id);
  ASSERT_OK(store->CreateEntry(entry));
  ASSERT_OK(store->CreateEntry(Entry("spiffe://cluster.local/ns/default/sa/other")));
  status = store->GetIdentityStatus(id);
  ASSERT_OK(status.status());
  EXPECT_EQ(status->entry, entry);
  EXPECT_FALSE(status->blocked.has_value());

  ASSERT_OK(store->Block(id, "incident 42", kT0));
  status = store->GetIdentityStatus(id);
  ASSERT_OK(status.status());
  EXPECT_EQ(status->entry, entry);
  ASSERT_TRUE(status->blocked.has_value());
  EXPECT_EQ(status->blocked->reason, "incident 42");
  EXPECT_EQ(status->blocked->blocked_at, kT0);

  ASSERT_OK(store->DeleteEntry(id, ""));
  status = store->GetIdentityStatus(id);
  ASSERT_OK(status.status());
  EXPECT_FALSE(status->entry.has_value());
  EXPECT_TRUE(status->blocked.has_value());

  status = store->GetIdentityStatus("spiffe://cluster.local/ns/default/sa/nobody");
  ASSERT_OK(status.status());
  EXPECT_FALSE(status->entry.has_value());
  EXPECT_FALSE(status->blocked.has_value());
  EXPECT_THAT(status->node_entries, SizeIs(0));
}

TEST_P(StoreTest, IdentityStatusHasTheDirectEntryAndTheNodeEntries) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const std::string id = "spiffe://cluster.local/ns/default/sa/web";
  RegistryEntry on_b = NodeEntry(id, kNodeB, {"unix:uid:0"});
  RegistryEntry on_a = NodeEntry(id, kNodeA, {"unix:path:/usr/bin/envoy", "unix:uid:1000"});
  ASSERT_OK(store->CreateEntry(on_b));
  ASSERT_OK(store->CreateEntry(on_a));
  ASSERT_OK(store->CreateEntry(NodeEntry("spiffe://cluster.local/ns/default/sa/other", kNodeA)));

  // Node entries only: no direct entry.
  auto status = store->GetIdentityStatus(id);
  ASSERT_OK(status.status());
  EXPECT_FALSE(status->entry.has_value());
  EXPECT_THAT(status->node_entries, ElementsAre(on_a, on_b));
  EXPECT_FALSE(status->blocked.has_value());

  RegistryEntry direct = Entry(id);
  ASSERT_OK(store->CreateEntry(direct));
  ASSERT_OK(store->Block(id, "incident 43", kT0));
  status = store->GetIdentityStatus(id);
  ASSERT_OK(status.status());
  EXPECT_EQ(status->entry, direct);
  EXPECT_THAT(status->node_entries, ElementsAre(on_a, on_b));
  ASSERT_TRUE(status->blocked.has_value());
  EXPECT_EQ(status->blocked->reason, "incident 43");
  EXPECT_EQ(status->registry_generation, *store->GetRegistryGeneration());

  ASSERT_OK(store->DeleteEntry(id, kNodeB));
  status = store->GetIdentityStatus(id);
  ASSERT_OK(status.status());
  EXPECT_EQ(status->entry, direct);
  EXPECT_THAT(status->node_entries, ElementsAre(on_a));
}

TEST_P(StoreTest, EveryRegistryChangeMovesTheGenerationAndNothingElseDoes) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const std::string id = "spiffe://cluster.local/ns/default/sa/web";
  // Both reads of the generation agree.
  auto generation = [&] {
    auto status = store->GetIdentityStatus(id);
    EXPECT_TRUE(status.ok()) << status.status();
    auto direct = store->GetRegistryGeneration();
    EXPECT_TRUE(direct.ok()) << direct.status();
    if (!status.ok() || !direct.ok()) return int64_t{-1};
    EXPECT_EQ(*direct, status->registry_generation);
    return *direct;
  };
  int64_t last = generation();
  auto expect_moved = [&](bool moved, absl::string_view after) {
    const int64_t now = generation();
    if (moved) {
      EXPECT_GT(now, last) << after;
    } else {
      EXPECT_EQ(now, last) << after;
    }
    last = now;
  };
  ASSERT_OK(store->CreateEntry(Entry(id)));
  expect_moved(true, "CreateEntry");
  ASSERT_OK(store->Block(id, "r", kT0));
  expect_moved(true, "Block");
  ASSERT_OK(store->Block(id, "again, another reason", kT0));
  expect_moved(true, "Block of a blocked identity (the reason changed)");
  ASSERT_OK(store->Unblock(id));
  expect_moved(true, "Unblock");
  ASSERT_OK(store->DeleteEntry(id, ""));
  expect_moved(true, "DeleteEntry");
  ASSERT_OK(store->CreateEntry(NodeEntry(id, kNodeA)));
  expect_moved(true, "CreateEntry with a parent");
  ASSERT_OK(store->CreateEntry(NodeEntry(id, kNodeB)));
  expect_moved(true, "CreateEntry with another parent");
  ASSERT_OK(store->DeleteEntry(id, kNodeA));
  expect_moved(true, "DeleteEntry with a parent");

  EXPECT_THAT(store->DeleteEntry(id, ""), StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  expect_moved(false, "a DeleteEntry that found nothing");
  EXPECT_THAT(store->DeleteEntry(id, kNodeA), StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  expect_moved(false, "a DeleteEntry with a parent that found nothing");
  EXPECT_THAT(store->CreateEntry(NodeEntry(id, kNodeB)), StatusIs(absl::StatusCode::kAlreadyExists, ::testing::_));
  expect_moved(false, "a duplicate entry");
  EXPECT_THAT(store->Unblock(id), StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  expect_moved(false, "an Unblock that found nothing");
  EXPECT_THAT(store->CreateEntry(RegistryEntry{}), StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  expect_moved(false, "an invalid entry");
  ASSERT_OK(store->RecordIssuances({Record(1)}));
  ASSERT_OK(store->PruneExpiredBefore(kT0 + absl::Hours(2), 10).status());
  expect_moved(false, "ledger writes");
}

TEST_P(StoreTest, LedgerWritesAtAStaleRegistryGenerationWriteNothing) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const std::string id = "spiffe://cluster.local/ns/default/sa/web";
  const int64_t read_at = store->GetIdentityStatus(id)->registry_generation;
  // Up to 64 rows go in one statement, more in a transaction of several: both paths.
  std::vector<IssuanceRecord> small, large;
  for (int i = 0; i < 3; ++i) small.push_back(Record(i));
  for (int i = 100; i < 230; ++i) large.push_back(Record(i));
  small[1].minted_by = kNodeA;  // through the guarded INSERT ... SELECT too
  large[129].minted_by = kNodeB;
  ASSERT_OK(store->RecordIssuancesAt(small, read_at));
  IssuanceQuery by_serial;
  by_serial.serial_hex = small[1].serial_hex;
  EXPECT_THAT(*store->ListIssuances(by_serial), ElementsAre(small[1]));

  ASSERT_OK(store->Block(id, "key leaked", kT0));
  std::vector<IssuanceRecord> more_small = {Record(10), Record(11)};
  EXPECT_THAT(store->RecordIssuancesAt(more_small, read_at),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("identity registry changed")));
  EXPECT_THAT(store->RecordIssuancesAt(large, read_at), StatusIs(absl::StatusCode::kAborted, ::testing::_));
  IssuanceQuery all;
  all.limit = 0;
  EXPECT_THAT(*store->ListIssuances(all), SizeIs(small.size())) << "nothing of a rejected batch is written";

  const int64_t current = store->GetIdentityStatus(id)->registry_generation;
  ASSERT_OK(store->RecordIssuancesAt(more_small, current));
  ASSERT_OK(store->RecordIssuancesAt(large, current));
  by_serial.serial_hex = large[129].serial_hex;
  EXPECT_THAT(*store->ListIssuances(by_serial), ElementsAre(large[129]));
  ASSERT_OK(store->RecordIssuancesAt({Record(20)}, std::nullopt));  // no generation: no check
  EXPECT_THAT(*store->ListIssuances(all), SizeIs(small.size() + more_small.size() + large.size() + 1));
  // A duplicate serial is still reported as one, not as a registry change.
  EXPECT_THAT(store->RecordIssuancesAt({Record(20)}, current),
              StatusIs(absl::StatusCode::kAlreadyExists, ::testing::_));
}

// ---- retention ----

TEST_P(StoreTest, PruneDeletesOnlyRowsExpiredBeforeTheCutoffInBatches) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  std::vector<IssuanceRecord> batch;
  for (int i = 0; i < 10; ++i)
    batch.push_back(Record(i, "spiffe://cluster.local/ns/a/sa/old", kT0 - absl::Hours(i + 1)));
  for (int i = 10; i < 15; ++i) batch.push_back(Record(i, "spiffe://cluster.local/ns/a/sa/new", kT0 + absl::Hours(i)));
  ASSERT_OK(store->RecordIssuances(batch));
  auto deleted = store->PruneExpiredBefore(kT0, 4);
  ASSERT_OK(deleted.status());
  EXPECT_EQ(*deleted, 4);
  EXPECT_EQ(*store->PruneExpiredBefore(kT0, 4), 4);
  EXPECT_EQ(*store->PruneExpiredBefore(kT0, 4), 2);
  EXPECT_EQ(*store->PruneExpiredBefore(kT0, 4), 0);
  IssuanceQuery all;
  all.limit = 0;
  auto left = store->ListIssuances(all);
  ASSERT_OK(left.status());
  ASSERT_THAT(*left, SizeIs(5));
  for (const auto& r : *left) EXPECT_GE(r.not_after, kT0);
  EXPECT_THAT(store->PruneExpiredBefore(kT0, 0), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("limit")));
}

TEST_P(StoreTest, PrunerKeepsRowsWithinTheHorizon) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  FakeClock clock(kT0);
  std::vector<IssuanceRecord> batch;
  // Expired 40, 35, 31, 29 and 1 days ago, and one still valid.
  int n = 0;
  for (int days : {40, 35, 31, 29, 1, -1})
    batch.push_back(Record(n++, "spiffe://cluster.local/ns/a/sa/b", kT0 - absl::Hours(24 * days)));
  ASSERT_OK(store->RecordIssuances(batch));
  LedgerPrunerOptions options;
  options.batch_size = 2;  // several batches in one pass
  auto pruner = LedgerPruner::Create(*store, clock, MakeNullLogger(), options);
  ASSERT_OK(pruner.status());
  auto deleted = (*pruner)->RunOnce();
  ASSERT_OK(deleted.status());
  EXPECT_EQ(*deleted, 3);  // default horizon: 30 days
  IssuanceQuery all;
  all.limit = 0;
  EXPECT_THAT(*store->ListIssuances(all), SizeIs(3));
  clock.Advance(absl::Hours(24 * 2));  // now the 29-day-old one is 31 days old
  EXPECT_EQ(*(*pruner)->RunOnce(), 1);
  EXPECT_EQ(*(*pruner)->RunOnce(), 0);
}

TEST_P(StoreTest, PrunerRunsInTheBackgroundUntilStopped) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  FakeClock clock(kT0);
  std::vector<IssuanceRecord> batch;
  for (int i = 0; i < 7; ++i)
    batch.push_back(Record(i, "spiffe://cluster.local/ns/a/sa/b", kT0 - absl::Hours(24 * 60)));
  batch.push_back(Record(99));
  ASSERT_OK(store->RecordIssuances(batch));
  LedgerPrunerOptions options;
  options.batch_size = 3;
  options.interval = absl::Milliseconds(1);
  auto pruner = LedgerPruner::Create(*store, clock, MakeNullLogger(), options);
  ASSERT_OK(pruner.status());
  (*pruner)->Start();
  (*pruner)->Start();  // no second thread
  (*pruner)->WaitForPasses(2);
  (*pruner)->Stop();
  (*pruner)->Stop();
  EXPECT_EQ((*pruner)->pruned(), 7);
  EXPECT_THAT(*store->ListIssuances({}), ElementsAre(Record(99)));
}

TEST(LedgerPrunerTest, OptionsAreValidated) {
  testing::TempDir dir;
  auto real = OpenStore("sqlite://" + dir.path() + "/m.db", SystemClock::Instance(), MakeNullLogger());
  ASSERT_OK(real.status());
  FakeClock clock;
  LedgerPrunerOptions bad;
  bad.horizon = -absl::Hours(1);
  EXPECT_THAT(LedgerPruner::Create(**real, clock, MakeNullLogger(), bad).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("horizon")));
  bad = {};
  bad.interval = absl::ZeroDuration();
  EXPECT_THAT(LedgerPruner::Create(**real, clock, MakeNullLogger(), bad).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("interval")));
  bad = {};
  bad.batch_size = 0;
  EXPECT_THAT(LedgerPruner::Create(**real, clock, MakeNullLogger(), bad).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("batch size")));
}

// ---- revocation ----

RevocationRequest Revocation(RevocationReason reason = RevocationReason::kKeyCompromise,
                             absl::Time at = kT0 + absl::Minutes(1)) {
  return RevocationRequest{reason, "alice@ops-host", at};
}

std::string Serial(int n) { return Record(n).serial_hex; }

TEST_P(StoreTest, RevokingSerialsRecordsWhoWhenWhyAndMovesTheCrlNumberOnce) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_OK(store->RecordIssuances({Record(1), Record(2), Record(3, "spiffe://cluster.local/ns/a/sa/b", kT0)}));
  auto before = store->ListRevocations(kT0);
  ASSERT_OK(before.status());
  EXPECT_THAT(before->revocations, SizeIs(0));

  // Serial 3 expired at kT0, before the revocation time.
  auto outcome = store->Revoke({Serial(2), Serial(3), Serial(2)}, Revocation());
  ASSERT_OK(outcome.status());
  EXPECT_THAT(outcome->revoked, ElementsAre(Serial(2)));
  EXPECT_THAT(outcome->expired, ElementsAre(Serial(3)));
  EXPECT_THAT(outcome->already_revoked, SizeIs(0));
  EXPECT_EQ(outcome->crl_number, before->crl_number + 1);

  RevocationRecord expected{
      Serial(2),        Record(2).spiffe_id,   "7A3F", Record(2).not_after, RevocationReason::kKeyCompromise,
      "alice@ops-host", kT0 + absl::Minutes(1)};
  auto listed = store->ListRevocations(kT0 + absl::Minutes(2));
  ASSERT_OK(listed.status());
  EXPECT_EQ(listed->crl_number, outcome->crl_number);
  EXPECT_EQ(*store->CrlNumber(), outcome->crl_number);
  EXPECT_THAT(listed->revocations, ElementsAre(expected));

  // Idempotent: the first revocation stands, reason and time included; the number stays.
  auto again = store->Revoke({Serial(2)}, Revocation(RevocationReason::kSuperseded, kT0 + absl::Minutes(5)));
  ASSERT_OK(again.status());
  EXPECT_THAT(again->revoked, SizeIs(0));
  EXPECT_THAT(again->already_revoked, ElementsAre(expected));
  EXPECT_EQ(again->crl_number, outcome->crl_number);
}

TEST_P(StoreTest, RevocationsLeaveTheListWhenTheirCertificatesExpire) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_OK(
      store->RecordIssuances({Record(1), Record(2, "spiffe://cluster.local/ns/default/sa/web", kT0 + absl::Hours(3))}));
  ASSERT_OK(store->Revoke({Serial(1), Serial(2)}, Revocation()).status());
  EXPECT_THAT(store->ListRevocations(kT0 + absl::Minutes(59))->revocations, SizeIs(2));
  auto later = store->ListRevocations(kT0 + absl::Hours(1));
  ASSERT_OK(later.status());
  ASSERT_THAT(later->revocations, SizeIs(1));
  EXPECT_EQ(later->revocations[0].serial_hex, Serial(2));
}

TEST_P(StoreTest, PruningTakesTheRevocationsOfPrunedCertificatesToo) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_OK(store->RecordIssuances(
      {Record(1), Record(2, "spiffe://cluster.local/ns/default/sa/web", kT0 + absl::Hours(30))}));
  ASSERT_OK(store->Revoke({Serial(1), Serial(2)}, Revocation()).status());
  ASSERT_OK(store->PruneExpiredBefore(kT0 + absl::Hours(2), 100).status());
  EXPECT_THAT(*store->ListIssuances({}),
              ElementsAre(Record(2, "spiffe://cluster.local/ns/default/sa/web", kT0 + absl::Hours(30))));
  auto listed = store->ListRevocations(kT0);
  ASSERT_OK(listed.status());
  ASSERT_THAT(listed->revocations, SizeIs(1));
  EXPECT_EQ(listed->revocations[0].serial_hex, Serial(2));
}

TEST_P(StoreTest, AnUnknownSerialRevokesNothing) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_OK(store->RecordIssuances({Record(1)}));
  const int64_t number = store->ListRevocations(kT0)->crl_number;
  EXPECT_THAT(store->Revoke({Serial(1), "ABCDEF", "0123"}, Revocation()),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("serial 0123, ABCDEF (never issued by this CA")));
  auto after = store->ListRevocations(kT0);
  EXPECT_THAT(after->revocations, SizeIs(0));
  EXPECT_EQ(after->crl_number, number);
}

TEST_P(StoreTest, MalformedRevocationsAreRefusedNamingTheField) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_OK(store->RecordIssuances({Record(1)}));
  EXPECT_THAT(store->Revoke({Serial(1), "01:AB"}, Revocation()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("serials[1]: must be 1 to 128 upper-case hex")));
  EXPECT_THAT(store->Revoke({"abcd"}, Revocation()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("serials[0]")));
  EXPECT_THAT(store->Revoke({Serial(1)}, Revocation(static_cast<RevocationReason>(6))),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("reason: 6")));
  RevocationRequest anonymous = Revocation();
  anonymous.revoked_by = "";
  EXPECT_THAT(store->Revoke({Serial(1)}, anonymous),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("revoked_by")));
  EXPECT_THAT(store->RevokeIdentity("not-a-spiffe-id", Revocation()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("spiffe_id")));
  EXPECT_THAT(store->ListRevocations(kT0)->revocations, SizeIs(0));
}

TEST_P(StoreTest, RevokingAnIdentityTakesItsUnexpiredCertificatesOnly) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const std::string web = "spiffe://cluster.local/ns/default/sa/web";
  ASSERT_OK(store->RecordIssuances(
      {Record(1, web), Record(2, web), Record(3, web, kT0), Record(4, "spiffe://cluster.local/ns/default/sa/db")}));
  ASSERT_OK(store->Revoke({Serial(1)}, Revocation()).status());
  auto outcome = store->RevokeIdentity(web, Revocation(RevocationReason::kCessationOfOperation));
  ASSERT_OK(outcome.status());
  EXPECT_THAT(outcome->revoked, ElementsAre(Serial(2)));
  ASSERT_THAT(outcome->already_revoked, SizeIs(1));
  EXPECT_EQ(outcome->already_revoked[0].reason, RevocationReason::kKeyCompromise);
  auto listed = store->ListRevocations(kT0);
  ASSERT_OK(listed.status());
  ASSERT_THAT(listed->revocations, SizeIs(2));
  EXPECT_EQ(listed->revocations[1].reason, RevocationReason::kCessationOfOperation);

  auto none = store->RevokeIdentity("spiffe://cluster.local/ns/x/sa/nobody", Revocation());
  ASSERT_OK(none.status());
  EXPECT_THAT(none->revoked, SizeIs(0));
  EXPECT_EQ(none->crl_number, listed->crl_number);
}

TEST_P(StoreTest, BlockAndRevokeIsOneChange) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const std::string web = "spiffe://cluster.local/ns/default/sa/web";
  ASSERT_OK(store->RecordIssuances({Record(1, web), Record(2, web)}));
  const int64_t generation = store->GetIdentityStatus(web)->registry_generation;
  auto outcome = store->BlockAndRevoke(web, "stolen laptop", Revocation());
  ASSERT_OK(outcome.status());
  EXPECT_THAT(outcome->revoked, ElementsAre(Serial(1), Serial(2)));
  auto status = store->GetIdentityStatus(web);
  ASSERT_TRUE(status->blocked.has_value());
  EXPECT_EQ(status->blocked->reason, "stolen laptop");
  EXPECT_GT(status->registry_generation, generation);

  // Unblocking does not un-revoke.
  ASSERT_OK(store->Unblock(web));
  EXPECT_THAT(store->ListRevocations(kT0)->revocations, SizeIs(2));
  // A bad block reason changes nothing at all.
  ASSERT_OK(store->RecordIssuances({Record(3, web)}));
  EXPECT_THAT(store->BlockAndRevoke(web, std::string(2000, 'x'), Revocation()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("reason")));
  EXPECT_FALSE(store->GetIdentityStatus(web)->blocked.has_value());
  EXPECT_THAT(store->ListRevocations(kT0)->revocations, SizeIs(2));
}

TEST_P(StoreTest, ManySerialsInOneRevocation) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  std::vector<IssuanceRecord> records;
  std::vector<std::string> serials;
  for (int i = 0; i < 300; ++i) {
    records.push_back(Record(i));
    serials.push_back(Serial(i));
  }
  ASSERT_OK(store->RecordIssuances(records));
  auto outcome = store->Revoke(serials, Revocation());
  ASSERT_OK(outcome.status());
  EXPECT_THAT(outcome->revoked, SizeIs(300));
  auto listed = store->ListRevocations(kT0);
  ASSERT_THAT(listed->revocations, SizeIs(300));
  EXPECT_EQ(listed->revocations.front().serial_hex, Serial(0));
  EXPECT_EQ(listed->revocations.back().serial_hex, Serial(299));
}

// Two stores on one database (two servers, or a server and the CLI) revoking the same
// certificates at once: each is revoked once, by one of them, and the number moves once per
// revoking transaction.
TEST_P(StoreTest, ConcurrentRevocationsOfTheSameCertificatesRevokeEachOnce) {
  auto a = Open();
  auto b = Open();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  std::vector<IssuanceRecord> records;
  std::vector<std::string> serials;
  for (int i = 0; i < 40; ++i) {
    records.push_back(Record(i));
    serials.push_back(Serial(i));
  }
  ASSERT_OK(a->RecordIssuances(records));
  const int64_t number = a->ListRevocations(kT0)->crl_number;
  std::atomic<int> revoked{0}, already{0}, moved{0};
  std::vector<std::thread> threads;
  for (Store* store : {a.get(), b.get(), a.get(), b.get()}) {
    threads.emplace_back([&, store] {
      for (int i = 0; i < 40; i += 4) {
        auto outcome = store->Revoke(absl::MakeConstSpan(serials).subspan(i, 4), Revocation());
        ASSERT_OK(outcome.status());
        revoked += static_cast<int>(outcome->revoked.size());
        already += static_cast<int>(outcome->already_revoked.size());
        moved += outcome->revoked.empty() ? 0 : 1;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(revoked.load(), 40);
  EXPECT_EQ(already.load(), 3 * 40);
  auto listed = a->ListRevocations(kT0);
  EXPECT_THAT(listed->revocations, SizeIs(40));
  EXPECT_EQ(listed->crl_number, number + moved.load());
}

TEST(RevocationReasonTest, NamesAreRfc5280s) {
  EXPECT_EQ(RevocationReasonName(RevocationReason::kCaCompromise), "cACompromise");
  EXPECT_EQ(*ParseRevocationReason("keyCompromise"), RevocationReason::kKeyCompromise);
  EXPECT_EQ(*ParseRevocationReason("privilegeWithdrawn"), RevocationReason::kPrivilegeWithdrawn);
  EXPECT_THAT(ParseRevocationReason("certificateHold"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not one of unspecified, keyCompromise")));
  EXPECT_THAT(ParseRevocationReason("KeyCompromise"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("KeyCompromise")));
  EXPECT_THAT(ParseRevocationReason(std::string("a\0b", 3)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"a\\x00")));
}

// ---- the CA the replicas share ----

CaMaterialRecord CaRecord(absl::string_view fingerprint, absl::string_view source, absl::Time at = kT0) {
  return CaMaterialRecord{kCaMaterialSigningCa, std::string(fingerprint), std::string(source), at};
}

const std::string kRootA = "sha256:" + std::string(64, 'a');
const std::string kRootB = "sha256:" + std::string(64, 'b');

TEST_P(StoreTest, TheFirstCaMaterialRecordedStaysAndLaterOnesGetIt) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_THAT(store->GetCaMaterial(kCaMaterialSigningCa), IsOkAndHolds(std::nullopt));
  const CaMaterialRecord first = CaRecord(kRootA, "self-signed root in /a", kT0 + absl::Microseconds(7));
  EXPECT_THAT(store->RecordOrGetCaMaterial(first), IsOkAndHolds(first));
  EXPECT_THAT(store->RecordOrGetCaMaterial(CaRecord(kRootB, "self-signed root in /b")), IsOkAndHolds(first))
      << "a second server gets the first record, unchanged";
  EXPECT_THAT(store->GetCaMaterial(kCaMaterialSigningCa), IsOkAndHolds(std::optional<CaMaterialRecord>(first)));
  // Kinds are separate records.
  const CaMaterialRecord token{kCaMaterialLocalTokenKey, kRootB, "/a/token-signing-key.pem", kT0};
  EXPECT_THAT(store->RecordOrGetCaMaterial(token), IsOkAndHolds(token));
  // Another store on the same database (another replica) sees both.
  auto other = Open();
  ASSERT_NE(other, nullptr);
  EXPECT_THAT(other->GetCaMaterial(kCaMaterialLocalTokenKey), IsOkAndHolds(std::optional<CaMaterialRecord>(token)));
}

TEST_P(StoreTest, ReplacingCaMaterialIsACompareAndSwap) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_THAT(store->ReplaceCaMaterial(kRootA, CaRecord(kRootB, "b")), StatusIs(absl::StatusCode::kNotFound));
  ASSERT_OK(store->RecordOrGetCaMaterial(CaRecord(kRootA, "a")).status());
  const CaMaterialRecord both = CaRecord(kRootA + "," + kRootB, "a and b", kT0 + absl::Seconds(1));
  EXPECT_THAT(store->ReplaceCaMaterial(kRootA, both), IsOkAndHolds(both));
  // Expecting what is no longer there changes nothing and says what is.
  EXPECT_THAT(store->ReplaceCaMaterial(kRootA, CaRecord(kRootB, "b")), IsOkAndHolds(both));
}

TEST_P(StoreTest, ConcurrentFirstRecordsAgreeOnOne) {
  constexpr int kServers = 6;
  std::vector<absl::StatusOr<CaMaterialRecord>> results(kServers, absl::UnknownError("not run"));
  std::vector<std::unique_ptr<Store>> stores;
  for (int i = 0; i < kServers; ++i) stores.push_back(Open());
  std::vector<std::thread> threads;
  for (int i = 0; i < kServers; ++i) {
    threads.emplace_back([&, i] {
      results[i] = stores[i]->RecordOrGetCaMaterial(
          CaRecord(absl::StrFormat("sha256:%064x", i + 1), absl::StrCat("server ", i)));
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_OK(results[0].status());
  for (const auto& r : results) EXPECT_THAT(r, IsOkAndHolds(*results[0]));
}

TEST_P(StoreTest, InvalidCaMaterialIsRefusedNamingTheField) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  struct Case {
    CaMaterialRecord record;
    std::string field;
  } cases[] = {
      {{"root", kRootA, "s", kT0}, "kind:"},
      {{kCaMaterialSigningCa, "", "s", kT0}, "fingerprint:"},
      {{kCaMaterialSigningCa, std::string(64, 'a'), "s", kT0}, "fingerprint:"},
      {{kCaMaterialSigningCa, kRootA + ",", "s", kT0}, "fingerprint:"},
      {{kCaMaterialSigningCa, "sha256:" + std::string(64, 'A'), "s", kT0}, "fingerprint:"},
      {{kCaMaterialSigningCa, kRootA, std::string(5000, 's'), kT0}, "source:"},
      {{kCaMaterialSigningCa, kRootA, "s", absl::InfiniteFuture()}, "recorded_at:"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.field);
    EXPECT_THAT(store->RecordOrGetCaMaterial(c.record),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.field)));
    EXPECT_THAT(store->ReplaceCaMaterial(kRootA, c.record),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.field)));
  }
  EXPECT_THAT(store->GetCaMaterial(kCaMaterialSigningCa), IsOkAndHolds(std::nullopt)) << "nothing was written";
}

// ---- the staged CA rotation ----

// Signing material whose texts say which it is (the store does not parse them).
StoredCaMaterial Material(absl::string_view name) {
  StoredCaMaterial m;
  m.ca_cert_pem = absl::StrCat("-----BEGIN CERTIFICATE-----\nMIIB", name, "ca\n-----END CERTIFICATE-----\n");
  m.cert_chain_pem =
      absl::StrCat(m.ca_cert_pem, "-----BEGIN CERTIFICATE-----\nMIIB", name, "root\n-----END CERTIFICATE-----\n");
  m.root_cert_pem = absl::StrCat("-----BEGIN CERTIFICATE-----\nMIIB", name, "root\n-----END CERTIFICATE-----\n");
  m.key_ref = absl::StrCat("/etc/meshid/rotation/", name, "/ca-key.pem");
  return m;
}

// Rotation `rotation` from each server's own files to Material("new"), prepared at kT0 + 1 µs.
CaRotationRecord Prepared(int64_t rotation = 1, absl::string_view actor = "alice") {
  CaRotationRecord r;
  r.rotation = rotation;
  r.phase = CaRotationPhase::kPrepared;
  r.kind = kCaRotationIntermediate;
  r.to = Material(absl::StrCat("new", rotation));
  r.actor = std::string(actor);
  r.prepared_at = kT0 + absl::Microseconds(1);
  return r;
}

// `r` moved on to `phase`, with the times of the phases it reaches (a second apart).
CaRotationRecord MovedTo(CaRotationRecord r, CaRotationPhase phase, absl::string_view actor = "bob") {
  r.phase = phase;
  r.actor = std::string(actor);
  if (phase >= CaRotationPhase::kPublished && r.published_at == absl::InfinitePast()) {
    r.published_at = r.prepared_at + absl::Seconds(1);
  }
  if (phase >= CaRotationPhase::kActive && r.activated_at == absl::InfinitePast()) {
    r.activated_at = r.published_at + absl::Seconds(1);
  }
  if (phase >= CaRotationPhase::kRetired && r.retired_at == absl::InfinitePast()) {
    r.retired_at = r.activated_at + absl::Seconds(1);
  }
  return r;
}

CaRotationKey KeyOf(const CaRotationRecord& r) { return CaRotationKey{r.rotation, r.phase}; }

TEST_P(StoreTest, NoCaRotationUntilTheFirstIsPrepared) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_THAT(store->GetCaRotation(), IsOkAndHolds(std::nullopt));
  EXPECT_THAT(store->ReplaceCaRotation(CaRotationKey{1, CaRotationPhase::kPrepared},
                                       MovedTo(Prepared(), CaRotationPhase::kPublished)),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no CA rotation")));
  EXPECT_THAT(store->GetCaRotation(), IsOkAndHolds(std::nullopt));
}

TEST_P(StoreTest, TheFirstCaRotationIsInsertedOnceAndALaterInsertGetsIt) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const CaRotationRecord first = Prepared(1, "alice");
  EXPECT_THAT(store->ReplaceCaRotation(std::nullopt, first), IsOkAndHolds(first));
  CaRotationRecord second = Prepared(1, "carol");
  second.kind = kCaRotationRoot;
  second.to = Material("other");
  EXPECT_THAT(store->ReplaceCaRotation(std::nullopt, second), IsOkAndHolds(first))
      << "a second prepare expecting no record gets the first one, unchanged";
  EXPECT_THAT(store->GetCaRotation(), IsOkAndHolds(std::optional<CaRotationRecord>(first)));
}

TEST_P(StoreTest, ReplacingACaRotationIsACompareAndSwapOnRotationAndPhase) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const CaRotationRecord prepared = Prepared();
  ASSERT_OK(store->ReplaceCaRotation(std::nullopt, prepared).status());
  const CaRotationRecord published = MovedTo(prepared, CaRotationPhase::kPublished);
  EXPECT_THAT(store->ReplaceCaRotation(KeyOf(prepared), published), IsOkAndHolds(published));
  EXPECT_THAT(store->GetCaRotation(), IsOkAndHolds(std::optional<CaRotationRecord>(published)));

  // Stale keys (the phase it left, another rotation's number, no record) change nothing and
  // return what is stored.
  const CaRotationRecord active = MovedTo(published, CaRotationPhase::kActive);
  for (const std::optional<CaRotationKey>& stale :
       {std::optional<CaRotationKey>(KeyOf(prepared)),
        std::optional<CaRotationKey>(CaRotationKey{2, CaRotationPhase::kPublished}),
        std::optional<CaRotationKey>(CaRotationKey{0, CaRotationPhase::kPublished}), std::optional<CaRotationKey>()}) {
    SCOPED_TRACE(stale.has_value() ? absl::StrCat(stale->rotation, " ", CaRotationPhaseName(stale->phase)) : "none");
    EXPECT_THAT(store->ReplaceCaRotation(stale, active), IsOkAndHolds(published));
    EXPECT_THAT(store->GetCaRotation(), IsOkAndHolds(std::optional<CaRotationRecord>(published)));
  }

  // The rest of the way, then the next rotation replaces the finished one.
  EXPECT_THAT(store->ReplaceCaRotation(KeyOf(published), active), IsOkAndHolds(active));
  const CaRotationRecord retired = MovedTo(active, CaRotationPhase::kRetired);
  EXPECT_THAT(store->ReplaceCaRotation(KeyOf(active), retired), IsOkAndHolds(retired));
  CaRotationRecord second = Prepared(2);
  second.from = retired.to;
  second.prepared_at = retired.retired_at + absl::Hours(24);
  EXPECT_THAT(store->ReplaceCaRotation(KeyOf(retired), second), IsOkAndHolds(second));
  // Another store on the same database (another replica) sees it.
  auto other = Open();
  ASSERT_NE(other, nullptr);
  EXPECT_THAT(other->GetCaRotation(), IsOkAndHolds(std::optional<CaRotationRecord>(second)));
}

TEST_P(StoreTest, ACaRotationRoundTripsFieldForField) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  CaRotationRecord r;
  r.rotation = 41;
  r.phase = CaRotationPhase::kActive;
  r.kind = kCaRotationRoot;
  r.from = Material("old");
  r.to = Material("new");
  r.to.key_ref = "pkcs11:token=meshid;object=ca-2027?pin-source=file:/etc/meshid/pin";
  r.actor = "ops-wé ✓";
  r.forced = true;
  r.prepared_at = kT0 - absl::Microseconds(3);  // microsecond precise, before and after kT0
  r.published_at = kT0 + absl::Microseconds(5);
  r.activated_at = kT0 + absl::Hours(49) + absl::Microseconds(7);
  // retired_at stays InfinitePast: not reached.
  EXPECT_THAT(store->ReplaceCaRotation(std::nullopt, r), IsOkAndHolds(r));
  EXPECT_THAT(store->GetCaRotation(), IsOkAndHolds(std::optional<CaRotationRecord>(r)));

  const CaRotationRecord retired = MovedTo(r, CaRotationPhase::kRetired, "");
  EXPECT_THAT(store->ReplaceCaRotation(KeyOf(r), retired), IsOkAndHolds(retired));
  auto read = store->GetCaRotation();
  ASSERT_OK(read.status());
  ASSERT_TRUE(read->has_value());
  EXPECT_EQ(**read, retired);
  EXPECT_TRUE((*read)->forced);
  EXPECT_EQ((*read)->retired_at, r.activated_at + absl::Seconds(1));
}

TEST_P(StoreTest, ConcurrentCaRotationSwapsHaveExactlyOneWinner) {
  constexpr int kOperators = 6;
  std::vector<std::unique_ptr<Store>> stores;  // one per operator: each its own connections
  for (int i = 0; i < kOperators; ++i) {
    stores.push_back(Open());
    ASSERT_NE(stores.back(), nullptr);
  }
  // Every operator tries each step at once: the first prepare, then each phase in turn.
  std::optional<CaRotationKey> expected;
  for (CaRotationPhase phase :
       {CaRotationPhase::kPrepared, CaRotationPhase::kPublished, CaRotationPhase::kActive, CaRotationPhase::kRetired}) {
    SCOPED_TRACE(CaRotationPhaseName(phase));
    std::vector<CaRotationRecord> wanted;
    for (int i = 0; i < kOperators; ++i) {
      wanted.push_back(MovedTo(Prepared(1), phase, absl::StrCat("operator-", i)));
    }
    std::vector<absl::StatusOr<CaRotationRecord>> results(kOperators, absl::UnknownError("not run"));
    std::vector<std::thread> threads;
    for (int i = 0; i < kOperators; ++i) {
      threads.emplace_back([&, i] { results[i] = stores[i]->ReplaceCaRotation(expected, wanted[i]); });
    }
    for (auto& t : threads) t.join();
    int winners = 0;
    std::optional<CaRotationRecord> winner;
    for (int i = 0; i < kOperators; ++i) {
      ASSERT_OK(results[i].status());
      if (*results[i] == wanted[i]) {
        ++winners;
        winner = *results[i];
      }
    }
    ASSERT_EQ(winners, 1);
    for (const auto& r : results) EXPECT_EQ(*r, *winner) << "a loser gets the winner's record";
    EXPECT_THAT(stores[0]->GetCaRotation(), IsOkAndHolds(winner));
    expected = KeyOf(*winner);
  }
}

// A CA rotation with one field made invalid, and the field the refusal must name.
struct InvalidCaRotation {
  std::string field;
  std::function<void(CaRotationRecord&)> spoil;
};

std::vector<InvalidCaRotation> InvalidCaRotations() {
  return {
      {"rotation: must be at least 1", [](CaRotationRecord& r) { r.rotation = 0; }},
      {"rotation: must be at least 1", [](CaRotationRecord& r) { r.rotation = -1; }},
      {"phase: 9 is not one of", [](CaRotationRecord& r) { r.phase = static_cast<CaRotationPhase>(9); }},
      {"kind: must be root or intermediate", [](CaRotationRecord& r) { r.kind = "signing-ca"; }},
      {"kind: must be root or intermediate", [](CaRotationRecord& r) { r.kind = ""; }},
      {"to.ca_cert_pem: must not be empty", [](CaRotationRecord& r) { r.to.ca_cert_pem.clear(); }},
      {"to.cert_chain_pem: must not be empty", [](CaRotationRecord& r) { r.to.cert_chain_pem.clear(); }},
      {"to.root_cert_pem: must not be empty", [](CaRotationRecord& r) { r.to.root_cert_pem.clear(); }},
      {"to.key_ref: must not be empty", [](CaRotationRecord& r) { r.to.key_ref.clear(); }},
      {"to.ca_cert_pem: must not be empty", [](CaRotationRecord& r) { r.to = StoredCaMaterial(); }},
      {"to.root_cert_pem: longer than 1048576 bytes",
       [](CaRotationRecord& r) { r.to.root_cert_pem = std::string((1 << 20) + 1, 'A'); }},
      {"to.key_ref: longer than 4096 bytes", [](CaRotationRecord& r) { r.to.key_ref = std::string(4097, 'k'); }},
      {"to.key_ref: must not contain a newline", [](CaRotationRecord& r) { r.to.key_ref = "/a/key.pem\n/b"; }},
      {"to.key_ref: not valid UTF-8 text (or contains NUL)",
       [](CaRotationRecord& r) { r.to.key_ref = std::string("/a/key\0.pem", 11); }},
      {"to.ca_cert_pem: not valid UTF-8 text", [](CaRotationRecord& r) { r.to.ca_cert_pem = "\xff\xfe"; }},
      {"from.cert_chain_pem: must not be empty (from is entirely set or entirely empty)",
       [](CaRotationRecord& r) {
         r.from = Material("old");
         r.from.cert_chain_pem.clear();
       }},
      {"from.ca_cert_pem: must not be empty", [](CaRotationRecord& r) { r.from.key_ref = "/old/key.pem"; }},
      {"actor: longer than 1024 bytes", [](CaRotationRecord& r) { r.actor = std::string(1025, 'a'); }},
      {"prepared_at: must be a finite time", [](CaRotationRecord& r) { r.prepared_at = absl::InfinitePast(); }},
      {"prepared_at: must be a finite time", [](CaRotationRecord& r) { r.prepared_at = absl::InfiniteFuture(); }},
      {"published_at: must be unset", [](CaRotationRecord& r) { r.published_at = r.prepared_at; }},
      {"published_at: must be a finite time once the rotation is published",
       [](CaRotationRecord& r) { r.phase = CaRotationPhase::kPublished; }},
      {"published_at: must be a finite time once the rotation is published",
       [](CaRotationRecord& r) {
         r = MovedTo(r, CaRotationPhase::kPublished);
         r.published_at = absl::InfiniteFuture();
       }},
      {"published_at: before prepared_at",
       [](CaRotationRecord& r) {
         r = MovedTo(r, CaRotationPhase::kPublished);
         r.published_at = r.prepared_at - absl::Microseconds(1);
       }},
      {"activated_at: must be unset (absl::InfinitePast()) while the rotation is published",
       [](CaRotationRecord& r) {
         r = MovedTo(r, CaRotationPhase::kPublished);
         r.activated_at = r.published_at;
       }},
      {"activated_at: must be a finite time once the rotation is active",
       [](CaRotationRecord& r) {
         r = MovedTo(r, CaRotationPhase::kPublished);
         r.phase = CaRotationPhase::kActive;
       }},
      {"retired_at: before activated_at",
       [](CaRotationRecord& r) {
         r = MovedTo(r, CaRotationPhase::kRetired);
         r.retired_at = r.published_at;
       }},
      {"retired_at: must be unset",
       [](CaRotationRecord& r) {
         r = MovedTo(r, CaRotationPhase::kActive);
         r.retired_at = absl::InfiniteFuture();
       }},
      {"forced: only an activation may be forced, and the rotation is published",
       [](CaRotationRecord& r) {
         r = MovedTo(r, CaRotationPhase::kPublished);
         r.forced = true;
       }},
      {"forced: only an activation may be forced", [](CaRotationRecord& r) { r.forced = true; }},
  };
}

TEST(CaRotationValidationTest, PhaseNamesRoundTrip) {
  for (CaRotationPhase phase :
       {CaRotationPhase::kPrepared, CaRotationPhase::kPublished, CaRotationPhase::kActive, CaRotationPhase::kRetired}) {
    EXPECT_EQ(ParseCaRotationPhase(CaRotationPhaseName(phase)), phase);
  }
  EXPECT_STREQ(CaRotationPhaseName(CaRotationPhase::kActive), "active");
  EXPECT_STREQ(CaRotationPhaseName(static_cast<CaRotationPhase>(9)), "");
  EXPECT_EQ(ParseCaRotationPhase("Active"), std::nullopt);
  EXPECT_EQ(ParseCaRotationPhase(""), std::nullopt);
  EXPECT_EQ(ParseCaRotationPhase(std::string("active\0", 7)), std::nullopt);
}

TEST(CaRotationValidationTest, EveryPhaseWithItsTimesIsValid) {
  for (CaRotationPhase phase :
       {CaRotationPhase::kPrepared, CaRotationPhase::kPublished, CaRotationPhase::kActive, CaRotationPhase::kRetired}) {
    SCOPED_TRACE(CaRotationPhaseName(phase));
    CaRotationRecord r = MovedTo(Prepared(), phase);
    EXPECT_OK(ValidateCaRotationRecord(r));
    r.from = Material("old");
    r.kind = kCaRotationRoot;
    r.actor = "";
    EXPECT_OK(ValidateCaRotationRecord(r));
    // Phases may be reached in the same microsecond.
    r.published_at = r.activated_at = r.retired_at = absl::InfinitePast();
    r = MovedTo(r, phase);
    if (phase >= CaRotationPhase::kPublished) r.published_at = r.prepared_at;
    if (phase >= CaRotationPhase::kActive) r.activated_at = r.prepared_at;
    if (phase >= CaRotationPhase::kRetired) r.retired_at = r.prepared_at;
    EXPECT_OK(ValidateCaRotationRecord(r));
    if (phase >= CaRotationPhase::kActive) {
      r.forced = true;
      EXPECT_OK(ValidateCaRotationRecord(r));
    }
  }
}

TEST(CaRotationValidationTest, InvalidRecordsAreRefusedNamingTheField) {
  for (const InvalidCaRotation& c : InvalidCaRotations()) {
    SCOPED_TRACE(c.field);
    CaRotationRecord r = Prepared();
    c.spoil(r);
    EXPECT_THAT(ValidateCaRotationRecord(r), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.field)));
  }
}

TEST_P(StoreTest, InvalidCaRotationsAreRefusedNamingTheFieldAndNothingIsWritten) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  for (const InvalidCaRotation& c : InvalidCaRotations()) {
    SCOPED_TRACE(c.field);
    CaRotationRecord r = Prepared();
    c.spoil(r);
    EXPECT_THAT(store->ReplaceCaRotation(std::nullopt, r),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.field)));
  }
  EXPECT_THAT(store->GetCaRotation(), IsOkAndHolds(std::nullopt)) << "nothing was written";

  const CaRotationRecord prepared = Prepared();
  ASSERT_OK(store->ReplaceCaRotation(std::nullopt, prepared).status());
  for (const InvalidCaRotation& c : InvalidCaRotations()) {
    SCOPED_TRACE(c.field);
    CaRotationRecord r = Prepared();
    c.spoil(r);
    EXPECT_THAT(store->ReplaceCaRotation(KeyOf(prepared), r),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.field)));
  }
  EXPECT_THAT(store->GetCaRotation(), IsOkAndHolds(std::optional<CaRotationRecord>(prepared))) << "nothing changed";
}

TEST_P(StoreTest, CountsTheUnexpiredCertificatesOfOtherIssuers) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const absl::Time now = kT0 + absl::Minutes(30);
  EXPECT_THAT(store->CountUnexpiredIssuedByOthers("7A3F", now), IsOkAndHolds(0));
  std::vector<IssuanceRecord> records;
  for (int i = 0; i < 10; ++i) {
    // Expiring at now - 2 min ... now + 7 min: 2 and 1 minutes before now and exactly at now are expired.
    IssuanceRecord r = Record(i, "spiffe://cluster.local/ns/default/sa/web", now + absl::Minutes(i - 2));
    r.issuer_serial_hex = i % 2 == 0 ? "7A3F" : "0B1C";  // the new CA's, the old CA's
    records.push_back(r);
  }
  IssuanceRecord third = Record(10, "spiffe://cluster.local/ns/default/sa/web", now + absl::Hours(1));
  third.issuer_serial_hex = "7A3";  // a prefix of the named issuer is another issuer
  records.push_back(third);
  ASSERT_OK(store->RecordIssuances(records));
  // Unexpired: i = 3..9 (and the third issuer's). Of those, i = 3, 5, 7, 9 are the old CA's.
  EXPECT_THAT(store->CountUnexpiredIssuedByOthers("7A3F", now), IsOkAndHolds(5));
  EXPECT_THAT(store->CountUnexpiredIssuedByOthers("0B1C", now), IsOkAndHolds(4));  // i = 4, 6, 8 and the third
  EXPECT_THAT(store->CountUnexpiredIssuedByOthers("FFFF", now), IsOkAndHolds(8));
  EXPECT_THAT(store->CountUnexpiredIssuedByOthers("7A3F", now + absl::Hours(2)), IsOkAndHolds(0));
  EXPECT_THAT(store->CountUnexpiredIssuedByOthers("7A3F", kT0), IsOkAndHolds(6));  // every 0B1C, and the third

  EXPECT_THAT(store->CountUnexpiredIssuedByOthers("7a3f", now),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("issuer_serial_hex:")));
  EXPECT_THAT(store->CountUnexpiredIssuedByOthers("", now),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("issuer_serial_hex:")));
  EXPECT_THAT(store->CountUnexpiredIssuedByOthers("7A3F", absl::InfiniteFuture()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("now:")));
}

// A database at schema version 7 with an agent's status, upgraded: the row is kept with an
// unknown trust bundle, and there is no CA rotation yet.
TEST_P(StoreTest, UpgradeFromVersion7KeepsStatusRowsWithAnUnknownTrustBundle) {
  auto builtin = sql::BuiltinMigrations();
  ASSERT_GE(builtin.size(), 8u);
  ASSERT_EQ(builtin[6].version, 7);
  std::vector<sql::Migration> old(builtin.begin(), builtin.begin() + 6);
  const std::string version7_with_rows =
      absl::StrCat(builtin[6].sql,
                   "\nINSERT INTO policy_status (agent_id, proxy_id, reporter, service, ns, applied_version, "
                   "rejected_version, last_error, connected, changed_at_us, reported_at_us, crl_number) VALUES "
                   "('node-a', '', 'spiffe://cluster.local/agent/node-a', '', '', 3, 0, '', 1, 1800000000000017, "
                   "1800000001000000, 4);\n");
  old.push_back({7, builtin[6].name, version7_with_rows});
  {
    auto store = sql::OpenStoreWithMigrations(db_->url(), {}, old, SystemClock::Instance(), MakeNullLogger());
    ASSERT_OK(store.status());
    EXPECT_EQ(*(*store)->SchemaVersion(), 7);
  }
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(*store->SchemaVersion(), sql::BuiltinMigrations().back().version);
  auto rows = store->ListPolicyStatus();
  ASSERT_OK(rows.status());
  ASSERT_THAT(*rows, SizeIs(1));
  EXPECT_EQ((*rows)[0].agent_id, "node-a");
  EXPECT_EQ((*rows)[0].applied_version, 3);
  EXPECT_EQ((*rows)[0].crl_number, 4);
  EXPECT_EQ((*rows)[0].trust_bundle, "");
  EXPECT_THAT(store->GetCaRotation(), IsOkAndHolds(std::nullopt));
}

}  // namespace
}  // namespace meshid
