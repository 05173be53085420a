#include "nodeagent/secret_cache.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/crl.h"
#include "common/keys.h"
#include "common/x509.h"
#include "envoy/extensions/transport_sockets/tls/v3/secret.pb.h"
#include "nodeagent/rotation.h"
#include "tests/nodeagent/fake_ca.h"

namespace meshid {
namespace {

using envoy::extensions::transport_sockets::tls::v3::Secret;
using ::testing::ElementsAre;
using testing::FakeCa;
using testing::FakeClock;
using testing::FakeTokenSource;
using ::testing::HasSubstr;
using testing::ScriptedRandom;
using ::testing::SizeIs;

// Records every update, in order.
class RecordingWatcher final : public xds::ResourceWatcher {
 public:
  void OnUpdate(const xds::ResourceUpdate& update) override {
    absl::MutexLock lock(&mu_);
    updates_.push_back(update);
  }
  std::vector<xds::ResourceUpdate> Take() {
    absl::MutexLock lock(&mu_);
    return std::exchange(updates_, {});
  }

 private:
  absl::Mutex mu_;
  std::vector<xds::ResourceUpdate> updates_;
};

Secret Parse(const xds::ResourcePtr& resource) {
  Secret secret;
  EXPECT_TRUE(secret.ParseFromString(std::string(resource->body.view())));
  return secret;
}

std::string LeafSpiffeId(const xds::ResourcePtr& resource) {
  Secret secret = Parse(resource);
  auto certs = CertsFromPem(secret.tls_certificate().certificate_chain().inline_bytes());
  EXPECT_TRUE(certs.ok());
  auto uris = UriSans(certs->front().get());
  return uris.empty() ? "" : uris.front();
}

class SecretCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ca_.AllowToken("agent-token", "istio-system", "agent");
    ca_.AllowToken("token-a1", "default", "a");
    ca_.AllowToken("token-a2", "default", "a");
    ca_.AllowToken("token-b", "default", "b");
  }

  std::unique_ptr<SecretCache> MakeCache(SecretCacheOptions options = {}) {
    options.secret_ttl = absl::Hours(1);
    if (options.grace_ratio_jitter == 0.01) options.grace_ratio_jitter = 0;
    auto cache = SecretCache::Create(options, ca_, agent_token_, clock_, random_, metrics_, MakeNullLogger());
    EXPECT_TRUE(cache.ok()) << cache.status();
    return std::move(*cache);
  }

  // Runs everything that is due now.
  static int RunDue(SecretCache& cache) {
    int n = 0;
    while (cache.RunOne()) ++n;
    return n;
  }

  std::unique_ptr<xds::Subscription> Subscribe(SecretCache& cache, const std::string& token,
                                               std::shared_ptr<RecordingWatcher> watcher) {
    auto sub = cache.Subscribe(token, std::move(watcher));
    EXPECT_TRUE(sub.ok()) << sub.status();
    return std::move(*sub);
  }

  FakeClock clock_;
  ScriptedRandom random_;
  FakeCa ca_{clock_};
  FakeTokenSource agent_token_{"agent-token"};
  MetricsRegistry metrics_;
};

TEST_F(SecretCacheTest, WarmsTheAgentIdentityAtStartAndServesItToTokenlessStreams) {
  auto cache = MakeCache();
  ASSERT_EQ(cache->NextDueTime(), clock_.Now());
  EXPECT_EQ(RunDue(*cache), 1);
  EXPECT_EQ(ca_.calls(), 1);
  EXPECT_THAT(ca_.tokens_seen(), ElementsAre("agent-token"));

  auto watcher = std::make_shared<RecordingWatcher>();
  auto sub = Subscribe(*cache, "", watcher);
  auto current = sub->SetNames({"default", "ROOTCA"});
  ASSERT_TRUE(current.ok()) << current.status();
  ASSERT_THAT(*current, SizeIs(2));
  const xds::ResourceUpdate& def = (*current)[0].name == "default" ? (*current)[0] : (*current)[1];
  const xds::ResourceUpdate& root = (*current)[0].name == "ROOTCA" ? (*current)[0] : (*current)[1];
  ASSERT_NE(def.resource, nullptr);
  EXPECT_EQ(LeafSpiffeId(def.resource), "spiffe://cluster.local/ns/istio-system/sa/agent");

  // The key in the secret belongs to the certificate, and the certificate chains to ROOTCA.
  Secret secret = Parse(def.resource);
  EXPECT_EQ(secret.name(), "default");
  auto key = PrivateKeyFromPem(secret.tls_certificate().private_key().inline_bytes());
  ASSERT_TRUE(key.ok());
  auto chain = CertsFromPem(secret.tls_certificate().certificate_chain().inline_bytes());
  ASSERT_TRUE(chain.ok());
  EXPECT_TRUE(SamePublicKey(X509_get0_pubkey(chain->front().get()), key->get()));
  EXPECT_EQ(*ClassifyKey(key->get()), KeyAlgorithm::kEcdsaP256);
  Secret root_secret = Parse(root.resource);
  EXPECT_EQ(root_secret.name(), "ROOTCA");
  auto roots = CertsFromPem(root_secret.validation_context().trusted_ca().inline_bytes());
  ASSERT_TRUE(roots.ok());
  EXPECT_TRUE(VerifyCertChain(chain->front().get(), {}, {roots->front().get()}, clock_.Now()).ok());
  EXPECT_EQ(cache->Stats().identities, 1u);
  EXPECT_TRUE(cache->Stats().agent_identity_ready);
}

TEST_F(SecretCacheTest, UnknownNamesAreAnErrorNotASubstitute) {
  auto cache = MakeCache();
  RunDue(*cache);
  auto sub = Subscribe(*cache, "", std::make_shared<RecordingWatcher>());
  auto result = sub->SetNames({"default", "file-cert:/etc/foo~/etc/bar"});
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(result.status().message(), HasSubstr("file-cert:/etc/foo~/etc/bar"));
  EXPECT_FALSE(cache->IsKnownName("client"));
  EXPECT_TRUE(cache->IsKnownName("ROOTCA"));
}

TEST_F(SecretCacheTest, RotatesAtTheGraceRatioAndPushesToWatchers) {
  auto cache = MakeCache();
  RunDue(*cache);
  auto watcher = std::make_shared<RecordingWatcher>();
  auto sub = Subscribe(*cache, "", watcher);
  auto first = sub->SetNames({"default"});
  ASSERT_TRUE(first.ok());
  const auto first_resource = (*first)[0].resource;
  const absl::Time start = clock_.Now();
  // 1h certificate, ratio 0.5, no jitter: renew 30 minutes after it arrived.
  EXPECT_EQ(cache->NextDueTime(), start + absl::Minutes(30));
  clock_.Advance(absl::Minutes(29));
  EXPECT_EQ(RunDue(*cache), 0);
  EXPECT_THAT(watcher->Take(), SizeIs(0));
  clock_.Advance(absl::Minutes(1));
  EXPECT_EQ(RunDue(*cache), 1);
  auto updates = watcher->Take();
  ASSERT_THAT(updates, SizeIs(1));
  EXPECT_EQ(updates[0].name, "default");
  EXPECT_GT(updates[0].resource->generation, first_resource->generation);
  EXPECT_NE(updates[0].resource->version, first_resource->version);
  EXPECT_EQ(ca_.calls(), 2);
  EXPECT_EQ(metrics_.AddCounter("meshid_agent_certificate_rotations_total", "").value(), 1);
}

TEST_F(SecretCacheTest, RotationTimeHonoursJitterBounds) {
  // Uniform 0 → ratio - jitter, Uniform ~1 → ratio + jitter.
  ScriptedRandom low({0.0}), high({0.999999});
  const absl::Time created = absl::FromUnixSeconds(1'000'000);
  const absl::Time not_after = created + absl::Hours(24);
  EXPECT_EQ(RotationTime(created, not_after, 0.5, 0.01, low), created + absl::Hours(24) * 0.51);
  EXPECT_NEAR(absl::ToDoubleSeconds(RotationTime(created, not_after, 0.5, 0.01, high) - created),
              absl::ToDoubleSeconds(absl::Hours(24) * 0.49), 1.0);
  EXPECT_EQ(RotationTime(created, not_after, 0.5, 0, low), created + absl::Hours(12));
  // Clamped to the certificate's life.
  EXPECT_EQ(RotationTime(created, not_after, 1.0, 0.2, high), created);
  EXPECT_EQ(RotationTime(created, not_after, 0.0, 0.2, low), not_after);

  // 10,000 workloads whose certificates arrived at the same instant do not renew together.
  OpenSslRandom real;
  std::set<absl::Time> distinct;
  absl::Time earliest = absl::InfiniteFuture(), latest = absl::InfinitePast();
  for (int i = 0; i < 10000; ++i) {
    absl::Time t = RotationTime(created, not_after, 0.5, 0.01, real);
    distinct.insert(t);
    earliest = std::min(earliest, t);
    latest = std::max(latest, t);
  }
  EXPECT_GT(distinct.size(), 9900u);
  EXPECT_GE(earliest, created + absl::Hours(24) * 0.49);
  EXPECT_LE(latest, created + absl::Hours(24) * 0.51);
  EXPECT_GT(latest - earliest, absl::Minutes(25));  // spread over (nearly) the whole ±1% window
}

TEST_F(SecretCacheTest, CaOutageKeepsServingTheCachedCertificateUntilItExpires) {
  auto cache = MakeCache();
  RunDue(*cache);
  auto watcher = std::make_shared<RecordingWatcher>();
  auto sub = Subscribe(*cache, "", watcher);
  auto first = sub->SetNames({"default"});
  ASSERT_TRUE(first.ok());
  const auto cert = (*first)[0].resource;

  ca_.SetFailure(absl::UnavailableError("connection refused"));
  clock_.Advance(absl::Minutes(30));
  EXPECT_EQ(RunDue(*cache), 1);  // the renewal fails
  EXPECT_THAT(watcher->Take(), SizeIs(0));
  // Retries back off exponentially: 500ms, 1s, 2s, ...
  EXPECT_EQ(cache->NextDueTime(), clock_.Now() + absl::Milliseconds(500));
  clock_.Advance(absl::Milliseconds(500));
  EXPECT_EQ(RunDue(*cache), 1);
  EXPECT_EQ(cache->NextDueTime(), clock_.Now() + absl::Seconds(1));
  // A new stream still gets the cached, valid certificate.
  auto sub2 = Subscribe(*cache, "", std::make_shared<RecordingWatcher>());
  auto again = sub2->SetNames({"default"});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)[0].resource, cert);

  // Past notAfter the streams get an error instead of the stale secret.
  int runs = 0;
  while (clock_.Now() < absl::FromUnixSeconds(1'800'000'000) + absl::Hours(1) && runs < 1000) {
    clock_.Set(*cache->NextDueTime());
    RunDue(*cache);
    ++runs;
  }
  auto updates = watcher->Take();
  ASSERT_THAT(updates, SizeIs(1));
  EXPECT_EQ(updates[0].resource, nullptr);
  EXPECT_EQ(updates[0].error.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(updates[0].error.message(), HasSubstr("expired"));
  EXPECT_THAT(updates[0].error.message(), HasSubstr("connection refused"));
  // A stream arriving right after a failed attempt is told why at once.
  clock_.Set(*cache->NextDueTime());
  RunDue(*cache);
  auto expired = sub2->SetNames({"default"});
  ASSERT_TRUE(expired.ok());
  ASSERT_THAT(*expired, SizeIs(1));
  EXPECT_FALSE((*expired)[0].error.ok());
  EXPECT_GT(metrics_.AddCounter("meshid_agent_csr_failures_total", "", {{"code", "UNAVAILABLE"}}).value(), 5);

  // The CA comes back. A proxy reconnecting (a new stream) does not wait out the backoff: it
  // triggers an attempt right away and waits for its outcome, as with istio-agent.
  ca_.SetFailure(absl::OkStatus());
  clock_.Advance(absl::Milliseconds(500));
  ASSERT_GT(*cache->NextDueTime(), clock_.Now());
  auto sub3 = Subscribe(*cache, "", std::make_shared<RecordingWatcher>());
  auto waiting = sub3->SetNames({"default"});
  ASSERT_TRUE(waiting.ok());
  EXPECT_THAT(*waiting, SizeIs(0));
  EXPECT_EQ(cache->NextDueTime(), clock_.Now());
  RunDue(*cache);
  updates = watcher->Take();  // the failure of the attempt above, then the new certificate
  ASSERT_THAT(updates, SizeIs(2));
  EXPECT_FALSE(updates[0].error.ok());
  ASSERT_NE(updates[1].resource, nullptr);
  EXPECT_GT(
      NotAfter(
          CertsFromPem(Parse(updates[1].resource).tls_certificate().certificate_chain().inline_bytes())->front().get()),
      clock_.Now());
}

TEST_F(SecretCacheTest, FirstRequestFailingIsReportedToStreamsAndRetried) {
  ca_.SetFailure(absl::UnavailableError("CA down"));
  auto cache = MakeCache();
  auto watcher = std::make_shared<RecordingWatcher>();
  auto sub = Subscribe(*cache, "", watcher);
  auto current = sub->SetNames({"default", "ROOTCA"});
  ASSERT_TRUE(current.ok());
  EXPECT_THAT(*current, SizeIs(0));  // still being prepared
  RunDue(*cache);
  auto updates = watcher->Take();
  ASSERT_THAT(updates, SizeIs(2));
  for (const auto& u : updates) {
    EXPECT_EQ(u.error.code(), absl::StatusCode::kUnavailable) << u.name;
    EXPECT_THAT(u.error.message(), HasSubstr("CA down"));
  }
  ca_.SetFailure(absl::OkStatus());
  clock_.Set(*cache->NextDueTime());
  RunDue(*cache);
  // The trust bundle comes first; the certificate follows once the stream has applied it.
  updates = watcher->Take();
  ASSERT_THAT(updates, SizeIs(1));
  EXPECT_EQ(updates[0].name, "ROOTCA");
  sub->ReportApplied("ROOTCA", updates[0].resource->version, true);
  RunDue(*cache);
  updates = watcher->Take();
  ASSERT_THAT(updates, SizeIs(1));
  EXPECT_EQ(updates[0].name, "default");
}

TEST_F(SecretCacheTest, WorkloadTokensGetTheirOwnIdentityAndStreamsOfOneIdentityShareIt) {
  auto cache = MakeCache();
  RunDue(*cache);
  auto w1 = std::make_shared<RecordingWatcher>(), w2 = std::make_shared<RecordingWatcher>(),
       w3 = std::make_shared<RecordingWatcher>(), w4 = std::make_shared<RecordingWatcher>();
  auto s1 = Subscribe(*cache, "token-a1", w1);
  auto s2 = Subscribe(*cache, "token-a1", w2);
  ASSERT_TRUE(s1->SetNames({"default"}).ok());
  ASSERT_TRUE(s2->SetNames({"default"}).ok());
  RunDue(*cache);
  EXPECT_EQ(ca_.calls(), 2);  // the agent's own + one for token-a1 (not one per stream)
  auto u1 = w1->Take(), u2 = w2->Take();
  ASSERT_THAT(u1, SizeIs(1));
  ASSERT_THAT(u2, SizeIs(1));
  EXPECT_EQ(u1[0].resource, u2[0].resource);
  EXPECT_EQ(LeafSpiffeId(u1[0].resource), "spiffe://cluster.local/ns/default/sa/a");

  // A third stream with the same, already accepted token is served from the cache at once.
  auto s3 = Subscribe(*cache, "token-a1", w3);
  auto current = s3->SetNames({"default"});
  ASSERT_TRUE(current.ok());
  ASSERT_THAT(*current, SizeIs(1));
  EXPECT_EQ((*current)[0].resource, u1[0].resource);
  EXPECT_EQ(ca_.calls(), 2);

  // Another token for the same service account is checked by the CA, then joins the identity:
  // one cached secret, the newest certificate pushed to every stream of it.
  auto s4 = Subscribe(*cache, "token-a2", w4);
  ASSERT_TRUE(s4->SetNames({"default"}).ok());
  RunDue(*cache);
  EXPECT_EQ(ca_.calls(), 3);
  auto u4 = w4->Take();
  ASSERT_THAT(u4, SizeIs(1));
  EXPECT_EQ(LeafSpiffeId(u4[0].resource), "spiffe://cluster.local/ns/default/sa/a");
  EXPECT_THAT(w1->Take(), SizeIs(1));
  EXPECT_THAT(w3->Take(), SizeIs(1));
  EXPECT_EQ(cache->Stats().identities, 2u);  // agent + sa/a

  // A different service account is a different identity.
  auto w5 = std::make_shared<RecordingWatcher>();
  auto s5 = Subscribe(*cache, "token-b", w5);
  ASSERT_TRUE(s5->SetNames({"default"}).ok());
  RunDue(*cache);
  auto u5 = w5->Take();
  ASSERT_THAT(u5, SizeIs(1));
  EXPECT_EQ(LeafSpiffeId(u5[0].resource), "spiffe://cluster.local/ns/default/sa/b");
  EXPECT_EQ(cache->Stats().identities, 3u);
  EXPECT_EQ(s5->Describe(), "spiffe://cluster.local/ns/default/sa/b");
}

TEST_F(SecretCacheTest, ARejectedWorkloadTokenFailsItsStreamsAndIsNotRemembered) {
  auto cache = MakeCache();
  RunDue(*cache);
  auto watcher = std::make_shared<RecordingWatcher>();
  auto sub = Subscribe(*cache, "forged", watcher);
  ASSERT_TRUE(sub->SetNames({"default"}).ok());
  RunDue(*cache);
  auto updates = watcher->Take();
  ASSERT_THAT(updates, SizeIs(1));
  EXPECT_EQ(updates[0].error.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(cache->Stats().identities, 1u);
  // The same token on a new stream is tried again (the CA decides), not answered from memory.
  auto sub2 = Subscribe(*cache, "forged", std::make_shared<RecordingWatcher>());
  ASSERT_TRUE(sub2->SetNames({"default"}).ok());
  RunDue(*cache);
  EXPECT_EQ(ca_.calls(), 3);
}

// A JWT-shaped token (only its exp is read by the agent; the fake CA accepts it by value).
std::string TokenExpiringAt(absl::Time exp, const std::string& tag) {
  auto b64 = [](const std::string& s) {
    std::string out;
    absl::WebSafeBase64Escape(s, &out);
    return out;
  };
  return b64(R"({"alg":"ES256","typ":"JWT"})") + "." +
         b64(absl::StrCat(R"({"sub":")", tag, R"(","exp":)", absl::ToUnixSeconds(exp), "}")) + "." + b64("sig");
}

TEST_F(SecretCacheTest, AnExpiredWorkloadTokenIsNeitherReusedNorRetriedInALoop) {
  const std::string token = TokenExpiringAt(clock_.Now() + absl::Minutes(40), "c");
  ca_.AllowToken(token, "default", "c");
  auto cache = MakeCache();
  RunDue(*cache);
  auto watcher = std::make_shared<RecordingWatcher>();
  auto sub = Subscribe(*cache, token, watcher);
  ASSERT_TRUE(sub->SetNames({"default"}).ok());
  RunDue(*cache);
  ASSERT_THAT(watcher->Take(), SizeIs(1));

  // At renewal (30 min) the token is still valid: renewed with it.
  clock_.Advance(absl::Minutes(30));
  RunDue(*cache);
  ASSERT_THAT(watcher->Take(), SizeIs(1));
  // The next renewal (60 min) comes after the token expired (40 min): the CA refuses it...
  ca_.RevokeToken(token);
  clock_.Advance(absl::Minutes(30));
  int calls = ca_.calls();
  RunDue(*cache);
  EXPECT_EQ(ca_.calls(), calls + 2);  // the agent's own renewal, and the refused one
  // ...and the agent does not keep retrying with the dead token (the certificate, valid until
  // 90 min, keeps being served).
  calls = ca_.calls();
  for (int i = 0; i < 20; ++i) {
    clock_.Advance(absl::Seconds(60));
    RunDue(*cache);
  }
  EXPECT_EQ(ca_.calls(), calls);
  EXPECT_THAT(watcher->Take(), SizeIs(0));
  // A new stream with the same, now expired token is not served from memory: the CA decides.
  auto sub2 = Subscribe(*cache, token, std::make_shared<RecordingWatcher>());
  auto current = sub2->SetNames({"default"});
  ASSERT_TRUE(current.ok());
  EXPECT_THAT(*current, SizeIs(0));
  RunDue(*cache);
  EXPECT_EQ(ca_.calls(), calls + 1);
}

TEST_F(SecretCacheTest, StreamsOnlyAskingForTheTrustBundleCauseNoCsr) {
  auto cache = MakeCache();
  RunDue(*cache);
  auto sub = Subscribe(*cache, "token-b", std::make_shared<RecordingWatcher>());
  auto current = sub->SetNames({"ROOTCA"});
  ASSERT_TRUE(current.ok());
  ASSERT_THAT(*current, SizeIs(1));
  RunDue(*cache);
  EXPECT_EQ(ca_.calls(), 1);
}

TEST_F(SecretCacheTest, IdentitiesWithoutStreamsAreDroppedInsteadOfRenewed) {
  auto cache = MakeCache();
  RunDue(*cache);
  {
    auto sub = Subscribe(*cache, "token-b", std::make_shared<RecordingWatcher>());
    ASSERT_TRUE(sub->SetNames({"default"}).ok());
    RunDue(*cache);
  }
  EXPECT_EQ(cache->Stats().identities, 2u);
  clock_.Advance(absl::Minutes(30));
  RunDue(*cache);
  EXPECT_EQ(cache->Stats().identities, 1u);  // the agent's own is renewed, sa/b is gone
  EXPECT_EQ(ca_.calls(), 3);
  // Its token is forgotten with it: a new stream proves it again.
  auto sub = Subscribe(*cache, "token-b", std::make_shared<RecordingWatcher>());
  auto current = sub->SetNames({"default"});
  ASSERT_TRUE(current.ok());
  EXPECT_THAT(*current, SizeIs(0));
}

TEST_F(SecretCacheTest, ANewRootReachesEveryRootcaStreamBeforeACertificateFromIt) {
  auto cache = MakeCache();
  RunDue(*cache);
  auto both = std::make_shared<RecordingWatcher>();   // one stream asking for both names
  auto roots = std::make_shared<RecordingWatcher>();  // a ROOTCA-only stream (Envoy's usual split)
  auto s_both = Subscribe(*cache, "", both);
  auto s_roots = Subscribe(*cache, "", roots);
  auto initial = s_both->SetNames({"default", "ROOTCA"});
  ASSERT_TRUE(initial.ok());
  auto root_initial = s_roots->SetNames({"ROOTCA"});
  ASSERT_TRUE(root_initial.ok());
  const std::string v1 = (*root_initial)[0].resource->version;
  s_both->ReportApplied("ROOTCA", v1, true);
  s_roots->ReportApplied("ROOTCA", v1, true);

  // The CA adds root B next to A, then signs with B.
  ca_.AddRoot();
  ca_.SignWith(1);
  clock_.Advance(absl::Minutes(30));
  RunDue(*cache);
  auto u_both = both->Take();
  auto u_roots = roots->Take();
  ASSERT_THAT(u_both, SizeIs(1));  // only ROOTCA so far: the B certificate is held back
  EXPECT_EQ(u_both[0].name, "ROOTCA");
  ASSERT_THAT(u_roots, SizeIs(1));
  auto bundle = CertsFromPem(Parse(u_roots[0].resource).validation_context().trusted_ca().inline_bytes());
  ASSERT_TRUE(bundle.ok());
  EXPECT_THAT(*bundle, SizeIs(2));
  const std::string v2 = u_roots[0].resource->version;

  // One stream applied it; the other has not yet: still held.
  s_both->ReportApplied("ROOTCA", v2, true);
  EXPECT_EQ(RunDue(*cache), 0);
  EXPECT_THAT(both->Take(), SizeIs(0));
  s_roots->ReportApplied("ROOTCA", v2, true);
  EXPECT_EQ(RunDue(*cache), 1);
  u_both = both->Take();
  ASSERT_THAT(u_both, SizeIs(1));
  EXPECT_EQ(u_both[0].name, "default");
  auto leaf = CertsFromPem(Parse(u_both[0].resource).tls_certificate().certificate_chain().inline_bytes());
  auto root_b = CertFromPem(ca_.RootPem(1));
  EXPECT_TRUE(VerifyCertChain(leaf->front().get(), {}, {root_b->get()}, clock_.Now()).ok());
  EXPECT_EQ(metrics_.AddCounter("meshid_agent_trust_bundle_updates_total", "").value(), 2);
}

TEST_F(SecretCacheTest, RootsSentOnePerChainElementAllReachRootca) {
  // meshid server's answer for a CA signing with root B while root A is still trusted:
  // [leaf from B, A, B]. A must not be taken for an intermediate and dropped from ROOTCA.
  ca_.SetOneRootPerElement(true);
  ca_.AddRoot();
  ca_.SignWith(1);
  auto cache = MakeCache();
  RunDue(*cache);
  auto watcher = std::make_shared<RecordingWatcher>();
  auto stream = Subscribe(*cache, "", watcher);
  auto initial = stream->SetNames({"default", "ROOTCA"});
  ASSERT_TRUE(initial.ok()) << initial.status();
  ASSERT_THAT(*initial, SizeIs(2));
  std::string chain_pem, bundle_pem;
  for (const auto& update : *initial) {
    auto secret = Parse(update.resource);
    if (update.name == "default") chain_pem = secret.tls_certificate().certificate_chain().inline_bytes();
    if (update.name == "ROOTCA") bundle_pem = secret.validation_context().trusted_ca().inline_bytes();
  }
  auto bundle = CertsFromPem(bundle_pem);
  ASSERT_TRUE(bundle.ok());
  EXPECT_THAT(*bundle, SizeIs(2));
  EXPECT_THAT(bundle_pem, HasSubstr(ca_.RootPem(0)));
  EXPECT_THAT(bundle_pem, HasSubstr(ca_.RootPem(1)));
  auto chain = CertsFromPem(chain_pem);
  ASSERT_TRUE(chain.ok());
  EXPECT_THAT(*chain, SizeIs(1)) << "roots belong to ROOTCA, not to the certificate chain";
  auto root_b = CertFromPem(ca_.RootPem(1));
  EXPECT_TRUE(VerifyCertChain(chain->front().get(), {}, {root_b->get()}, clock_.Now()).ok());
}

TEST_F(SecretCacheTest, AHeldCertificateIsReleasedAfterTheRootPushTimeout) {
  SecretCacheOptions options;
  options.root_push_timeout = absl::Seconds(10);
  auto cache = MakeCache(options);
  RunDue(*cache);
  auto def = std::make_shared<RecordingWatcher>();
  auto s_def = Subscribe(*cache, "", def);
  ASSERT_TRUE(s_def->SetNames({"default"}).ok());
  auto s_root = Subscribe(*cache, "", std::make_shared<RecordingWatcher>());
  ASSERT_TRUE(s_root->SetNames({"ROOTCA"}).ok());  // never ACKs
  ca_.AddRoot();
  ca_.SignWith(1);
  clock_.Advance(absl::Minutes(30));
  RunDue(*cache);
  EXPECT_THAT(def->Take(), SizeIs(0));
  EXPECT_EQ(cache->NextDueTime(), clock_.Now() + absl::Seconds(10));
  clock_.Advance(absl::Seconds(10));
  RunDue(*cache);
  EXPECT_THAT(def->Take(), SizeIs(1));
}

TEST_F(SecretCacheTest, ACrlJoinsRootcaAndARevokedCertificateIsReplacedAtOnce) {
  auto cache = MakeCache();
  RunDue(*cache);
  auto watcher = std::make_shared<RecordingWatcher>();
  auto sub = Subscribe(*cache, "", watcher);
  auto current = sub->SetNames({"default", "ROOTCA"});
  ASSERT_TRUE(current.ok()) << current.status();
  xds::ResourcePtr served;
  for (const auto& u : *current) {
    if (u.name == "default") served = u.resource;
  }
  ASSERT_NE(served, nullptr);
  auto leaf = CertsFromPem(Parse(served).tls_certificate().certificate_chain().inline_bytes());
  ASSERT_TRUE(leaf.ok());
  auto crl = ca_.Root(0)->Crl({leaf->front().get()}, 7);
  ASSERT_TRUE(crl.ok()) << crl.status();
  const std::string der = *crl;
  auto index = RevocationIndex::FromCrlDer(der);
  ASSERT_TRUE(index.ok()) << index.status();
  ASSERT_TRUE((*index)->IsRevoked(leaf->front().get()));

  cache->SetCrl(CrlDerToPem(der), *index);
  // ROOTCA carries the CRL for Envoy, leaf-only (the CRL's issuers have none of their own).
  auto updates = watcher->Take();
  ASSERT_THAT(updates, SizeIs(1));
  EXPECT_EQ(updates[0].name, "ROOTCA");
  const Secret root = Parse(updates[0].resource);
  EXPECT_EQ(root.validation_context().crl().inline_bytes(), CrlDerToPem(der));
  EXPECT_TRUE(root.validation_context().only_verify_leaf_cert_crl());
  EXPECT_FALSE(root.validation_context().trusted_ca().inline_bytes().empty());
  EXPECT_EQ(cache->CrlNumberOfRootVersion(updates[0].resource->version), 7);
  EXPECT_EQ(cache->CrlNumberOfRootVersion("no-such-version"), 0);

  // The revoked certificate is renewed now, not at its rotation time.
  EXPECT_EQ(cache->NextDueTime(), clock_.Now());
  EXPECT_EQ(RunDue(*cache), 1);
  EXPECT_EQ(ca_.calls(), 2);
  updates = watcher->Take();
  ASSERT_THAT(updates, SizeIs(1));
  EXPECT_EQ(updates[0].name, "default");
  auto fresh = CertsFromPem(Parse(updates[0].resource).tls_certificate().certificate_chain().inline_bytes());
  ASSERT_TRUE(fresh.ok());
  EXPECT_NE(SerialHex(fresh->front().get()), SerialHex(leaf->front().get()));
  EXPECT_FALSE((*index)->IsRevoked(fresh->front().get()));
  EXPECT_EQ(metrics_.AddCounter("meshid_agent_revoked_certificates_total", "").value(), 1);

  // The same CRL again: ROOTCA is re-pushed, nothing is renewed (the new certificate is not listed).
  cache->SetCrl(CrlDerToPem(der), *index);
  EXPECT_EQ(RunDue(*cache), 0);
  EXPECT_EQ(ca_.calls(), 2);
}

TEST_F(SecretCacheTest, ExtraTrustAnchorsJoinRootca) {
  auto cache = MakeCache();
  RunDue(*cache);
  auto watcher = std::make_shared<RecordingWatcher>();
  auto sub = Subscribe(*cache, "", watcher);
  ASSERT_TRUE(sub->SetNames({"ROOTCA"}).ok());
  auto extra = testing::MakeTestRoot(clock_, "other.domain");
  ASSERT_TRUE(extra.ok()) << extra.status();
  ASSERT_TRUE(cache->SetExtraTrustAnchors(extra->cert_pem()).ok());
  auto updates = watcher->Take();
  ASSERT_THAT(updates, SizeIs(1));
  auto bundle = CertsFromPem(Parse(updates[0].resource).validation_context().trusted_ca().inline_bytes());
  EXPECT_THAT(*bundle, SizeIs(2));
  EXPECT_FALSE(cache->SetExtraTrustAnchors("not a pem").ok());
}

TEST_F(SecretCacheTest, RsaKeysOnRequest) {
  SecretCacheOptions options;
  options.key_algorithm = KeyAlgorithm::kRsa2048;
  auto cache = MakeCache(options);
  RunDue(*cache);
  auto sub = Subscribe(*cache, "", std::make_shared<RecordingWatcher>());
  auto current = sub->SetNames({"default"});
  ASSERT_TRUE(current.ok());
  auto key = PrivateKeyFromPem(Parse((*current)[0].resource).tls_certificate().private_key().inline_bytes());
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(*ClassifyKey(key->get()), KeyAlgorithm::kRsa2048);
}

TEST_F(SecretCacheTest, OptionsAreValidated) {
  SecretCacheOptions options;
  options.grace_ratio = 1.5;
  options.max_backoff = absl::Milliseconds(1);
  auto status = ValidateSecretCacheOptions(options);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("grace-ratio"));
  EXPECT_THAT(status.message(), HasSubstr("max-backoff"));
}

}  // namespace
}  // namespace meshid

// ---- minted identities (a workload on the node, asked for with ImpersonatedIdentity) ----

namespace meshid {
namespace {

constexpr char kAgentId[] = "spiffe://cluster.local/ns/istio-system/sa/agent";
constexpr char kDb[] = "spiffe://cluster.local/ns/default/sa/db";

TEST_F(SecretCacheTest, MintedIdentityIsAskedForWithTheAgentsTokenAndCachedApart) {
  ca_.AllowMinting(kDb, kAgentId);
  auto cache = MakeCache();
  RunDue(*cache);  // the agent's own certificate
  auto watcher = std::make_shared<RecordingWatcher>();
  auto sub = cache->SubscribeMinted(kDb, watcher);
  ASSERT_TRUE(sub.ok()) << sub.status();
  auto current = (*sub)->SetNames({"default", "ROOTCA"});
  ASSERT_TRUE(current.ok()) << current.status();
  EXPECT_EQ(RunDue(*cache), 1);
  EXPECT_THAT(ca_.impersonated_seen(), ElementsAre(kDb));
  EXPECT_THAT(ca_.tokens_seen(), ElementsAre("agent-token", "agent-token"));
  auto updates = watcher->Take();
  ASSERT_FALSE(updates.empty());
  const xds::ResourceUpdate& last = updates.back();
  ASSERT_EQ(last.name, "default");
  ASSERT_NE(last.resource, nullptr);
  EXPECT_EQ(LeafSpiffeId(last.resource), kDb);
  EXPECT_EQ(cache->AgentSpiffeId(), kAgentId);

  // A second subscriber to the same identity shares the certificate: no new CSR.
  auto watcher2 = std::make_shared<RecordingWatcher>();
  auto sub2 = cache->SubscribeMinted(kDb, watcher2);
  ASSERT_TRUE(sub2.ok());
  auto again = (*sub2)->SetNames({"default"});
  ASSERT_TRUE(again.ok());
  ASSERT_THAT(*again, SizeIs(1));
  EXPECT_EQ((*again)[0].resource, last.resource);
  EXPECT_EQ(RunDue(*cache), 0);
  EXPECT_EQ(ca_.calls(), 2);
}

TEST_F(SecretCacheTest, MintedIdentityRefusedIsReportedAndRetriedWithBackoff) {
  auto cache = MakeCache();
  RunDue(*cache);
  auto watcher = std::make_shared<RecordingWatcher>();
  auto sub = cache->SubscribeMinted(kDb, watcher);
  ASSERT_TRUE(sub.ok());
  ASSERT_TRUE((*sub)->SetNames({"default"}).ok());
  EXPECT_EQ(RunDue(*cache), 1);
  auto updates = watcher->Take();
  ASSERT_THAT(updates, SizeIs(1));
  EXPECT_EQ(updates[0].error.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(updates[0].error.message(), HasSubstr(kDb));

  // The entry reaches the server later: the retry succeeds without a new subscription.
  ca_.AllowMinting(kDb, kAgentId);
  ASSERT_TRUE(cache->NextDueTime().has_value());
  clock_.Set(*cache->NextDueTime());
  EXPECT_EQ(RunDue(*cache), 1);
  updates = watcher->Take();
  ASSERT_FALSE(updates.empty());
  ASSERT_NE(updates.back().resource, nullptr);
  EXPECT_EQ(LeafSpiffeId(updates.back().resource), kDb);
}

TEST_F(SecretCacheTest, MintedIdentityNeedsASpiffeIdAndStaysApartFromTokenIdentities) {
  ca_.AllowMinting(kDb, kAgentId);
  auto cache = MakeCache();
  RunDue(*cache);
  EXPECT_FALSE(cache->SubscribeMinted("not a spiffe id", std::make_shared<RecordingWatcher>()).ok());

  // A token stream and a minted subscription for the same SPIFFE ID stay separate entries.
  ca_.AllowToken("token-db", "default", "db");
  auto token_watcher = std::make_shared<RecordingWatcher>();
  auto token_sub = Subscribe(*cache, "token-db", token_watcher);
  ASSERT_TRUE(token_sub->SetNames({"default"}).ok());
  auto minted_watcher = std::make_shared<RecordingWatcher>();
  auto minted_sub = cache->SubscribeMinted(kDb, minted_watcher);
  ASSERT_TRUE(minted_sub.ok());
  ASSERT_TRUE((*minted_sub)->SetNames({"default"}).ok());
  EXPECT_EQ(RunDue(*cache), 2);
  EXPECT_EQ(cache->Stats().identities, 3u);  // the agent's, the token's, the minted one
  auto minted = minted_watcher->Take();
  auto token = token_watcher->Take();
  ASSERT_FALSE(minted.empty());
  ASSERT_FALSE(token.empty());
  EXPECT_NE(minted.back().resource, token.back().resource);

  // Without subscribers the minted certificate is dropped at its renewal time.
  minted_sub->reset();
  clock_.Set(*cache->NextDueTime());
  RunDue(*cache);
  EXPECT_EQ(cache->Stats().identities, 2u);
}

}  // namespace
}  // namespace meshid
