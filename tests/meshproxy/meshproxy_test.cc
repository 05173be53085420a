// Unit tests of the sidecar's pieces that need no network: listener modes and protocols from
// policy, upstream flags and Host routing, SDS secret checks, the file policy source.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "absl/synchronization/mutex.h"
#include "authz/policy_set.h"
#include "common/keys.h"
#include "common/x509.h"
#include "meshproxy/proxy_internal.h"
#include "meshproxy/tls.h"
#include "policy/file_source.h"
#include "tests/support/certs.h"
#include "tests/support/status_matchers.h"
#include "tests/support/temp_dir.h"

namespace meshid::meshproxy {
namespace {

using ::meshid::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::shared_ptr<const authz::PolicyEngine> Engine(const std::string& yaml) {
  rbac::Diagnostics diag;
  auto set = authz::ParsePolicySet(yaml, "test.yaml", authz::LoadOptions{}, diag);
  EXPECT_TRUE(set.ok()) << set.status();
  auto engine = authz::PolicyEngine::Create(std::move(*set), SystemClock::Instance());
  EXPECT_TRUE(engine.ok()) << engine.status();
  return *engine;
}

ProxyOptions Reviews(std::vector<uint32_t> app_ports) {
  ProxyOptions o;
  o.service = "reviews";
  o.namespace_ = "default";
  for (uint32_t p : app_ports)
    o.inbound.push_back({HostPort{"127.0.0.1", 0}, HostPort{"127.0.0.1", static_cast<uint16_t>(p)}});
  return o;
}

constexpr char kService[] = R"(
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports:
  - {name: http-web, port: 9080, targetPort: 8080}
  - {name: tcp-db, port: 9090, targetPort: 8090}
  - {name: grpc-api, port: 9091, targetPort: 8091}
  - {port: 9092, targetPort: 8092}
  - {name: http2, port: 9093, targetPort: 8093}
  - {name: HTTP, port: 9094, targetPort: 8094}
  - {name: something, port: 9095, targetPort: 8095}
---
)";

TEST(PortPolicies, ProtocolFollowsIstiosPortNaming) {
  auto engine = Engine(kService);
  auto ports = ComputePortPolicies(*engine, Reviews({8080, 8090, 8091, 8092, 8093, 8094, 8095, 7000}));
  std::vector<PortProtocol> protocols;
  for (const auto& p : ports) protocols.push_back(p.protocol);
  EXPECT_THAT(protocols,
              ElementsAre(PortProtocol::kHttp, PortProtocol::kTcp, PortProtocol::kTcp, PortProtocol::kDetect,
                          PortProtocol::kTcp, PortProtocol::kHttp, PortProtocol::kDetect, PortProtocol::kDetect));
  // Without a Service document every port is detected.
  auto none = ComputePortPolicies(*Engine(""), Reviews({8080}));
  EXPECT_EQ(none[0].protocol, PortProtocol::kDetect);
  EXPECT_EQ(none[0].mode, authz::PeerMode::kPermissive);  // no authentication policy: PERMISSIVE
}

TEST(PortPolicies, PeerAuthenticationComposesWithPortLevelOverrides) {
  auto engine = Engine(std::string(kService) + R"(
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: reviews, namespace: default}
spec:
  selector: {matchLabels: {app: reviews}}
  portLevelMtls:
    8090: {mode: DISABLE}
    8091: {mode: PERMISSIVE}
)");
  auto ports = ComputePortPolicies(*engine, Reviews({8080, 8090, 8091}));
  EXPECT_EQ(ports[0].mode, authz::PeerMode::kStrict);  // mesh-wide
  EXPECT_EQ(ports[1].mode, authz::PeerMode::kDisable);
  EXPECT_EQ(ports[2].mode, authz::PeerMode::kPermissive);
  // Another namespace's workload only sees the mesh-wide policy.
  ProxyOptions other = Reviews({8090});
  other.namespace_ = "other";
  EXPECT_EQ(ComputePortPolicies(*engine, other)[0].mode, authz::PeerMode::kStrict);
  // The selector needs the workload's labels: from the Service, or --label.
  ProxyOptions ratings = Reviews({8090});
  ratings.service = "ratings";
  EXPECT_EQ(ComputePortPolicies(*engine, ratings)[0].mode, authz::PeerMode::kStrict);
  ratings.labels["app"] = "reviews";
  EXPECT_EQ(ComputePortPolicies(*engine, ratings)[0].mode, authz::PeerMode::kDisable);
}

TEST(PortPolicies, AlphaPolicySelectsByServicePort_istio_1_5) {
  auto engine = Engine(std::string(kService) + R"(
apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata: {name: reviews-web, namespace: default}
spec:
  targets: [{name: reviews, ports: [{number: 9080}]}]
  peers: [{mtls: {}}]
---
apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata: {name: default, namespace: default}
spec:
  peers: [{mtls: {mode: PERMISSIVE}}]
)");
  auto ports = ComputePortPolicies(*engine, Reviews({8080, 8090}));
  EXPECT_EQ(ports[0].mode, authz::PeerMode::kStrict);      // the service port 9080 behind app port 8080
  EXPECT_EQ(ports[1].mode, authz::PeerMode::kPermissive);  // the namespace default
}

TEST(Upstreams, FlagsNamesAndIdentities) {
  auto u = ParseUpstreamFlag("reviews=127.0.0.1:9080", "default", "cluster.local");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->fqdn, "reviews.default.svc.cluster.local");
  EXPECT_EQ(ExpectedUpstreamIdentity(*u, "spiffe://example.org/ns/x/sa/y"),
            "spiffe://example.org/ns/default/sa/reviews");
  EXPECT_FALSE(u->tcp_listen.has_value());
  for (const char* host :
       {"reviews", "reviews:9080", "REVIEWS.default", "reviews.default.svc", "reviews.default.svc.cluster.local:80"}) {
    EXPECT_TRUE(HostMatchesUpstream(host, *u)) << host;
  }
  for (const char* host : {"reviews.other", "ratings", "reviews.default.svc.cluster", "127.0.0.1:9080"}) {
    EXPECT_FALSE(HostMatchesUpstream(host, *u)) << host;
  }

  auto explicit_id =
      ParseUpstreamFlag("db.data=10.0.0.1:5432,spiffe://cluster.local/ns/data/sa/postgres,listen=127.0.0.1:0",
                        "default", "cluster.local");
  ASSERT_TRUE(explicit_id.ok()) << explicit_id.status();
  EXPECT_EQ(explicit_id->fqdn, "db.data.svc.cluster.local");
  EXPECT_EQ(ExpectedUpstreamIdentity(*explicit_id, "spiffe://cluster.local/ns/x/sa/y"),
            "spiffe://cluster.local/ns/data/sa/postgres");
  ASSERT_TRUE(explicit_id->tcp_listen.has_value());
  auto fqdn = ParseUpstreamFlag("a.b.svc.cluster.local=127.0.0.1:1", "default", "cluster.local");
  ASSERT_TRUE(fqdn.ok());
  EXPECT_EQ(fqdn->namespace_, "b");

  for (const char* bad : {"reviews", "=127.0.0.1:1", "reviews=nope", "reviews=127.0.0.1:1,spiffe://UPPER/x",
                          "reviews=127.0.0.1:1,what", "a.b.c.d=127.0.0.1:1", "re_views=127.0.0.1:1"}) {
    auto r = ParseUpstreamFlag(bad, "default", "cluster.local");
    EXPECT_FALSE(r.ok()) << bad;
    EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << bad;
  }
}

// ---- SDS secrets ----

TEST(WorkloadCert, ChecksWhatSdsDelivers) {
  auto ca = testing::TestCa::Create();
  ASSERT_TRUE(ca.ok()) << ca.status();
  auto leaf = *ca->Leaf({"spiffe://cluster.local/ns/default/sa/reviews"});
  auto cert = ParseWorkloadCert(leaf.cert, leaf.key, "v1");
  ASSERT_TRUE(cert.ok()) << cert.status();
  EXPECT_EQ((*cert)->spiffe_id, "spiffe://cluster.local/ns/default/sa/reviews");
  EXPECT_EQ((*cert)->info[0].serial.size(), 32u);
  auto bundle = ParseTrustBundle(ca->cert_pem(), "", "r1");
  ASSERT_TRUE(bundle.ok()) << bundle.status();
  auto contexts = TlsContexts::Create(*cert, *bundle);
  ASSERT_TRUE(contexts.ok()) << contexts.status();
  EXPECT_NE((*contexts)->server(), nullptr);

  auto other = *ca->Leaf({"spiffe://cluster.local/ns/default/sa/other"});
  EXPECT_THAT(ParseWorkloadCert(leaf.cert, other.key, "v").status().message(), HasSubstr("does not match"));
  auto two = *ca->Leaf({"spiffe://cluster.local/ns/a/sa/b", "spiffe://cluster.local/ns/c/sa/d"});
  EXPECT_THAT(ParseWorkloadCert(two.cert, two.key, "v").status().message(), HasSubstr("2 URI SANs"));
  auto none = *ca->Leaf({});
  EXPECT_THAT(ParseWorkloadCert(none.cert, none.key, "v").status().message(), HasSubstr("0 URI SANs"));
  auto bad_id = *ca->Leaf({"https://example.com/x"});
  EXPECT_FALSE(ParseWorkloadCert(bad_id.cert, bad_id.key, "v").ok());
  EXPECT_FALSE(ParseWorkloadCert("garbage", leaf.key, "v").ok());
  EXPECT_FALSE(ParseWorkloadCert(leaf.cert, "garbage", "v").ok());
  EXPECT_FALSE(ParseTrustBundle("", "", "r").ok());
  EXPECT_FALSE(ParseTrustBundle("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "", "r").ok());
}

TEST(TrustBundle, CarriesTheCrlOfRootcaForTheHandshakeCheck) {
  auto ca = testing::TestCa::Create();
  ASSERT_TRUE(ca.ok()) << ca.status();
  auto revoked = *ca->Leaf({"spiffe://cluster.local/ns/default/sa/stolen"});
  auto kept = *ca->Leaf({"spiffe://cluster.local/ns/default/sa/web"});
  auto revoked_cert = CertFromPem(revoked.cert);
  auto kept_cert = CertFromPem(kept.cert);
  ASSERT_TRUE(revoked_cert.ok() && kept_cert.ok());
  auto crl = ca->Crl({revoked_cert->get()}, 4);
  ASSERT_TRUE(crl.ok()) << crl.status();
  auto bundle = ParseTrustBundle(ca->cert_pem(), CrlDerToPem(*crl), "r2");
  ASSERT_TRUE(bundle.ok()) << bundle.status();
  ASSERT_NE((*bundle)->revoked, nullptr);
  EXPECT_EQ((*bundle)->revoked->number(), 4);
  EXPECT_TRUE((*bundle)->revoked->IsRevoked(revoked_cert->get()));
  EXPECT_FALSE((*bundle)->revoked->IsRevoked(kept_cert->get()));
  EXPECT_EQ((*ParseTrustBundle(ca->cert_pem(), "", "r1"))->revoked, nullptr);

  EXPECT_THAT(ParseTrustBundle(ca->cert_pem(), "not a CRL", "r").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("crl: CRL: PEM: no BEGIN/END block found")));
  EXPECT_THAT(ParseTrustBundle(ca->cert_pem(), CrlDerToPem("garbage"), "r").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("crl: CRL: not a DER-encoded X.509 CRL")));
}

// ---- the file policy source ----

class FilePolicySourceTest : public ::testing::Test {
 protected:
  void SetUp() override { path_ = dir_.File("policy.yaml"); }
  void WritePolicy(const std::string& text) {
    const std::string tmp = path_ + ".tmp";
    std::ofstream(tmp) << text;
    std::filesystem::rename(tmp, path_);
  }
  MetricsRegistry metrics_;  // outlives the sources of the tests
  policy::PolicyWatcher::Options Options() {
    policy::PolicyWatcher::Options o;
    o.paths = {path_};
    o.interval = absl::Milliseconds(10);
    return o;
  }
  // Waits (bounded) until `n` snapshots have been offered.
  bool WaitForSnapshots(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return versions_.size() >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(30));
  }
  policy::PolicySource::OnSnapshot Recorder(absl::Status answer = absl::OkStatus()) {
    return [this, answer](const policy::PolicySource::Snapshot& s) {
      absl::MutexLock lock(&mu_);
      versions_.push_back(s.version);
      engines_.push_back(s.engine);
      return answer;
    };
  }
  std::vector<std::string> versions() {
    absl::MutexLock lock(&mu_);
    return versions_;
  }

  testing::TempDir dir_{"meshproxy-fps"};
  std::string path_;
  absl::Mutex mu_;
  std::vector<std::string> versions_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<const authz::PolicyEngine>> engines_ ABSL_GUARDED_BY(mu_);
};

constexpr char kAllowAll[] = R"(
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: allow, namespace: default}
spec: {rules: [{}]}
)";
constexpr char kBroken[] = R"(
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: allow, namespace: default}
spec: {rules: [{to: [{operation: {bogus: 1}}]}]}
)";

TEST_F(FilePolicySourceTest, DeliversChangesAndNeverABrokenFile) {
  WritePolicy(kAllowAll);
  policy::FilePolicySource source(Options(), SystemClock::Instance(), metrics_, MakeNullLogger());
  ASSERT_TRUE(source.Start(Recorder()).ok());
  EXPECT_THAT(versions(), ElementsAre("file-1"));  // synchronously, before Start returns
  WritePolicy(kBroken);
  // The broken file is never offered; the next good one is.
  WritePolicy(std::string(kAllowAll) + "---\n" + R"(
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: deny, namespace: default}
spec: {action: DENY, rules: [{to: [{operation: {paths: ["/x"]}}]}]}
)");
  ASSERT_TRUE(WaitForSnapshots(2));
  source.Stop();
  for (const auto& v : versions()) EXPECT_THAT(v, ::testing::StartsWith("file-"));
  absl::MutexLock lock(&mu_);
  EXPECT_EQ(engines_.back()->policies().rbac.authorization_policies.size(), 2u);
}

TEST_F(FilePolicySourceTest, ABrokenInitialFileFailsStart) {
  WritePolicy(kBroken);
  policy::FilePolicySource source(Options(), SystemClock::Instance(), metrics_, MakeNullLogger());
  absl::Status s = source.Start(Recorder());
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_TRUE(versions().empty());
}

TEST_F(FilePolicySourceTest, ARefusedSnapshotIsNotOfferedAgain) {
  WritePolicy(kAllowAll);
  policy::FilePolicySource source(Options(), SystemClock::Instance(), metrics_, MakeNullLogger());
  EXPECT_FALSE(source.Start(Recorder(absl::InvalidArgumentError("no"))).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // several polls: nothing new to offer
  EXPECT_THAT(versions(), ElementsAre("file-1"));
}

TEST(FilePolicySource, WithoutPathsDeliversIstioDefaults) {
  MetricsRegistry metrics;
  policy::FilePolicySource source(policy::PolicyWatcher::Options{}, SystemClock::Instance(), metrics, MakeNullLogger());
  std::shared_ptr<const authz::PolicyEngine> engine;
  ASSERT_TRUE(source
                  .Start([&](const policy::PolicySource::Snapshot& s) {
                    engine = s.engine;
                    return absl::OkStatus();
                  })
                  .ok());
  ASSERT_NE(engine, nullptr);
  authz::RequestInput in;
  in.destination_service = "reviews.default.svc.cluster.local";
  in.method = "GET";
  in.path = "/";
  auto d = engine->Check(in);
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->allowed);
}

}  // namespace
}  // namespace meshid::meshproxy
