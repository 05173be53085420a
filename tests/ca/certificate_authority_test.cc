#include <gtest/gtest.h>

#include <thread>

#include "absl/synchronization/notification.h"
#include "ca/certificate_service.h"
#include "common/logging.h"
#include "tests/ca/fake_store.h"
#include "tests/ca/test_ca.h"

namespace meshid {
namespace {

constexpr char kId[] = "spiffe://cluster.local/ns/default/sa/sleep";

class CertificateAuthorityTest : public ::testing::Test {
 protected:
  CertificateAuthorityTest() {
    authority_ = testing::MakeAuthority(clock_, random_);
    token_key_ = *GenerateKey(KeyAlgorithm::kEcdsaP256);
    std::vector<JwtIssuer> issuers;
    issuers.push_back(JwtIssuer{"iss", *Jwks::FromPublicKey(token_key_.get(), "k"), {"istio-ca"}});
    authn_ = std::make_shared<CompositeAuthenticator>(
        std::make_unique<ClientCertAuthenticator>(authority_, "cluster.local", clock_),
        std::make_unique<JwtAuthenticator>("cluster.local", std::move(issuers), clock_));
    ca_ = Make(CertificateServiceOptions{}, /*with_store=*/false);
    creds_.authorization = {"Bearer " + *SignJwt({{"iss", "iss"}, {"sub", "system:serviceaccount:default:sleep"}, {"aud", "istio-ca"},
                                                  {"exp", absl::ToUnixSeconds(clock_.Now() + absl::Hours(1))}},
                                                 token_key_.get(), "k")};
    key_ = *GenerateKey(KeyAlgorithm::kEcdsaP256);
    csr_ = *BuildCsrPem(key_.get());
  }

  std::unique_ptr<CertificateAuthority> Make(CertificateServiceOptions options, bool with_store) {
    if (with_store && !ledger_) ledger_ = std::make_unique<GroupCommitLedger>(store_, metrics_);
    if (with_store && batched_lookup_ && !lookup_) lookup_ = std::make_unique<BatchedIdentityLookup>(store_, metrics_);
    CertificateAuthorityDeps deps;
    deps.identity_lookup = with_store ? lookup_.get() : nullptr;
    deps.issuer = std::make_shared<CertIssuer>(authority_, clock_, random_);
    deps.authenticator = authn_;
    deps.store = with_store ? &store_ : nullptr;
    deps.ledger = with_store ? ledger_.get() : nullptr;
    deps.metrics = &metrics_;
    deps.logger = MakeNullLogger();
    deps.clock = &clock_;
    return std::make_unique<CertificateAuthority>(options, std::move(deps));
  }

  FakeClock clock_;
  OpenSslRandom random_;
  MetricsRegistry metrics_;
  testing::FakeStore store_;
  std::unique_ptr<GroupCommitLedger> ledger_;
  bool batched_lookup_ = false;  // registry reads through BatchedIdentityLookup (PostgreSQL's path)
  std::unique_ptr<BatchedIdentityLookup> lookup_;
  std::shared_ptr<const SigningAuthority> authority_;
  std::shared_ptr<const CallerAuthenticator> authn_;
  EvpPkeyPtr token_key_, key_;
  std::unique_ptr<CertificateAuthority> ca_;
  CallerCredentials creds_;
  std::string csr_;
};

TEST_F(CertificateAuthorityTest, IssuesLeafThenRootWithDefaultTtl) {
  auto chain = ca_->Sign(creds_, csr_, 0);
  ASSERT_TRUE(chain.ok()) << chain.status();
  ASSERT_EQ(chain->size(), 2u);
  EXPECT_EQ(chain->back(), authority_->root_bundle_pem);
  auto leaf = *CertFromPem(chain->front());
  EXPECT_EQ(NotAfter(leaf.get()), clock_.Now() + absl::Hours(1));
  EXPECT_EQ(UriSans(leaf.get()), std::vector<std::string>{kId});
  EXPECT_TRUE(SamePublicKey(X509_get0_pubkey(leaf.get()), key_.get()));
  EXPECT_EQ(ca_->issued_count(), 1);
}

TEST_F(CertificateAuthorityTest, HonoursRequestedTtlAndRefusesAboveMax) {
  auto leaf = *CertFromPem(ca_->Sign(creds_, csr_, 600)->front());
  EXPECT_EQ(NotAfter(leaf.get()), clock_.Now() + absl::Seconds(600));
  auto too_long = ca_->Sign(creds_, csr_, 86401);
  EXPECT_TRUE(absl::IsInvalidArgument(too_long.status()));
  EXPECT_EQ(too_long.status().message(), "requested TTL 86401s is greater than the max allowed TTL 86400s");
  EXPECT_EQ(ca_->issued_count(), 1);
  EXPECT_NE(metrics_.RenderPrometheus().find("citadel_server_csr_sign_err_count{error=\"TTL_ERROR\"} 1"), std::string::npos);
}

TEST_F(CertificateAuthorityTest, RefusalsIssueNothing) {
  EXPECT_TRUE(absl::IsUnauthenticated(ca_->Sign(CallerCredentials{}, csr_, 0).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(ca_->Sign(creds_, "junk", 0).status()));
  clock_.Advance(absl::Hours(3));
  EXPECT_TRUE(absl::IsUnauthenticated(ca_->Sign(creds_, csr_, 0).status())) << "token expired";
  EXPECT_EQ(ca_->issued_count(), 0);
  std::string text = metrics_.RenderPrometheus();
  EXPECT_NE(text.find("citadel_server_authentication_failure_count 2"), std::string::npos) << text;
  EXPECT_NE(text.find("citadel_server_csr_sign_err_count{error=\"CSR_ERROR\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("citadel_server_csr_count 3"), std::string::npos) << text;
}

// The store-backed tests run twice: registry reads per request (SQLite's path) and batched
// through BatchedIdentityLookup (PostgreSQL's path).
class CertificateAuthorityStoreTest : public CertificateAuthorityTest, public ::testing::WithParamInterface<bool> {
 protected:
  CertificateAuthorityStoreTest() { batched_lookup_ = GetParam(); }
};
INSTANTIATE_TEST_SUITE_P(RegistryReads, CertificateAuthorityStoreTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) { return info.param ? "Batched" : "Direct"; });

TEST_P(CertificateAuthorityStoreTest, LedgerRecordsEveryIssuedCertificate) {
  auto ca = Make(CertificateServiceOptions{}, true);
  auto chain = ca->Sign(creds_, csr_, 0);
  ASSERT_TRUE(chain.ok()) << chain.status();
  auto leaf = *CertFromPem(chain->front());
  auto rows = *store_.ListIssuances(IssuanceQuery{});
  ASSERT_EQ(rows.size(), 1u);
  const IssuanceRecord& r = rows[0];
  EXPECT_EQ(r.serial_hex, SerialHex(leaf.get()));
  EXPECT_EQ(r.spiffe_id, kId);
  EXPECT_EQ(r.not_before, NotBefore(leaf.get()));
  EXPECT_EQ(r.not_after, NotAfter(leaf.get()));
  EXPECT_EQ(r.public_key_sha256, *PublicKeySha256Hex(key_.get()));
  EXPECT_EQ(r.issuer_serial_hex, SerialHex(authority_->cert.get()));
  EXPECT_EQ(r.auth_method, "jwt");
  EXPECT_EQ(r.auth_detail, "iss=iss sub=system:serviceaccount:default:sleep");
  EXPECT_EQ(r.issued_at, clock_.Now());
}

TEST_P(CertificateAuthorityStoreTest, StoreDownMeansUnavailableAndNoCertificate) {
  auto ca = Make(CertificateServiceOptions{}, true);
  store_.set_available(false);
  auto result = ca->Sign(creds_, csr_, 0);
  EXPECT_TRUE(absl::IsUnavailable(result.status())) << result.status();
  EXPECT_EQ(ca->issued_count(), 0);
  EXPECT_EQ(store_.ledger_size(), 0u);
  store_.set_available(true);
  EXPECT_TRUE(ca->Sign(creds_, csr_, 0).ok()) << "recovers when the store returns";
}

TEST_P(CertificateAuthorityStoreTest, BlockedIdentityIsRefusedUntilUnblocked) {
  auto ca = Make(CertificateServiceOptions{}, true);
  ASSERT_TRUE(store_.Block(kId, "key leaked", clock_.Now()).ok());
  auto result = ca->Sign(creds_, csr_, 0);
  EXPECT_TRUE(absl::IsPermissionDenied(result.status()));
  EXPECT_EQ(result.status().message(), std::string("identity ") + kId + " is blocked: key leaked");
  ASSERT_TRUE(store_.Unblock(kId).ok());
  EXPECT_TRUE(ca->Sign(creds_, csr_, 0).ok());
}

TEST_P(CertificateAuthorityStoreTest, RequireRegistrationAndEntryRules) {
  CertificateServiceOptions options;
  options.require_registration = true;
  auto ca = Make(options, true);
  auto result = ca->Sign(creds_, csr_, 0);
  EXPECT_EQ(result.status().message(), std::string("identity ") + kId + " is not registered (the server requires registration)");

  RegistryEntry entry;
  entry.spiffe_id = kId;
  entry.allowed_auth = {"jwt-iss:someone-else"};
  ASSERT_TRUE(store_.CreateEntry(entry).ok());
  result = ca->Sign(creds_, csr_, 0);
  EXPECT_TRUE(absl::IsPermissionDenied(result.status()));
  EXPECT_NE(std::string(result.status().message()).find("does not allow a caller with jwt iss=iss"), std::string::npos);

  entry.allowed_auth = {"client-cert", "jwt-sub:system:serviceaccount:default:sleep"};
  entry.max_ttl = absl::Hours(48);
  entry.dns_names = {"sleep.default.svc", "sleep.example.com"};
  ASSERT_TRUE(store_.CreateEntry(entry).ok());
  auto chain = ca->Sign(creds_, csr_, 36 * 3600);
  ASSERT_TRUE(chain.ok()) << chain.status() << " (the entry raises the max TTL to 48h)";
  auto leaf = *CertFromPem(chain->front());
  EXPECT_EQ(DnsSans(leaf.get()), entry.dns_names);
  EXPECT_EQ(UriSans(leaf.get()), std::vector<std::string>{kId});
  EXPECT_EQ(NotAfter(leaf.get()), clock_.Now() + absl::Hours(36));
}

TEST_P(CertificateAuthorityStoreTest, ConcurrentRequestsShareCommits) {
  auto ca = Make(CertificateServiceOptions{}, true);
  constexpr int kThreads = 8, kPerThread = 20;
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) ok += ca->Sign(creds_, csr_, 0).ok();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), kThreads * kPerThread);
  EXPECT_EQ(store_.ledger_size(), static_cast<size_t>(kThreads * kPerThread));
  EXPECT_LE(store_.commits(), kThreads * kPerThread);
}

TEST(GroupCommitLedger, SeveralWritersRecordEverythingExactlyOnceAndDrainOnShutdown) {
  testing::FakeStore store;
  MetricsRegistry metrics;
  constexpr int kThreads = 8, kPerThread = 50;
  std::atomic<int> committed{0};
  {
    GroupCommitLedger ledger(store, metrics, {.max_batch = 16, .writers = 4});
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kPerThread; ++i) {
          IssuanceRecord record;
          record.serial_hex = absl::StrCat(t, "-", i);
          // Half wait for the commit, half only queue: the destructor must commit the rest.
          if (i % 2 == 0) {
            committed += ledger.Record(record).ok();
          } else {
            ledger.RecordAsync(record, [&](absl::Status s) { committed += s.ok(); });
          }
        }
      });
    }
    for (auto& t : threads) t.join();
  }
  EXPECT_EQ(committed.load(), kThreads * kPerThread);
  EXPECT_EQ(store.ledger_size(), static_cast<size_t>(kThreads * kPerThread));
}

// Pacing without timing: with an interval of an hour, only an idle ledger, a full batch or
// shutdown can start a commit.
TEST(GroupCommitLedger, PacedCommitsStartAtOnceWhenIdleThenWaitForAFullBatch) {
  testing::FakeStore store;
  MetricsRegistry metrics;
  constexpr int kBatch = 10;
  std::atomic<int> committed{0};
  auto record = [](int i) {
    IssuanceRecord r;
    r.serial_hex = absl::StrCat(i);
    return r;
  };
  {
    GroupCommitLedger ledger(store, metrics, {.max_batch = kBatch, .writers = 1, .commit_interval = absl::Hours(1)});
    ASSERT_TRUE(ledger.Record(record(0)).ok()) << "an idle ledger commits at once";
    std::vector<std::thread> threads;
    for (int i = 1; i <= kBatch; ++i) {
      threads.emplace_back([&, i] { committed += ledger.Record(record(i)).ok(); });
    }
    for (auto& t : threads) t.join();  // returns only once the tenth record filled the batch
    ledger.RecordAsync(record(kBatch + 1), [&](absl::Status s) { committed += s.ok(); });
  }  // shutdown commits the last record without waiting out the interval
  EXPECT_EQ(committed.load(), kBatch + 1);
  EXPECT_EQ(store.batch_sizes(), (std::vector<size_t>{1, kBatch, 1}));
}

TEST(BatchedIdentityLookup, AnswersEveryLookupFromTheStoreAndDrainsOnShutdown) {
  testing::FakeStore store;
  MetricsRegistry metrics;
  ASSERT_TRUE(store.Block("spiffe://td/ns/a/sa/blocked", "leaked", absl::UnixEpoch()).ok());
  RegistryEntry entry;
  entry.spiffe_id = "spiffe://td/ns/a/sa/registered";
  entry.dns_names = {"registered.a.svc"};
  ASSERT_TRUE(store.CreateEntry(entry).ok());
  constexpr int kThreads = 8, kPerThread = 50;
  std::atomic<int> right{0}, answered{0};
  {
    BatchedIdentityLookup lookup(store, metrics, /*readers=*/2, /*workers=*/2);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kPerThread; ++i) {
          const int kind = (t + i) % 3;
          std::string id = kind == 0 ? "spiffe://td/ns/a/sa/blocked" : kind == 1 ? "spiffe://td/ns/a/sa/registered"
                                                                                  : "spiffe://td/ns/a/sa/plain";
          lookup.GetAsync(id, [&, kind](absl::StatusOr<IdentityStatus> status) {
            ++answered;
            if (!status.ok()) return;
            bool ok = kind == 0   ? status->blocked.has_value() && status->blocked->reason == "leaked" && !status->entry
                      : kind == 1 ? status->entry.has_value() && status->entry->dns_names == std::vector<std::string>{"registered.a.svc"} &&
                                      !status->blocked
                                  : !status->entry && !status->blocked;
            right += ok;
          });
        }
      });
    }
    for (auto& t : threads) t.join();
  }  // the destructor answers everything still queued
  EXPECT_EQ(answered.load(), kThreads * kPerThread);
  EXPECT_EQ(right.load(), kThreads * kPerThread);
  EXPECT_LE(metrics.AddCounter("meshid_ca_identity_lookup_queries", "").value(), kThreads * kPerThread);
}

TEST(BatchedIdentityLookup, SeesABlockMadeBeforeTheLookupAndPassesStoreErrorsOn) {
  testing::FakeStore store;
  MetricsRegistry metrics;
  BatchedIdentityLookup lookup(store, metrics);
  auto get = [&](const std::string& id) {
    absl::StatusOr<IdentityStatus> result;
    absl::Notification done;
    lookup.GetAsync(id, [&](absl::StatusOr<IdentityStatus> status) {
      result = std::move(status);
      done.Notify();
    });
    done.WaitForNotification();
    return result;
  };
  const std::string id = "spiffe://td/ns/a/sa/b";
  ASSERT_TRUE(get(id).ok());
  EXPECT_FALSE(get(id)->blocked.has_value());
  ASSERT_TRUE(store.Block(id, "", absl::UnixEpoch()).ok());
  EXPECT_TRUE(get(id)->blocked.has_value()) << "the next lookup after a block sees it";
  store.set_available(false);
  EXPECT_TRUE(absl::IsUnavailable(get(id).status()));
}

TEST(EntryAllows, MatchesEachRuleKind) {
  AuthenticatedCaller jwt;
  jwt.method = AuthenticatedCaller::Method::kJwt;
  jwt.jwt_issuer = "https://k8s";
  jwt.jwt_subject = "system:serviceaccount:a:b";
  AuthenticatedCaller cert;
  cert.method = AuthenticatedCaller::Method::kClientCert;
  RegistryEntry e;
  EXPECT_TRUE(EntryAllows(e, jwt));
  e.allowed_auth = {"jwt-iss:https://k8s"};
  EXPECT_TRUE(EntryAllows(e, jwt));
  EXPECT_FALSE(EntryAllows(e, cert));
  e.allowed_auth = {"jwt-sub:system:serviceaccount:a:c"};
  EXPECT_FALSE(EntryAllows(e, jwt));
  e.allowed_auth = {"client-cert"};
  EXPECT_TRUE(EntryAllows(e, cert));
  EXPECT_FALSE(EntryAllows(e, jwt));
  e.allowed_auth = {"*"};
  EXPECT_TRUE(EntryAllows(e, cert));
}

}  // namespace
}  // namespace meshid
