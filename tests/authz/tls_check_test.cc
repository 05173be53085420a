// `meshid authn tls-check`: golden tables (istioctl 1.5 vocabulary and layout), the
// EvaluateTLSState decision table, filtering and the JSON form.
// Regenerate goldens after an intended change with MESHID_UPDATE_GOLDENS=1.
#include "authz/tls_check.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "tests/authz/policy_test_util.h"

namespace meshid::authz {
namespace {

std::string TestData(const std::string& name) {
  return std::string(MESHID_SOURCE_DIR) + "/tests/authz/testdata/tls_check/" + name;
}

std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void ExpectGolden(const std::string& actual, const std::string& golden) {
  if (std::getenv("MESHID_UPDATE_GOLDENS")) {
    std::ofstream(TestData(golden)) << actual;
    return;
  }
  EXPECT_EQ(actual, Read(TestData(golden))) << "golden " << golden << " differs; actual:\n" << actual;
}

PolicySet Load(const std::string& file) {
  auto set = testing::Parse(Read(TestData(file)));
  EXPECT_TRUE(set.ok()) << set.status();
  return set.ok() ? std::move(*set) : PolicySet{};
}

TEST(TlsCheckGolden, Mixed) {
  auto set = Load("mixed.yaml");
  ExpectGolden(FormatTlsCheckTable(ComputeTlsCheck(set, {})), "mixed.golden");
}

TEST(TlsCheckGolden, MixedAutoMtls) {
  auto set = Load("mixed.yaml");
  TlsCheckOptions o;
  o.auto_mtls = true;
  ExpectGolden(FormatTlsCheckTable(ComputeTlsCheck(set, o)), "mixed_auto_mtls.golden");
}

TEST(TlsCheckGolden, MixedJson) {
  auto set = Load("mixed.yaml");
  auto rows = FilterTlsCheck(ComputeTlsCheck(set, {}), "reviews.default.svc.cluster.local");
  ASSERT_TRUE(rows.ok());
  ExpectGolden(FormatTlsCheckJson(*rows), "mixed_reviews.json.golden");
}

TEST(TlsCheckGolden, PeerAuthentication) {
  auto set = Load("peer_authentication.yaml");
  ExpectGolden(FormatTlsCheckTable(ComputeTlsCheck(set, {})), "peer_authentication.golden");
}

TEST(TlsCheckGolden, NoPoliciesAtAll) {
  auto set = testing::Parse(
      "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: ns}\nspec:\n  ports: [{port: 80}]\n");
  ASSERT_TRUE(set.ok());
  EXPECT_EQ(FormatTlsCheckTable(ComputeTlsCheck(*set, {})),
            "HOST:PORT                     STATUS     SERVER      CLIENT     AUTHN POLICY     DESTINATION RULE\n"
            "a.ns.svc.cluster.local:80     OK         DISABLE     None       None             None\n");
}

TEST(TlsCheck, Istio15EvaluateTlsStateTable) {
  struct Row {
    PeerMode server;
    ClientTlsMode client;
    const char* off;
    const char* on;  // with auto mTLS
  };
  const Row rows[] = {
      {PeerMode::kDisable, ClientTlsMode::kUnset, "OK", "AUTO"},
      {PeerMode::kDisable, ClientTlsMode::kDisable, "OK", "OK"},
      {PeerMode::kDisable, ClientTlsMode::kSimple, "CONFLICT", "CONFLICT"},
      {PeerMode::kDisable, ClientTlsMode::kMutual, "CONFLICT", "CONFLICT"},
      {PeerMode::kDisable, ClientTlsMode::kIstioMutual, "CONFLICT", "CONFLICT"},
      {PeerMode::kPermissive, ClientTlsMode::kUnset, "OK", "AUTO"},
      {PeerMode::kPermissive, ClientTlsMode::kDisable, "OK", "OK"},
      {PeerMode::kPermissive, ClientTlsMode::kSimple, "CONFLICT", "CONFLICT"},
      {PeerMode::kPermissive, ClientTlsMode::kMutual, "CONFLICT", "CONFLICT"},
      {PeerMode::kPermissive, ClientTlsMode::kIstioMutual, "OK", "OK"},
      {PeerMode::kStrict, ClientTlsMode::kUnset, "OK", "AUTO"},
      {PeerMode::kStrict, ClientTlsMode::kDisable, "CONFLICT", "CONFLICT"},
      {PeerMode::kStrict, ClientTlsMode::kSimple, "CONFLICT", "CONFLICT"},
      {PeerMode::kStrict, ClientTlsMode::kMutual, "CONFLICT", "CONFLICT"},
      {PeerMode::kStrict, ClientTlsMode::kIstioMutual, "OK", "OK"},
  };
  for (const auto& r : rows) {
    SCOPED_TRACE(absl::StrCat(PeerModeName(r.server), " / ", ClientTlsModeName(r.client)));
    EXPECT_EQ(EvaluateTlsState(r.server, r.client, false), r.off);
    EXPECT_EQ(EvaluateTlsState(r.server, r.client, true), r.on);
  }
}

TEST(TlsCheck, Filter) {
  auto set = Load("mixed.yaml");
  auto rows = ComputeTlsCheck(set, {});
  auto host = FilterTlsCheck(rows, "reviews.default.svc.cluster.local");
  ASSERT_TRUE(host.ok());
  EXPECT_EQ(host->size(), 6u) << "both ports and both subsets";
  auto host_port = FilterTlsCheck(rows, "reviews.default.svc.cluster.local:9090");
  ASSERT_TRUE(host_port.ok());
  EXPECT_EQ(host_port->size(), 3u);
  auto subset = FilterTlsCheck(rows, "reviews.default.svc.cluster.local|v2:9090");
  ASSERT_TRUE(subset.ok());
  ASSERT_EQ(subset->size(), 1u);
  EXPECT_EQ((*subset)[0].status, "CONFLICT");
  auto none = FilterTlsCheck(rows, "nothing.here");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  EXPECT_EQ(FormatTlsCheckTable(*none),
            "HOST:PORT     STATUS     SERVER     CLIENT     AUTHN POLICY     DESTINATION RULE\n");
  EXPECT_FALSE(FilterTlsCheck(rows, "reviews:http").ok());
}

}  // namespace
}  // namespace meshid::authz
