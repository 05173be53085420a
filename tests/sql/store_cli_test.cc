// The storage commands of the real `meshid` binary: certs list (text and --json) and revoke, entry
// create/list/delete (direct and with a parent and selectors), identity block/unblock/list-blocked,
// and their errors: one line naming the problem, non-zero exit.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "sql/store.h"
#include "sql/store_url.h"
#include "tests/support/databases.h"
#include "tests/support/dependencies.h"
#include "tests/support/status_matchers.h"
#include "tests/support/subprocess.h"
#include "tests/support/temp_dir.h"

namespace meshid {
namespace {

using ::meshid::testing::Backend;
using ::meshid::testing::RunShell;
using ::meshid::testing::TempDir;
using ::meshid::testing::TestDatabase;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::SizeIs;
using ::testing::StartsWith;

struct Result {
  int exit_code;
  std::string stdout_text;
  std::string stderr_text;
};

// Runs `meshid <args>` through the shell, keeping stdout and stderr apart; `env`: assignments
// ("NAME=value ...") for its environment.
Result Meshid(const std::string& args, const std::string& as_user = "", const std::string& env = "") {
  TempDir dir;
  std::string out = dir.path() + "/out";
  std::string err = dir.path() + "/err";
  std::string prefix =
      as_user.empty() ? "" : absl::StrCat("setpriv --reuid=", as_user, " --regid=", as_user, " --clear-groups ");
  auto [code, ignored] = RunShell(absl::StrCat("{ ", env.empty() ? "" : "env " + env + " ", prefix, MESHID_BINARY, " ",
                                               args, " >", out, " 2>", err, "; }"));
  auto read = [](const std::string& path) {
    auto [c, text] = RunShell("cat " + path);
    return text;
  };
  return {code, read(out), read(err)};
}

std::vector<std::string> Lines(const std::string& text) { return absl::StrSplit(text, '\n', absl::SkipEmpty()); }

IssuanceRecord Record(int n, const std::string& spiffe_id, absl::Time not_after) {
  IssuanceRecord r;
  r.serial_hex = absl::StrFormat("%X", 0xAB00 + n);  // as the CA records them (BN_bn2hex)
  r.spiffe_id = spiffe_id;
  r.not_before = not_after - absl::Hours(1);
  r.not_after = not_after;
  r.public_key_sha256 = absl::StrFormat("%064x", n + 1);
  r.issuer_serial_hex = "1F";
  r.auth_method = n % 2 == 0 ? "jwt" : "client-cert";
  r.auth_detail = n % 2 == 0 ? "iss=https://issuer.example sub=web" : "serial=0A0B";
  r.issued_at = absl::FromUnixSeconds(1'700'000'000 + n);
  return r;
}

class StoreCliTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    db_ = TestDatabase::Create(GetParam());
    MESHID_REQUIRE_DEPENDENCY(db_ != nullptr, testing::kPostgresDependency);
    // SQLite through --data-dir (the default layout), PostgreSQL through --datastore.
    where_ = GetParam() == Backend::kSqlite ? "--data-dir " + db_->dir() : "--datastore '" + db_->url() + "'";
  }
  std::unique_ptr<Store> Open() {
    auto store = OpenStore(db_->url(), SystemClock::Instance(), MakeNullLogger());
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }
  std::unique_ptr<TestDatabase> db_;
  std::string where_;
};

INSTANTIATE_TEST_SUITE_P(Backends, StoreCliTest, ::testing::Values(Backend::kSqlite, Backend::kPostgres),
                         [](const auto& info) { return testing::BackendName(info.param); });

TEST_P(StoreCliTest, CertsListJsonAndFilters) {
  const std::string web = "spiffe://cluster.local/ns/default/sa/web";
  const std::string db = "spiffe://cluster.local/ns/default/sa/db";
  const absl::Time past = absl::FromUnixSeconds(1'600'000'000);    // 2020: expired
  const absl::Time future = absl::FromUnixSeconds(4'000'000'000);  // 2096: valid
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    ASSERT_OK(store->RecordIssuances({Record(0, web, past), Record(1, db, future), Record(2, web, future)}));
  }
  Result all = Meshid("certs list --json " + where_);
  ASSERT_EQ(all.exit_code, 0) << all.stderr_text;
  auto lines = Lines(all.stdout_text);
  ASSERT_THAT(lines, SizeIs(3));
  nlohmann::json first = nlohmann::json::parse(lines[0]);  // newest first
  EXPECT_EQ(first["serial"], Record(2, web, future).serial_hex);
  EXPECT_EQ(first["spiffe_id"], web);
  EXPECT_EQ(first["not_before"], "2096-10-02T06:06:40Z");
  EXPECT_EQ(first["not_after"], "2096-10-02T07:06:40Z");
  EXPECT_EQ(first["public_key_sha256"], Record(2, web, future).public_key_sha256);
  EXPECT_EQ(first["issuer_serial"], "1F");
  EXPECT_EQ(first["auth_method"], "jwt");
  EXPECT_EQ(first["issued_at"], "2023-11-14T22:13:22Z");
  EXPECT_EQ(first["expired"], false);

  Result by_id = Meshid("certs list --json --spiffe-id " + db + " " + where_);
  ASSERT_EQ(by_id.exit_code, 0) << by_id.stderr_text;
  ASSERT_THAT(Lines(by_id.stdout_text), SizeIs(1));
  EXPECT_EQ(nlohmann::json::parse(Lines(by_id.stdout_text)[0])["auth_detail"], "serial=0A0B");

  // openssl prints serials with colons or in lower case; both find the row.
  Result by_serial = Meshid("certs list --json --serial 00:00:00:00:00:00:00:00:00:00:00:00:00:00:ab:00 " + where_);
  ASSERT_EQ(by_serial.exit_code, 0) << by_serial.stderr_text;
  ASSERT_THAT(Lines(by_serial.stdout_text), SizeIs(1));
  EXPECT_EQ(nlohmann::json::parse(Lines(by_serial.stdout_text)[0])["not_after"], "2020-09-13T12:26:40Z");

  Result expired = Meshid("certs list --json --expired " + where_);
  ASSERT_EQ(expired.exit_code, 0) << expired.stderr_text;
  ASSERT_THAT(Lines(expired.stdout_text), SizeIs(1));
  EXPECT_EQ(nlohmann::json::parse(Lines(expired.stdout_text)[0])["expired"], true);

  Result limited = Meshid("certs list --json --limit 2 " + where_);
  EXPECT_THAT(Lines(limited.stdout_text), SizeIs(2));

  Result text = Meshid("certs list " + where_);
  ASSERT_EQ(text.exit_code, 0) << text.stderr_text;
  auto text_lines = Lines(text.stdout_text);
  ASSERT_THAT(text_lines, SizeIs(4));
  EXPECT_THAT(text_lines[0], AllOf(StartsWith("SERIAL"), HasSubstr("SPIFFE ID")));
  EXPECT_THAT(text_lines[3], AllOf(HasSubstr(Record(0, web, past).serial_hex), HasSubstr("2020-09-13T12:26:40Z"),
                                   HasSubstr(web), HasSubstr("(expired)")));

  Result none = Meshid("certs list --json --spiffe-id spiffe://cluster.local/ns/x/sa/none " + where_);
  EXPECT_EQ(none.exit_code, 0);
  EXPECT_EQ(none.stdout_text, "");
}

TEST_P(StoreCliTest, EntryCreateListDelete) {
  Result create = Meshid(
      "entry create --spiffe-id spiffe://cluster.local/ns/default/sa/web --allow "
      "jwt-sub:system:serviceaccount:default:web --allow client-cert --max-ttl 30m --dns-name "
      "web.default.svc --dns-name web.default.svc.cluster.local --note 'owned by team web' " +
      where_);
  ASSERT_EQ(create.exit_code, 0) << create.stderr_text;
  EXPECT_THAT(create.stdout_text, HasSubstr("created registry entry for spiffe://cluster.local/ns/default/sa/web"));
  Result plain = Meshid("entry create --spiffe-id spiffe://cluster.local/ns/default/sa/api " + where_);
  ASSERT_EQ(plain.exit_code, 0) << plain.stderr_text;

  Result again = Meshid("entry create --spiffe-id spiffe://cluster.local/ns/default/sa/api " + where_);
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(Lines(again.stderr_text), ElementsAre(HasSubstr("already exists")));

  Result list = Meshid("entry list --json " + where_);
  ASSERT_EQ(list.exit_code, 0) << list.stderr_text;
  auto lines = Lines(list.stdout_text);
  ASSERT_THAT(lines, SizeIs(2));
  nlohmann::json api = nlohmann::json::parse(lines[0]);
  nlohmann::json web = nlohmann::json::parse(lines[1]);
  EXPECT_EQ(api["spiffe_id"], "spiffe://cluster.local/ns/default/sa/api");
  EXPECT_EQ(api["parent_id"], "");
  EXPECT_EQ(api["selectors"], nlohmann::json::array());
  EXPECT_EQ(api["allowed_auth"], nlohmann::json::array({"*"}));
  EXPECT_EQ(api["max_ttl_seconds"], 0);
  EXPECT_EQ(web["allowed_auth"], nlohmann::json::array({"jwt-sub:system:serviceaccount:default:web", "client-cert"}));
  EXPECT_EQ(web["max_ttl_seconds"], 1800);
  EXPECT_EQ(web["dns_names"], nlohmann::json::array({"web.default.svc", "web.default.svc.cluster.local"}));
  EXPECT_EQ(web["note"], "owned by team web");

  // The server sees the same through the store.
  auto store = Open();
  ASSERT_NE(store, nullptr);
  auto status = store->GetIdentityStatus("spiffe://cluster.local/ns/default/sa/web");
  ASSERT_OK(status.status());
  ASSERT_TRUE(status->entry.has_value());
  EXPECT_EQ(status->entry->max_ttl, absl::Minutes(30));

  Result del = Meshid("entry delete --spiffe-id spiffe://cluster.local/ns/default/sa/web " + where_);
  ASSERT_EQ(del.exit_code, 0) << del.stderr_text;
  Result del_again = Meshid("entry delete --spiffe-id spiffe://cluster.local/ns/default/sa/web " + where_);
  EXPECT_EQ(del_again.exit_code, 1);
  EXPECT_THAT(Lines(del_again.stderr_text),
              ElementsAre(HasSubstr("no direct registry entry for spiffe://cluster.local/ns/default/sa/web")));
  EXPECT_THAT(Lines(Meshid("entry list --json " + where_).stdout_text), SizeIs(1));
}

TEST_P(StoreCliTest, EntriesWithParentsAndSelectors) {
  const std::string web = "spiffe://cluster.local/ns/default/sa/web";
  const std::string node_a = "spiffe://cluster.local/agent/node-a";
  const std::string node_b = "spiffe://cluster.local/agent/node-b";
  const std::string hash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
  // Selectors are canonicalised (hex lower-cased), sorted and deduplicated.
  Result on_a = Meshid("entry create --spiffe-id " + web + " --parent " + node_a + " --selector unix:uid:1000" +
                       " --selector unix:sha256:" + absl::AsciiStrToUpper(hash) +
                       " --selector unix:uid:1000 --selector 'unix:user:HOST01$' --max-ttl 1h " + where_);
  ASSERT_EQ(on_a.exit_code, 0) << on_a.stderr_text;
  EXPECT_THAT(on_a.stdout_text,
              HasSubstr("created registry entry for " + web + " with parent " + node_a +
                        " (selectors: unix:sha256:" + hash + ", unix:uid:1000, unix:user:HOST01$; max ttl: 1h"));
  // The same identity with another parent, and directly.
  Result on_b = Meshid("entry create --spiffe-id " + web + " --parent " + node_b + " --selector unix:gid:27 " + where_);
  ASSERT_EQ(on_b.exit_code, 0) << on_b.stderr_text;
  Result direct = Meshid("entry create --spiffe-id " + web + " --allow client-cert " + where_);
  ASSERT_EQ(direct.exit_code, 0) << direct.stderr_text;
  EXPECT_THAT(direct.stdout_text, HasSubstr("created registry entry for " + web + " (allow: client-cert;"));

  Result again = Meshid("entry create --spiffe-id " + web + " --parent " + node_a + " --selector unix:uid:1 " + where_);
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(Lines(again.stderr_text), ElementsAre("meshid: entry create: a registry entry for " + web +
                                                    " with parent " + node_a + " already exists"));
  Result direct_again = Meshid("entry create --spiffe-id " + web + " " + where_);
  EXPECT_EQ(direct_again.exit_code, 1);
  EXPECT_THAT(Lines(direct_again.stderr_text),
              ElementsAre("meshid: entry create: a direct registry entry for " + web + " already exists"));

  // By SPIFFE ID then parent, the direct entry first.
  Result list = Meshid("entry list --json " + where_);
  ASSERT_EQ(list.exit_code, 0) << list.stderr_text;
  auto lines = Lines(list.stdout_text);
  ASSERT_THAT(lines, SizeIs(3));
  nlohmann::json j0 = nlohmann::json::parse(lines[0]);
  nlohmann::json j1 = nlohmann::json::parse(lines[1]);
  nlohmann::json j2 = nlohmann::json::parse(lines[2]);
  EXPECT_EQ(j0["parent_id"], "");
  EXPECT_EQ(j0["allowed_auth"], nlohmann::json::array({"client-cert"}));
  EXPECT_EQ(j1["spiffe_id"], web);
  EXPECT_EQ(j1["parent_id"], node_a);
  EXPECT_EQ(j1["selectors"], nlohmann::json::array({"unix:sha256:" + hash, "unix:uid:1000", "unix:user:HOST01$"}));
  EXPECT_EQ(j1["allowed_auth"], nlohmann::json::array());
  EXPECT_EQ(j1["max_ttl_seconds"], 3600);
  EXPECT_EQ(j2["parent_id"], node_b);
  EXPECT_EQ(j2["selectors"], nlohmann::json::array({"unix:gid:27"}));

  Result only_b = Meshid("entry list --json --parent " + node_b + " " + where_);
  ASSERT_EQ(only_b.exit_code, 0) << only_b.stderr_text;
  ASSERT_THAT(Lines(only_b.stdout_text), SizeIs(1));
  EXPECT_EQ(nlohmann::json::parse(Lines(only_b.stdout_text)[0])["parent_id"], node_b);
  Result only_direct = Meshid("entry list --json --parent '' " + where_);
  ASSERT_EQ(only_direct.exit_code, 0) << only_direct.stderr_text;
  ASSERT_THAT(Lines(only_direct.stdout_text), SizeIs(1));
  EXPECT_EQ(nlohmann::json::parse(Lines(only_direct.stdout_text)[0])["parent_id"], "");
  Result none = Meshid("entry list --parent spiffe://cluster.local/agent/node-c " + where_);
  EXPECT_EQ(none.exit_code, 0);
  EXPECT_EQ(none.stdout_text, "");
  EXPECT_THAT(none.stderr_text, HasSubstr("no registry entries"));

  Result text = Meshid("entry list " + where_);
  ASSERT_EQ(text.exit_code, 0) << text.stderr_text;
  EXPECT_THAT(text.stdout_text, AllOf(HasSubstr("  parent: none (direct)\n  allow: client-cert\n"),
                                      HasSubstr("  parent: " + node_a + "\n  selectors: unix:sha256:" + hash +
                                                ", unix:uid:1000, unix:user:HOST01$\n"),
                                      HasSubstr("  parent: " + node_b + "\n  selectors: unix:gid:27\n")));

  // The server sees them through the store.
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    auto status = store->GetIdentityStatus(web);
    ASSERT_OK(status.status());
    ASSERT_TRUE(status->entry.has_value());
    ASSERT_THAT(status->node_entries, SizeIs(2));
    EXPECT_EQ(status->node_entries[0].parent_id, node_a);
    EXPECT_EQ(status->node_entries[1].selectors, std::vector<std::string>{"unix:gid:27"});
  }

  Result del = Meshid("entry delete --spiffe-id " + web + " --parent " + node_a + " " + where_);
  ASSERT_EQ(del.exit_code, 0) << del.stderr_text;
  EXPECT_EQ(del.stdout_text, "deleted registry entry for " + web + " with parent " + node_a + "\n");
  Result del_again = Meshid("entry delete --spiffe-id " + web + " --parent " + node_a + " " + where_);
  EXPECT_EQ(del_again.exit_code, 1);
  EXPECT_THAT(Lines(del_again.stderr_text),
              ElementsAre("meshid: entry delete: no registry entry for " + web + " with parent " + node_a));
  Result del_direct = Meshid("entry delete --spiffe-id " + web + " " + where_);
  ASSERT_EQ(del_direct.exit_code, 0) << del_direct.stderr_text;
  EXPECT_EQ(del_direct.stdout_text, "deleted registry entry for " + web + "\n");
  lines = Lines(Meshid("entry list --json " + where_).stdout_text);
  ASSERT_THAT(lines, SizeIs(1));
  EXPECT_EQ(nlohmann::json::parse(lines[0])["parent_id"], node_b);
}

TEST_P(StoreCliTest, EntriesOfAnotherTrustDomainNeedTheFlag) {
  const std::string id = "spiffe://example.org/ns/default/sa/web";
  const std::string node = "spiffe://example.org/agent/node-a";
  Result refused = Meshid("entry create --spiffe-id " + id + " " + where_);
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_THAT(Lines(refused.stderr_text),
              ElementsAre("meshid: entry create: --spiffe-id " + id +
                          " is in trust domain \"example.org\", not in --trust-domain \"cluster.local\" (give "
                          "--trust-domain as `meshid server` has it)"));
  Result parent = Meshid("entry create --spiffe-id spiffe://cluster.local/ns/a/sa/b --parent " + node +
                         " --selector unix:uid:1 " + where_);
  EXPECT_EQ(parent.exit_code, 2);
  EXPECT_THAT(Lines(parent.stderr_text),
              ElementsAre(AllOf(StartsWith("meshid: entry create: --parent " + node + " is in trust domain"),
                                HasSubstr("not in --trust-domain \"cluster.local\""))));
  EXPECT_THAT(Lines(Meshid("entry list --json " + where_).stdout_text), SizeIs(0));

  Result flag = Meshid("entry create --trust-domain example.org --spiffe-id " + id + " --parent " + node +
                       " --selector unix:uid:1 " + where_);
  ASSERT_EQ(flag.exit_code, 0) << flag.stderr_text;
  Result env = Meshid("entry create --spiffe-id " + id + " " + where_, "", "TRUST_DOMAIN=example.org");
  ASSERT_EQ(env.exit_code, 0) << env.stderr_text;
  EXPECT_THAT(Lines(Meshid("entry list --json " + where_).stdout_text), SizeIs(2));
}

TEST_P(StoreCliTest, CertsListShowsWhichAgentMintedACertificate) {
  const std::string web = "spiffe://cluster.local/ns/default/sa/web";
  const std::string node = "spiffe://cluster.local/agent/node-a";
  const absl::Time future = absl::FromUnixSeconds(4'000'000'000);
  IssuanceRecord minted = Record(1, web, future);
  minted.minted_by = node;
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    ASSERT_OK(store->RecordIssuances({Record(0, web, future), minted}));
  }
  Result json = Meshid("certs list --json " + where_);
  ASSERT_EQ(json.exit_code, 0) << json.stderr_text;
  auto lines = Lines(json.stdout_text);
  ASSERT_THAT(lines, SizeIs(2));
  EXPECT_EQ(nlohmann::json::parse(lines[0])["minted_by"], node);  // newest first
  EXPECT_EQ(nlohmann::json::parse(lines[1])["minted_by"], "");

  Result text = Meshid("certs list " + where_);
  ASSERT_EQ(text.exit_code, 0) << text.stderr_text;
  auto text_lines = Lines(text.stdout_text);
  ASSERT_THAT(text_lines, SizeIs(3));
  // MINTED BY is as wide as the longest agent ID; the SPIFFE IDs line up after it.
  const size_t column = text_lines[0].find("MINTED BY");
  ASSERT_NE(column, std::string::npos);
  EXPECT_EQ(text_lines[0].find("SPIFFE ID"), column + node.size() + 1);
  EXPECT_EQ(text_lines[1].substr(column), node + " " + web);
  EXPECT_EQ(text_lines[2].substr(column), absl::StrCat("-", std::string(node.size(), ' '), web));
}

TEST_P(StoreCliTest, IdentityBlockUnblock) {
  const std::string id = "spiffe://cluster.local/ns/default/sa/web";
  Result block = Meshid("identity block " + id + " --reason 'key leaked in CI logs' " + where_);
  ASSERT_EQ(block.exit_code, 0) << block.stderr_text;
  EXPECT_THAT(block.stdout_text, HasSubstr("blocked " + id));
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    auto status = store->GetIdentityStatus(id);
    ASSERT_OK(status.status());
    ASSERT_TRUE(status->blocked.has_value());
    EXPECT_EQ(status->blocked->reason, "key leaked in CI logs");
  }
  Result list = Meshid("identity list-blocked --json " + where_);
  ASSERT_EQ(list.exit_code, 0) << list.stderr_text;
  ASSERT_THAT(Lines(list.stdout_text), SizeIs(1));
  nlohmann::json j = nlohmann::json::parse(Lines(list.stdout_text)[0]);
  EXPECT_EQ(j["spiffe_id"], id);
  EXPECT_EQ(j["reason"], "key leaked in CI logs");
  EXPECT_THAT(j["blocked_at"].get<std::string>(), HasSubstr("T"));

  Result text = Meshid("identity list-blocked " + where_);
  EXPECT_THAT(text.stdout_text, AllOf(HasSubstr(id), HasSubstr("key leaked in CI logs")));

  ASSERT_EQ(Meshid("identity unblock " + id + " " + where_).exit_code, 0);
  Result again = Meshid("identity unblock " + id + " " + where_);
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(Lines(again.stderr_text), ElementsAre(HasSubstr(id + " is not blocked")));
  EXPECT_EQ(Meshid("identity list-blocked --json " + where_).stdout_text, "");
}

TEST_P(StoreCliTest, CertsRevokeAndListRevoked) {
  const std::string web = "spiffe://cluster.local/ns/default/sa/web";
  const std::string db = "spiffe://cluster.local/ns/default/sa/db";
  const absl::Time past = absl::FromUnixSeconds(1'600'000'000);
  const absl::Time future = absl::FromUnixSeconds(4'000'000'000);
  const std::string expired_serial = Record(0, web, past).serial_hex;
  const std::string db_serial = Record(1, db, future).serial_hex;
  const std::string web_serial = Record(2, web, future).serial_hex;
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    ASSERT_OK(store->RecordIssuances(
        {Record(0, web, past), Record(1, db, future), Record(2, web, future), Record(3, web, future)}));
  }
  // openssl's colon form, lower case, and an expired certificate in one call.
  Result revoked = Meshid("certs revoke 00:00:00:00:00:00:00:00:00:00:00:00:00:00:ab:01 " + expired_serial +
                          " --reason keyCompromise " + where_);
  ASSERT_EQ(revoked.exit_code, 0) << revoked.stderr_text;
  EXPECT_THAT(Lines(revoked.stdout_text),
              ElementsAre("revoked " + db_serial, HasSubstr(expired_serial + ": expired already, not revoked"),
                          "CRL number 2"));

  Result again = Meshid("certs revoke 0x0ab01 --reason superseded " + where_);  // odd length, leading zero
  ASSERT_EQ(again.exit_code, 0) << again.stderr_text;
  EXPECT_THAT(again.stdout_text, AllOf(HasSubstr(db_serial + ": already revoked"), HasSubstr("(keyCompromise)"),
                                       HasSubstr("CRL number 2 (unchanged)")));

  // Unknown serials revoke nothing, the known one in the same call included.
  Result unknown = Meshid("certs revoke " + web_serial + " FFFF01 " + where_);
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_THAT(Lines(unknown.stderr_text),
              ElementsAre(AllOf(HasSubstr("no certificate with serial FFFF01"), HasSubstr("nothing was revoked"))));
  Result bad = Meshid("certs revoke 12G4 " + where_);
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(Lines(bad.stderr_text), ElementsAre(HasSubstr("\"12G4\" is not a hex serial number")));
  Result hold = Meshid("certs revoke " + web_serial + " --reason certificateHold " + where_);
  EXPECT_EQ(hold.exit_code, 2);
  EXPECT_THAT(hold.stderr_text, HasSubstr("\"certificateHold\" is not one of unspecified, keyCompromise"));

  Result list = Meshid("certs list --json " + where_);
  ASSERT_EQ(list.exit_code, 0) << list.stderr_text;
  int revoked_rows = 0;
  for (const std::string& line : Lines(list.stdout_text)) {
    nlohmann::json j = nlohmann::json::parse(line);
    if (!j["revoked"].get<bool>()) continue;
    ++revoked_rows;
    EXPECT_EQ(j["serial"], db_serial);
    EXPECT_EQ(j["revocation"]["reason"], "keyCompromise");
    EXPECT_THAT(j["revocation"]["revoked_by"].get<std::string>(), HasSubstr("@"));
  }
  EXPECT_EQ(revoked_rows, 1);
  Result text = Meshid("certs list --serial " + db_serial + " " + where_);
  EXPECT_THAT(text.stdout_text, HasSubstr(": keyCompromise)"));

  // Blocking revokes the identity's unexpired certificates; unblocking does not un-revoke.
  Result block = Meshid("identity block " + web + " --reason 'laptop stolen' " + where_);
  ASSERT_EQ(block.exit_code, 0) << block.stderr_text;
  EXPECT_THAT(block.stdout_text, AllOf(HasSubstr("revoked " + web_serial), HasSubstr("CRL number 3")));
  ASSERT_EQ(Meshid("identity unblock " + web + " " + where_).exit_code, 0);
  Result only = Meshid("certs list --revoked --json " + where_);
  ASSERT_EQ(only.exit_code, 0) << only.stderr_text;
  auto only_lines = Lines(only.stdout_text);
  ASSERT_THAT(only_lines, SizeIs(3));
  EXPECT_EQ(nlohmann::json::parse(only_lines[2])["revocation"]["reason"], "privilegeWithdrawn");
  EXPECT_THAT(Lines(Meshid("certs list --revoked --json --spiffe-id " + db + " " + where_).stdout_text), SizeIs(1));
  Result only_text = Meshid("certs list --revoked " + where_);
  EXPECT_THAT(Lines(only_text.stdout_text), SizeIs(4));
}

TEST_P(StoreCliTest, BadArgumentsAreOneLineErrors) {
  struct Case {
    std::string args;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {"entry create --spiffe-id not-a-spiffe-id", "spiffe_id"},
           {"entry create --spiffe-id spiffe://cluster.local/ns/a/sa/b --allow password", "allowed_auth[0]"},
           {"entry create --spiffe-id spiffe://cluster.local/ns/a/sa/b --max-ttl soon", "--max-ttl"},
           {"entry create --spiffe-id spiffe://cluster.local/ns/a/sa/b --dns-name 'bad name'", "dns_names[0]"},
           {"identity block spiffe://cluster.local/ns/a/sa/b/../c", "identity block"},
           {"entry create --spiffe-id spiffe://cluster.local/ns/a/sa/b --parent spiffe://cluster.local/agent/n "
            "--selector unix:uid:1 --allow '*'",
            "--allow: an entry with --parent takes no --allow"},
           {"entry create --spiffe-id spiffe://cluster.local/ns/a/sa/b --parent spiffe://cluster.local/agent/n",
            "--selector: an entry with --parent needs at least one"},
           {"entry create --spiffe-id spiffe://cluster.local/ns/a/sa/b --selector unix:uid:1",
            "--selector: only an entry with --parent has selectors"},
           {"entry create --spiffe-id spiffe://cluster.local/ns/a/sa/b --parent spiffe://cluster.local/agent/n "
            "--selector unix:gid:1 --selector unix:uid:01",
            "--selector: selectors[1]: selector \"unix:uid:01\": uid must be a decimal number from 0 to 4294967294 "
            "without leading zeros"},
           {"entry create --spiffe-id spiffe://cluster.local/ns/a/sa/b --parent spiffe://cluster.local/agent/n "
            "--selector k8s:ns:default",
            "--selector: selectors[0]: selector \"k8s:ns:default\": unknown type \"k8s\"; accepted: unix:uid:<N>"},
           {"entry create --spiffe-id spiffe://cluster.local/ns/a/sa/b --parent spiffe://cluster.local/agent/n "
            "--selector unix:path:bin/envoy",
            "path must be absolute"},
           {"entry create --spiffe-id spiffe://cluster.local/ns/a/sa/b --parent node-n --selector unix:uid:1",
            "parent_id: SPIFFE ID must start with"},
           {"entry create --spiffe-id spiffe://cluster.local/ns/a/sa/b --parent spiffe://cluster.local/ns/a/sa/b "
            "--selector unix:uid:1",
            "parent_id: must differ from spiffe_id"},
           {"entry create --spiffe-id spiffe://cluster.local/ns/a/sa/b --trust-domain Cluster.local", "--trust-domain"},
           {"entry list --parent node-n", "--parent: \"node-n\""},
           {"entry delete --spiffe-id spiffe://cluster.local/ns/a/sa/b --parent node-n", "--parent: \"node-n\""},
           {"certs list --serial xyz", "--serial"},
           {"certs list --spiffe-id spiffe://", "--spiffe-id"},
       }) {
    Result r = Meshid(c.args + " " + where_);
    EXPECT_EQ(r.exit_code, 2) << c.args;
    EXPECT_THAT(Lines(r.stderr_text), ElementsAre(AllOf(StartsWith("meshid: "), HasSubstr(c.message)))) << c.args;
  }
}

TEST(StoreCliErrorsTest, MalformedDatastoreUrl) {
  Result r = Meshid("certs list --datastore 'postgresql://meshid:topsecret@db.example.com:99999/meshid'");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(Lines(r.stderr_text),
              ElementsAre(AllOf(HasSubstr("datastore URL"), HasSubstr("port"), Not(HasSubstr("topsecret")))));
  r = Meshid("entry list --datastore mysql://x@y/z");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(Lines(r.stderr_text), ElementsAre(HasSubstr("unsupported scheme 'mysql'")));
}

TEST(StoreCliErrorsTest, UnreachablePostgres) {
  // Port 1 on loopback: nothing listens there.
  Result r = Meshid("identity list-blocked --datastore postgresql://meshid:topsecret@127.0.0.1:1/meshid");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(Lines(r.stderr_text),
              ElementsAre(AllOf(HasSubstr("cannot connect"), HasSubstr("127.0.0.1:1"), Not(HasSubstr("topsecret")))));
}

TEST(StoreCliErrorsTest, WrongPostgresPassword) {
  auto admin = testing::PostgresAdminUrl();
  MESHID_REQUIRE_DEPENDENCY(admin.has_value(), testing::kPostgresDependency);
  auto parsed = sql::ParseStoreUrl(*admin);
  ASSERT_OK(parsed.status());
  Result r = Meshid(absl::StrCat("certs list --datastore postgresql://", parsed->user, ":not-the-password@",
                                 parsed->host, ":", parsed->port, "/", parsed->database));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(Lines(r.stderr_text),
              ElementsAre(AllOf(HasSubstr("credentials refused"), Not(HasSubstr("not-the-password")))));
}

TEST(StoreCliErrorsTest, ReadOnlySqliteFile) {
  TempDir dir;
  ASSERT_OK(OpenStore("sqlite://" + dir.path() + "/meshid.db", SystemClock::Instance(), MakeNullLogger()).status());
  ASSERT_EQ(chmod((dir.path() + "/meshid.db").c_str(), 0444), 0);
  ASSERT_EQ(chmod(dir.path().c_str(), 0555), 0);
  // Root writes read-only files anyway; run the binary as `nobody` then.
  Result r = Meshid("entry list --data-dir " + dir.path(), geteuid() == 0 ? "65534" : "");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(Lines(r.stderr_text), ElementsAre(AllOf(HasSubstr("read-only"), HasSubstr(dir.path() + "/meshid.db"))));
}

TEST(StoreCliErrorsTest, ReadingCommandsDoNotCreateADatabase) {
  TempDir dir;
  Result r = Meshid("certs list --data-dir " + dir.path());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(Lines(r.stderr_text), ElementsAre(HasSubstr("no database")));
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/meshid.db"));
  // Writing commands create the data directory and the database.
  Result w = Meshid("identity block spiffe://cluster.local/ns/a/sa/b --data-dir " + dir.path() + "/new");
  EXPECT_EQ(w.exit_code, 0) << w.stderr_text;
  EXPECT_TRUE(std::filesystem::exists(dir.path() + "/new/meshid.db"));
}

}  // namespace
}  // namespace meshid
