// The policy-version and policy-status part of the store contract, on both backends.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "sql/store.h"
#include "tests/support/databases.h"
#include "tests/support/dependencies.h"
#include "tests/support/status_matchers.h"

namespace meshid {
namespace {

using ::meshid::testing::Backend;
using ::meshid::testing::StatusIs;
using ::meshid::testing::TestDatabase;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

const absl::Time kT0 = absl::FromUnixSeconds(1'800'000'000);

StoredPolicyDocument Doc(const std::string& kind, const std::string& ns, const std::string& name,
                         const std::string& body = "a") {
  return StoredPolicyDocument{
      kind, ns, name,
      absl::StrCat("apiVersion: v1\nkind: ", kind, "\nmetadata: {name: ", name, "}\nspec: ", body, "\n"),
      absl::StrCat("policies/", name, ".yaml:1")};
}

PolicyVersionInfo Info(const std::string& description, int64_t micros = 0) {
  PolicyVersionInfo info;
  info.created_at = kT0 + absl::Microseconds(micros);
  info.created_by = "alice@laptop";
  info.description = description;
  info.digest = "ab12";
  return info;
}

PolicyStatusRow Row(const std::string& agent, const std::string& proxy, int64_t applied) {
  PolicyStatusRow r;
  r.agent_id = agent;
  r.proxy_id = proxy;
  r.reporter = "spiffe://cluster.local/ns/istio-system/sa/agent";
  r.service = proxy.empty() ? "" : "hello";
  r.namespace_ = proxy.empty() ? "" : "demo";
  r.applied_version = applied;
  r.rejected_version = applied + 1;
  r.last_error = "jwks: file:///nope: not found ✗";
  r.connected = !proxy.empty();
  r.changed_at = kT0 + absl::Microseconds(17);
  r.reported_at = kT0 + absl::Seconds(1);
  return r;
}

class PolicyStoreTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    db_ = TestDatabase::Create(GetParam());
    MESHID_REQUIRE_DEPENDENCY(db_ != nullptr, testing::kPostgresDependency);
    store_ = Open();
    ASSERT_NE(store_, nullptr);
  }
  std::unique_ptr<Store> Open() {
    auto store = OpenStore(db_->url(), SystemClock::Instance(), MakeNullLogger());
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }
  std::vector<StoredPolicyDocument> Docs(int64_t version) {
    auto v = store_->GetPolicyVersion(version);
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? v->documents : std::vector<StoredPolicyDocument>{};
  }

  std::unique_ptr<TestDatabase> db_;
  std::unique_ptr<Store> store_;
};

std::string ParamName(const ::testing::TestParamInfo<Backend>& info) { return testing::BackendName(info.param); }
INSTANTIATE_TEST_SUITE_P(Backends, PolicyStoreTest, ::testing::Values(Backend::kSqlite, Backend::kPostgres), ParamName);

TEST_P(PolicyStoreTest, EmptyStoreHasVersionZeroAndNothingElse) {
  EXPECT_EQ(*store_->PolicyHeadVersion(), 0);
  EXPECT_THAT(store_->GetPolicyVersion(1), StatusIs(absl::StatusCode::kNotFound, HasSubstr("no policy version 1")));
  EXPECT_THAT(*store_->ListPolicyVersions(0), IsEmpty());
  EXPECT_THAT(*store_->ListPolicyStatus(), IsEmpty());
}

TEST_P(PolicyStoreTest, EveryVersionReadsBackAsTheWholeSetItWasCommittedWith) {
  std::vector<StoredPolicyDocument> v1 = {Doc("AuthorizationPolicy", "demo", "allow-a"),
                                          Doc("AuthorizationPolicy", "demo", "deny-b"),
                                          Doc("PeerAuthentication", "istio-system", "default")};
  ASSERT_EQ(*store_->CommitPolicyVersion(0, Info("3 created"), v1), 1);
  // v2: one changed, one deleted, one added, one unchanged.
  std::vector<StoredPolicyDocument> v2 = {Doc("AuthorizationPolicy", "demo", "allow-a", "changed"),
                                          Doc("MeshPolicy", "", "default"),
                                          Doc("PeerAuthentication", "istio-system", "default")};
  ASSERT_EQ(*store_->CommitPolicyVersion(1, Info("1 created, 1 changed, 1 deleted", 1), v2), 2);
  // v3: nothing at all (everything deleted), then v4 brings one back.
  ASSERT_EQ(*store_->CommitPolicyVersion(2, Info("3 deleted", 2), {}), 3);
  ASSERT_EQ(*store_->CommitPolicyVersion(3, Info("1 created", 3), {v1[1]}), 4);

  EXPECT_EQ(*store_->PolicyHeadVersion(), 4);
  EXPECT_EQ(Docs(1), v1);
  EXPECT_EQ(Docs(2), v2);
  EXPECT_THAT(Docs(3), IsEmpty());
  EXPECT_THAT(Docs(4), ElementsAre(v1[1]));

  auto two = *store_->GetPolicyVersion(2);
  EXPECT_EQ(two.info.version, 2);
  EXPECT_EQ(two.info.created_at, kT0 + absl::Microseconds(1));
  EXPECT_EQ(two.info.created_by, "alice@laptop");
  EXPECT_EQ(two.info.description, "1 created, 1 changed, 1 deleted");
  EXPECT_EQ(two.info.digest, "ab12");
  EXPECT_EQ(two.info.document_count, 3);

  auto versions = *store_->ListPolicyVersions(2);
  ASSERT_EQ(versions.size(), 2u);
  EXPECT_EQ(versions[0].version, 4);
  EXPECT_EQ(versions[1].version, 3);
  EXPECT_EQ(store_->ListPolicyVersions(0)->size(), 4u);

  // Durable: another connection (another process in real life) reads the same.
  auto reopened = Open();
  EXPECT_EQ(*reopened->PolicyHeadVersion(), 4);
  EXPECT_EQ(reopened->GetPolicyVersion(2)->documents, v2);
}

TEST_P(PolicyStoreTest, DocumentsComeBackInByteOrderWhateverTheDatabaseCollation) {
  std::vector<StoredPolicyDocument> docs = {Doc("Z", "ns", "b"), Doc("A", "ns", "a"), Doc("Z", "Ns", "b"),
                                            Doc("Z", "ns", "B"), Doc("a", "ns", "a")};
  ASSERT_OK(store_->CommitPolicyVersion(0, Info("x"), docs).status());
  auto got = Docs(1);
  ASSERT_EQ(got.size(), 5u);
  EXPECT_EQ(got[0].kind, "A");
  EXPECT_EQ(got[1].namespace_, "Ns");
  EXPECT_EQ(got[2].name, "B");
  EXPECT_EQ(got[3].name, "b");
  EXPECT_EQ(got[4].kind, "a");
}

TEST_P(PolicyStoreTest, ACommitOnAStaleBaseIsAbortedAndWritesNothing) {
  ASSERT_OK(store_->CommitPolicyVersion(0, Info("first"), {Doc("K", "ns", "one")}).status());
  EXPECT_THAT(store_->CommitPolicyVersion(0, Info("late"), {Doc("K", "ns", "two")}),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("policy version 1 was committed by someone else")));
  EXPECT_THAT(store_->CommitPolicyVersion(5, Info("future"), {Doc("K", "ns", "two")}),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("based on version 5")));
  EXPECT_EQ(*store_->PolicyHeadVersion(), 1);
  EXPECT_THAT(Docs(1), ElementsAre(Doc("K", "ns", "one")));
}

TEST_P(PolicyStoreTest, BadDocumentsAreRefusedNamingTheFieldAndWriteNothing) {
  EXPECT_THAT(store_->CommitPolicyVersion(0, Info("x"), {Doc("K", "ns", "a"), Doc("K", "ns", "a", "other")}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("documents[1]: K ns/a is listed twice")));
  auto no_name = Doc("K", "ns", "a");
  no_name.name.clear();
  EXPECT_THAT(store_->CommitPolicyVersion(0, Info("x"), {no_name}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("documents[0].name: must not be empty")));
  auto bad_utf8 = Doc("K", "ns", "a");
  bad_utf8.yaml = "spec: \xC3\x28";
  EXPECT_THAT(store_->CommitPolicyVersion(0, Info("x"), {bad_utf8}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("documents[0].yaml: not valid UTF-8")));
  auto nul = Doc("K", "ns", "a");
  nul.yaml.push_back('\0');
  EXPECT_THAT(store_->CommitPolicyVersion(0, Info("x"), {nul}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("NUL")));
  EXPECT_THAT(store_->CommitPolicyVersion(-1, Info("x"), {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("base_version")));
  EXPECT_EQ(*store_->PolicyHeadVersion(), 0);
}

TEST_P(PolicyStoreTest, ConcurrentCommittersFromSeveralConnectionsNeverLoseOrShareAVersion) {
  constexpr int kWriters = 4;
  constexpr int kCommitsEach = 5;
  std::atomic<int> aborted{0};
  std::vector<std::thread> threads;
  std::vector<std::vector<int64_t>> won(kWriters);
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      auto store = Open();  // its own connections, as another server or `meshid apply` would have
      for (int i = 0; i < kCommitsEach;) {
        int64_t head = *store->PolicyHeadVersion();
        auto version = store->CommitPolicyVersion(head, Info(absl::StrCat(w, "/", i)),
                                                  {Doc("K", "ns", absl::StrCat("w", w), absl::StrCat(i))});
        if (version.ok()) {
          won[w].push_back(*version);
          ++i;
        } else {
          ASSERT_TRUE(absl::IsAborted(version.status())) << version.status();
          ++aborted;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(*store_->PolicyHeadVersion(), kWriters * kCommitsEach);
  std::set<int64_t> all;
  for (int w = 0; w < kWriters; ++w) {
    for (size_t i = 0; i < won[w].size(); ++i) {
      EXPECT_TRUE(all.insert(won[w][i]).second) << "version " << won[w][i] << " committed twice";
      // The version holds exactly what its committer wrote: its own document at step i.
      auto docs = Docs(won[w][i]);
      ASSERT_EQ(docs.size(), 1u);
      EXPECT_EQ(docs[0], Doc("K", "ns", absl::StrCat("w", w), absl::StrCat(i)));
    }
  }
  EXPECT_EQ(all.size(), static_cast<size_t>(kWriters * kCommitsEach));
}

TEST_P(PolicyStoreTest, AStatusReportReplacesOnlyThatAgentsRows) {
  ASSERT_OK(store_->ReplacePolicyStatus(
      "node-a", {Row("node-a", "", 3), Row("node-a", "hello-1", 2), Row("node-a", "hello-2", 3)}));
  ASSERT_OK(store_->ReplacePolicyStatus("node-b", {Row("node-b", "web-1", 3)}));
  auto rows = *store_->ListPolicyStatus();
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[0], Row("node-a", "", 3));
  EXPECT_EQ(rows[1], Row("node-a", "hello-1", 2));
  EXPECT_EQ(rows[3], Row("node-b", "web-1", 3));

  ASSERT_OK(store_->ReplacePolicyStatus("node-a", {Row("node-a", "hello-2", 4)}));
  rows = *store_->ListPolicyStatus();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0], Row("node-a", "hello-2", 4));
  EXPECT_EQ(rows[1], Row("node-b", "web-1", 3));

  ASSERT_OK(store_->ReplacePolicyStatus("node-b", {}));
  EXPECT_EQ(store_->ListPolicyStatus()->size(), 1u);
}

TEST_P(PolicyStoreTest, BadStatusRowsAreRefused) {
  EXPECT_THAT(store_->ReplacePolicyStatus("node-a", {Row("node-b", "x", 1)}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rows[0].agent_id")));
  EXPECT_THAT(store_->ReplacePolicyStatus("node-a", {Row("node-a", "x", 1), Row("node-a", "x", 2)}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("listed twice")));
  auto negative = Row("node-a", "x", -5);
  EXPECT_THAT(store_->ReplacePolicyStatus("node-a", {negative}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("must not be negative")));
  EXPECT_THAT(store_->ReplacePolicyStatus("", {}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("agent_id")));
  EXPECT_THAT(*store_->ListPolicyStatus(), IsEmpty());
}

TEST_P(PolicyStoreTest, TrustBundlesRoundTrip) {
  const std::string kRootA = "sha256:" + std::string(64, 'a');
  const std::string kRootB = "sha256:" + std::string(64, '0');
  PolicyStatusRow agent = Row("node-a", "", 3);
  agent.trust_bundle = kRootA;
  PolicyStatusRow both = Row("node-a", "hello-1", 3);
  both.trust_bundle = kRootB + "," + kRootA;
  PolicyStatusRow unknown = Row("node-a", "hello-2", 3);  // trust_bundle "": not known
  ASSERT_OK(store_->ReplacePolicyStatus("node-a", {agent, both, unknown}));
  EXPECT_THAT(*store_->ListPolicyStatus(), ElementsAre(agent, both, unknown));

  // A long bundle (900 roots, just under 64 KiB) is still one row's text.
  std::string many;
  for (int i = 0; i < 900; ++i) absl::StrAppend(&many, i == 0 ? "" : ",", "sha256:", std::string(64, 'c'));
  ASSERT_LE(many.size(), 64u << 10);
  both.trust_bundle = many;
  ASSERT_OK(store_->ReplacePolicyStatus("node-a", {both}));
  EXPECT_THAT(*store_->ListPolicyStatus(), ElementsAre(both));
}

TEST_P(PolicyStoreTest, MalformedTrustBundlesAreRefused) {
  const std::string kRootA = "sha256:" + std::string(64, 'a');
  std::string too_long;
  while (too_long.size() <= (64u << 10)) absl::StrAppend(&too_long, too_long.empty() ? "" : ",", kRootA);
  for (const std::string& bad :
       {std::string(64, 'a'), kRootA + ",", "," + kRootA, "sha256:" + std::string(64, 'A'),
        "sha256:" + std::string(63, 'a'), "sha1:" + std::string(40, 'a'), kRootA + " ," + kRootA, too_long}) {
    SCOPED_TRACE(bad.substr(0, 80));
    PolicyStatusRow row = Row("node-a", "hello-1", 3);
    row.trust_bundle = bad;
    EXPECT_THAT(store_->ReplacePolicyStatus("node-a", {Row("node-a", "", 3), row}),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rows[1].trust_bundle: must be")));
  }
  EXPECT_THAT(*store_->ListPolicyStatus(), IsEmpty()) << "nothing was written";
}

}  // namespace
}  // namespace meshid
