// `meshid apply` semantics: what a version contains (upsert, prune, delete), validation of the
// whole resulting set with file:line:field, the stored form, and that a stored set decides
// exactly like the files it came from.
#include "policy/apply.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "authz/request_json.h"
#include "common/clock.h"
#include "rbac/yaml_source.h"
#include "sql/store.h"
#include "tests/support/databases.h"
#include "tests/support/fake_clock.h"
#include "tests/support/temp_dir.h"

namespace meshid::policy {
namespace {

using ::testing::AllOf;
using testing::Backend;
using ::testing::ElementsAre;
using testing::FakeClock;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using testing::TempDir;
using testing::TestDatabase;

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

const char kAllowA[] = R"(apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata:
  name: allow-a
  namespace: demo
spec:
  selector: {matchLabels: {app: hello-b}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/demo/sa/hello-a"]}}]
)";

const char kStrict[] = R"(apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
)";

std::vector<rbac::SourceDocument> Read(const std::vector<std::string>& paths, rbac::Diagnostics& diag) {
  return rbac::ReadDocuments(paths, rbac::ReadOptions{}, diag);
}

absl::StatusOr<ApplyPlan> Plan(const std::vector<std::string>& paths, const std::vector<StoredPolicyDocument>& base,
                               ApplyMode mode, rbac::Diagnostics& diag, absl::Time now = kNow) {
  auto docs = Read(paths, diag);
  return PlanPolicyApply(docs, base, mode, authz::LoadOptions{}, now, diag);
}

std::vector<std::string> Keys(const std::vector<StoredPolicyDocument>& docs) {
  std::vector<std::string> out;
  for (const auto& d : docs) out.push_back(absl::StrCat(d.kind, " ", d.namespace_, "/", d.name));
  return out;
}

TEST(PlanPolicyApply, ObjectsAreStoredCanonicallyWithNamespaceSourceAndCreationTime) {
  TempDir dir;
  std::string file = dir.Write("a.yaml", absl::StrCat(kStrict, "---\n", R"(apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: no-namespace, labels: {team: "true"}}
spec: {action: DENY, rules: [{to: [{operation: {paths: ["*admin*"]}}]}]}
---
apiVersion: authentication.istio.io/v1alpha1
kind: MeshPolicy
metadata: {name: default}
spec: {peers: [{mtls: {}}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: hello}
spec: {replicas: 1}
)"));
  rbac::Diagnostics diag;
  auto plan = Plan({file}, {}, ApplyMode::kUpsert, diag);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->created, 3);
  EXPECT_THAT(Keys(plan->documents), ElementsAre("AuthorizationPolicy default/no-namespace", "MeshPolicy /default",
                                                 "PeerAuthentication istio-system/default"));
  const auto& ap = plan->documents[0];
  EXPECT_THAT(ap.yaml, HasSubstr("namespace: default"));
  EXPECT_THAT(ap.yaml, HasSubstr("creationTimestamp: \"2027-01-15T08:00:00.000001Z\""));
  EXPECT_THAT(ap.yaml, HasSubstr("team: \"true\""));
  EXPECT_EQ(ap.source, file + ":6");
  EXPECT_THAT(plan->documents[1].yaml, Not(HasSubstr("namespace")));
  EXPECT_THAT(plan->documents[2].yaml, HasSubstr("creationTimestamp: \"2027-01-15T08:00:00Z\""));
  // The Deployment is not a policy kind: a warning, not stored.
  ASSERT_EQ(diag.warnings().size(), 1u);
  EXPECT_THAT(diag.warnings()[0].ToString(), HasSubstr("kind Deployment (apps/v1) is not a policy kind; not stored"));

  // The stored form reads back as the same objects.
  rbac::Diagnostics reread;
  auto set = ParseStoredDocuments(plan->documents, authz::LoadOptions{}, reread);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->rbac.authorization_policies.size(), 1u);
  EXPECT_EQ(set->authn.size(), 1u);
  EXPECT_EQ(set->peer_authn.size(), 1u);
}

TEST(PlanPolicyApply, UpsertReplacesByKindNamespaceNameAndKeepsTheRest) {
  TempDir dir;
  rbac::Diagnostics diag;
  auto v1 = Plan({dir.Write("a.yaml", kAllowA), dir.Write("strict.yaml", kStrict)}, {}, ApplyMode::kUpsert, diag);
  ASSERT_TRUE(v1.ok()) << v1.status();

  // Re-applying the same files changes nothing (and would create no version).
  auto same = Plan({dir.path()}, v1->documents, ApplyMode::kUpsert, diag, kNow + absl::Hours(1));
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_TRUE(same->no_change());
  EXPECT_EQ(same->unchanged, 2);
  EXPECT_EQ(same->documents, v1->documents);

  // One changed object, applied alone: the other stays, the changed one keeps its creation time.
  std::string changed = std::string(kAllowA) + "  - from: [{source: {namespaces: [\"ops\"]}}]\n";
  TempDir other;
  auto v2 =
      Plan({other.Write("changed.yaml", changed)}, v1->documents, ApplyMode::kUpsert, diag, kNow + absl::Hours(2));
  ASSERT_TRUE(v2.ok()) << v2.status();
  EXPECT_EQ(v2->changed, 1);
  EXPECT_EQ(v2->unchanged, 1);
  EXPECT_EQ(v2->deleted, 0);
  EXPECT_THAT(v2->changes, ElementsAre("AuthorizationPolicy demo/allow-a changed"));
  ASSERT_EQ(v2->documents.size(), 2u);
  EXPECT_THAT(v2->documents[0].yaml, AllOf(HasSubstr("ops"), HasSubstr("2027-01-15T08:00:00Z")));
  EXPECT_THAT(v2->documents[0].source, HasSubstr("changed.yaml:1"));
  EXPECT_EQ(v2->documents[1], v1->documents[1]);
}

TEST(PlanPolicyApply, PruneMakesTheFilesTheWholeSetAndDeleteRemovesWhatTheyName) {
  TempDir dir;
  rbac::Diagnostics diag;
  std::string a = dir.Write("a.yaml", kAllowA);
  std::string strict = dir.Write("strict.yaml", kStrict);
  auto v1 = Plan({a, strict}, {}, ApplyMode::kUpsert, diag);
  ASSERT_TRUE(v1.ok()) << v1.status();

  auto pruned = Plan({strict}, v1->documents, ApplyMode::kPrune, diag);
  ASSERT_TRUE(pruned.ok()) << pruned.status();
  EXPECT_EQ(pruned->deleted, 1);
  EXPECT_THAT(pruned->changes, ElementsAre("AuthorizationPolicy demo/allow-a deleted"));
  EXPECT_THAT(Keys(pruned->documents), ElementsAre("PeerAuthentication istio-system/default"));

  auto deleted = Plan({a}, v1->documents, ApplyMode::kDelete, diag);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_THAT(Keys(deleted->documents), ElementsAre("PeerAuthentication istio-system/default"));

  rbac::Diagnostics missing;
  auto nothing = Plan({a}, deleted->documents, ApplyMode::kDelete, missing);
  EXPECT_EQ(nothing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(nothing.status().message(), HasSubstr(a + ":1: AuthorizationPolicy demo/allow-a: not found"));
}

TEST(PlanPolicyApply, BrokenDocumentsAreReportedWithFileLineAndFieldAndNothingIsPlanned) {
  TempDir dir;
  std::string bad = dir.Write("bad.yaml", R"(apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: typo, namespace: demo}
spec:
  rules:
  - to: [{operation: {method: ["GET"]}}]
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: default, namespace: demo}
spec: {mtls: {mode: SOMETIMES}}
)");
  rbac::Diagnostics diag;
  auto plan = Plan({bad}, {}, ApplyMode::kUpsert, diag);
  ASSERT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(
      plan.status().message(),
      HasSubstr(bad + ":6: AuthorizationPolicy demo/typo: spec.rules[0].to[0].operation.method: unknown field"));
  EXPECT_THAT(plan.status().message(), HasSubstr(bad + ":11: PeerAuthentication demo/default: spec.mtls.mode"));
  EXPECT_EQ(diag.error_count(), 2u);
}

TEST(PlanPolicyApply, TheMergedSetIsValidatedAsAWholeNamingStoredObjects) {
  TempDir dir;
  rbac::Diagnostics diag;
  auto v1 = Plan({dir.Write("strict.yaml", kStrict)}, {}, ApplyMode::kUpsert, diag);
  ASSERT_TRUE(v1.ok());
  // The same object twice in what is applied: both places are named.
  std::string twice = dir.Write("twice.yaml", absl::StrCat(kAllowA, "---\n", kAllowA));
  rbac::Diagnostics dup;
  auto plan = Plan({twice}, v1->documents, ApplyMode::kUpsert, dup);
  ASSERT_FALSE(plan.ok());
  EXPECT_THAT(plan.status().message(), HasSubstr("duplicate object (first defined at " + twice + ":1)"));

  // A stored object that no longer validates (written by another meshid) is named by its source.
  std::vector<StoredPolicyDocument> corrupt = v1->documents;
  corrupt[0].yaml =
      "apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata: {name: default, "
      "namespace: istio-system}\nspec: {mtls: {mode: NEVER}}\n";
  rbac::Diagnostics stored;
  auto merged = Plan({dir.Write("a.yaml", kAllowA)}, corrupt, ApplyMode::kUpsert, stored);
  ASSERT_FALSE(merged.ok());
  EXPECT_THAT(merged.status().message(),
              HasSubstr(corrupt[0].source + " (stored): PeerAuthentication istio-system/default: spec.mtls.mode"));
}

// Every example policy set decides every example request the same way after a trip through the
// stored form as when loaded from its files.
TEST(PlanPolicyApply, AStoredSetDecidesExactlyLikeItsFiles) {
  const std::string ex = std::string(MESHID_SOURCE_DIR) + "/examples/policy/";
  std::ifstream requests_file(ex + "requests.jsonl");
  std::stringstream requests_text;
  requests_text << requests_file.rdbuf();
  std::vector<authz::RequestInput> requests;
  for (absl::string_view line : absl::StrSplit(requests_text.str(), '\n', absl::SkipEmpty())) {
    auto r = authz::ParseRequestJson(line);
    ASSERT_TRUE(r.ok()) << line;
    requests.push_back(*r);
  }
  ASSERT_GE(requests.size(), 6u);
  for (const char* policy : {"v1alpha1-rbac.yaml", "v1beta1-authz.yaml", "authn.yaml"}) {
    std::vector<std::string> paths = {ex + "bookinfo-services.yaml", ex + policy};
    rbac::Diagnostics diag;
    auto direct = authz::LoadPolicySet(paths, authz::LoadOptions{}, diag);
    ASSERT_TRUE(direct.ok()) << direct.status();
    auto plan = Plan(paths, {}, ApplyMode::kUpsert, diag);
    ASSERT_TRUE(plan.ok()) << plan.status();
    auto stored = ParseStoredDocuments(plan->documents, authz::LoadOptions{}, diag);
    ASSERT_TRUE(stored.ok()) << stored.status();
    auto a = *authz::PolicyEngine::Create(std::move(*direct), SystemClock::Instance());
    auto b = *authz::PolicyEngine::Create(std::move(*stored), SystemClock::Instance());
    for (const auto& request : requests) {
      auto da = a->Check(request);
      auto db = b->Check(request);
      ASSERT_EQ(da.ok(), db.ok()) << policy;
      if (da.ok()) {
        EXPECT_EQ(DecisionToJson(*da), DecisionToJson(*db)) << policy;
      }
    }
  }
}

// ---- with a real store ----

TEST(ApplyPolicyFiles, CommitsAVersionOnlyWhenSomethingChangedAndNothingOnError) {
  auto db = TestDatabase::Create(Backend::kSqlite);
  auto store = OpenStore(db->url(), SystemClock::Instance(), MakeNullLogger());
  ASSERT_TRUE(store.ok()) << store.status();
  FakeClock clock(kNow);
  TempDir files;
  std::string a = files.Write("a.yaml", kAllowA);
  rbac::Diagnostics diag;
  auto r1 = ApplyPolicyFiles(**store, {a}, ApplyMode::kUpsert, authz::LoadOptions{}, clock, "alice@laptop", diag);
  ASSERT_TRUE(r1.ok()) << r1.status();
  EXPECT_EQ(r1->version, 1);
  auto again = ApplyPolicyFiles(**store, {a}, ApplyMode::kUpsert, authz::LoadOptions{}, clock, "alice@laptop", diag);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->version, 1);
  EXPECT_TRUE(again->plan.no_change());

  auto r2 = ApplyPolicyFiles(**store, {files.Write("s.yaml", kStrict)}, ApplyMode::kUpsert, authz::LoadOptions{}, clock,
                             "bob@ci", diag);
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(r2->version, 2);
  auto v2 = *(*store)->GetPolicyVersion(2);
  EXPECT_EQ(v2.documents.size(), 2u);
  EXPECT_EQ(v2.info.created_by, "bob@ci");
  EXPECT_THAT(v2.info.description, HasSubstr("1 created, 0 changed, 0 deleted, 1 unchanged"));
  EXPECT_EQ(v2.info.digest, PolicyDigest(v2.documents));

  rbac::Diagnostics bad;
  auto broken = ApplyPolicyFiles(**store, {files.Write("broken.yaml", "kind: [\n")}, ApplyMode::kUpsert,
                                 authz::LoadOptions{}, clock, "eve", bad);
  EXPECT_EQ(broken.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(broken.status().message(), HasSubstr("broken.yaml:"));
  EXPECT_EQ(*(*store)->PolicyHeadVersion(), 2);

  rbac::Diagnostics empty;
  auto none = ApplyPolicyFiles(**store, {files.Write("empty.yaml", "# nothing\n")}, ApplyMode::kUpsert,
                               authz::LoadOptions{}, clock, "eve", empty);
  EXPECT_THAT(none.status().message(), HasSubstr("no objects found"));
  EXPECT_EQ(*(*store)->PolicyHeadVersion(), 2);
}

}  // namespace
}  // namespace meshid::policy

namespace meshid::policy {
namespace {

// The fuzz corpus's valid seed really is a valid response whose snapshot compiles, so the
// fuzzer starts from the deep path (tests/fuzz/policy_stream_fuzzer.cc).
TEST(PolicyStreamFuzzCorpus, TheValidSeedDecodesAndCompiles) {
  std::ifstream in(std::string(MESHID_SOURCE_DIR) + "/tests/fuzz/corpus/policy_stream/receive_valid", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(bytes.size(), 1u);
  envoy::service::discovery::v3::DiscoveryResponse response;
  ASSERT_TRUE(response.ParseFromString(bytes.substr(1)));
  auto snapshot = DecodePolicyResponse(response);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  rbac::Diagnostics diag;
  auto set = ParseSnapshot(**snapshot, authz::LoadOptions{}, diag);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_TRUE(CompileCheck(std::move(*set), {}).ok());
}

}  // namespace
}  // namespace meshid::policy
