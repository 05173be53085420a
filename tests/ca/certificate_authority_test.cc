#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <algorithm>
#include <optional>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "ca/certificate_service.h"
#include "common/csr.h"
#include "common/logging.h"
#include "common/x509.h"
#include "tests/ca/fake_store.h"
#include "tests/support/fake_clock.h"
#include "tests/support/signing_authority.h"
#include "tests/support/status_matchers.h"

namespace meshid {
namespace {

using testing::FakeClock;
using testing::StatusIs;

constexpr char kId[] = "spiffe://cluster.local/ns/default/sa/sleep";

class CertificateAuthorityTest : public ::testing::Test {
 protected:
  CertificateAuthorityTest() {
    authority_ = testing::MakeAuthority(clock_, random_);
    token_key_ = *GenerateKey(KeyAlgorithm::kEcdsaP256);
    std::vector<JwtIssuer> issuers;
    issuers.push_back(JwtIssuer{"iss", *Jwks::FromPublicKey(token_key_.get(), "k"), {"istio-ca"}});
    authn_ = std::make_shared<CompositeAuthenticator>(
        std::make_unique<ClientCertAuthenticator>(
            std::make_shared<const AuthoritySource>(*CertIssuer::Create(authority_, clock_, random_)), "cluster.local",
            clock_),
        std::make_unique<JwtAuthenticator>("cluster.local", std::move(issuers), clock_));
    ca_ = Make(CertificateServiceOptions{}, /*with_store=*/false);
    creds_ = CredentialsOf("system:serviceaccount:default:sleep");
    key_ = *GenerateKey(KeyAlgorithm::kEcdsaP256);
    csr_ = *BuildCsrPem(key_.get());
  }

  // A token of the test issuer for `subject`, valid for an hour.
  CallerCredentials CredentialsOf(const std::string& subject) {
    CallerCredentials credentials;
    credentials.authorization = {"Bearer " + *SignJwt({{"iss", "iss"},
                                                       {"sub", subject},
                                                       {"aud", "istio-ca"},
                                                       {"exp", absl::ToUnixSeconds(clock_.Now() + absl::Hours(1))}},
                                                      token_key_.get(), "k")};
    return credentials;
  }

  std::unique_ptr<CertificateAuthority> Make(CertificateServiceOptions options, bool with_store,
                                             LoggerPtr logger = MakeNullLogger()) {
    if (with_store && !ledger_) ledger_ = std::make_unique<GroupCommitLedger>(issuances_, metrics_);
    return std::make_unique<CertificateAuthority>(
        options, *CertIssuer::Create(authority_, clock_, random_), authn_, with_store ? &registry_ : nullptr,
        with_store ? ledger_.get() : nullptr, clock_, metrics_, std::move(logger));
  }

  FakeClock clock_;
  OpenSslRandom random_;
  MetricsRegistry metrics_;
  testing::FakeIdentityRegistry registry_;
  testing::FakeIssuanceStore issuances_{registry_};
  std::unique_ptr<GroupCommitLedger> ledger_;
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
  EXPECT_NE(metrics_.RenderPrometheus().find("citadel_server_csr_sign_err_count{error=\"TTL_ERROR\"} 1"),
            std::string::npos);
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

class CertificateAuthorityStoreTest : public CertificateAuthorityTest {
 protected:
  double Metric(const std::string& name) { return metrics_.AddCounter(name, "").value(); }
};

TEST_F(CertificateAuthorityStoreTest, LedgerRecordsEveryIssuedCertificate) {
  auto ca = Make(CertificateServiceOptions{}, true);
  auto chain = ca->Sign(creds_, csr_, 0);
  ASSERT_TRUE(chain.ok()) << chain.status();
  auto leaf = *CertFromPem(chain->front());
  auto rows = *issuances_.ListIssuances(IssuanceQuery{});
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

TEST_F(CertificateAuthorityStoreTest, StoreDownMeansUnavailableAndNoCertificate) {
  auto ca = Make(CertificateServiceOptions{}, true);
  registry_.set_available(false);
  issuances_.set_available(false);
  auto result = ca->Sign(creds_, csr_, 0);
  EXPECT_TRUE(absl::IsUnavailable(result.status())) << result.status();
  EXPECT_EQ(ca->issued_count(), 0);
  EXPECT_EQ(issuances_.ledger_size(), 0u);
  registry_.set_available(true);
  issuances_.set_available(true);
  EXPECT_TRUE(ca->Sign(creds_, csr_, 0).ok()) << "recovers when the store returns";
}

TEST_F(CertificateAuthorityStoreTest, BlockedIdentityIsRefusedUntilUnblocked) {
  auto ca = Make(CertificateServiceOptions{}, true);
  ASSERT_TRUE(registry_.Block(kId, "key leaked", clock_.Now()).ok());
  auto result = ca->Sign(creds_, csr_, 0);
  EXPECT_TRUE(absl::IsPermissionDenied(result.status()));
  EXPECT_EQ(result.status().message(), std::string("identity ") + kId + " is blocked: key leaked");
  ASSERT_TRUE(registry_.Unblock(kId).ok());
  EXPECT_TRUE(ca->Sign(creds_, csr_, 0).ok());
}

TEST_F(CertificateAuthorityStoreTest, RequireRegistrationAndEntryRules) {
  CertificateServiceOptions options;
  options.require_registration = true;
  auto ca = Make(options, true);
  auto result = ca->Sign(creds_, csr_, 0);
  EXPECT_EQ(result.status().message(),
            std::string("identity ") + kId + " is not registered (the server requires registration)");

  RegistryEntry entry;
  entry.spiffe_id = kId;
  entry.allowed_auth = {"jwt-iss:someone-else"};
  ASSERT_TRUE(registry_.CreateEntry(entry).ok());
  result = ca->Sign(creds_, csr_, 0);
  EXPECT_TRUE(absl::IsPermissionDenied(result.status()));
  EXPECT_NE(std::string(result.status().message()).find("does not allow a caller with jwt iss=iss"), std::string::npos);

  entry.allowed_auth = {"client-cert", "jwt-sub:system:serviceaccount:default:sleep"};
  entry.max_ttl = absl::Hours(48);
  entry.dns_names = {"sleep.default.svc", "sleep.example.com"};
  ASSERT_TRUE(registry_.CreateEntry(entry).ok());
  auto chain = ca->Sign(creds_, csr_, 36 * 3600);
  ASSERT_TRUE(chain.ok()) << chain.status() << " (the entry raises the max TTL to 48h)";
  auto leaf = *CertFromPem(chain->front());
  EXPECT_EQ(DnsSans(leaf.get()), entry.dns_names);
  EXPECT_EQ(UriSans(leaf.get()), std::vector<std::string>{kId});
  EXPECT_EQ(NotAfter(leaf.get()), clock_.Now() + absl::Hours(36));
}

TEST_F(CertificateAuthorityStoreTest, ConcurrentRequestsShareCommits) {
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
  EXPECT_EQ(issuances_.ledger_size(), static_cast<size_t>(kThreads * kPerThread));
  EXPECT_LE(issuances_.commits(), kThreads * kPerThread);
}

TEST_F(CertificateAuthorityStoreTest, CachedStatusesSpareTheStoreARead) {
  auto ca = Make(CertificateServiceOptions{}, true);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(ca->Sign(creds_, csr_, 0).ok());
  EXPECT_EQ(registry_.status_reads(), 1);
  EXPECT_EQ(issuances_.ledger_size(), 5u);
}

// The status of the identity is cached when the block lands: the ledger write finds the
// registry moved on, drops the certificate, and the CA signs again under the new status.
TEST_F(CertificateAuthorityStoreTest, ABlockAfterTheStatusWasCachedIsHonouredByTheNextRequest) {
  auto ca = Make(CertificateServiceOptions{}, true);
  ASSERT_TRUE(ca->Sign(creds_, csr_, 0).ok());
  ASSERT_TRUE(registry_.Block(kId, "key leaked", clock_.Now()).ok());
  auto refused = ca->Sign(creds_, csr_, 0);
  EXPECT_TRUE(absl::IsPermissionDenied(refused.status())) << refused.status();
  EXPECT_EQ(refused.status().message(), std::string("identity ") + kId + " is blocked: key leaked");
  EXPECT_EQ(issuances_.ledger_size(), 1u) << "the certificate signed under the stale status is not recorded";
  EXPECT_EQ(ca->issued_count(), 1);
  EXPECT_EQ(Metric("meshid_ca_registry_changed_resigns"), 1);
  EXPECT_EQ(Metric("meshid_ca_identity_denied_count"), 1);

  // The refusal was cached too; the unblock is seen because a cached refusal is confirmed.
  ASSERT_TRUE(registry_.Unblock(kId).ok());
  EXPECT_TRUE(ca->Sign(creds_, csr_, 0).ok());
  EXPECT_EQ(issuances_.ledger_size(), 2u);
}

TEST_F(CertificateAuthorityStoreTest, ACachedEntryIsReplacedWhenTheRegistryChanges) {
  CertificateServiceOptions options;
  options.require_registration = true;
  auto ca = Make(options, true);
  RegistryEntry entry;
  entry.spiffe_id = kId;
  entry.dns_names = {"old.default.svc"};
  ASSERT_TRUE(registry_.CreateEntry(entry).ok());
  ASSERT_TRUE(ca->Sign(creds_, csr_, 0).ok());
  EXPECT_TRUE(absl::IsInvalidArgument(ca->Sign(creds_, csr_, 36 * 3600).status())) << "above the server's 24h";

  entry.dns_names = {"new.default.svc"};
  entry.max_ttl = absl::Hours(48);
  ASSERT_TRUE(registry_.CreateEntry(entry).ok());  // the fake replaces it
  auto chain = ca->Sign(creds_, csr_, 0);
  ASSERT_TRUE(chain.ok()) << chain.status();
  EXPECT_EQ(DnsSans(CertFromPem(chain->front())->get()), entry.dns_names) << "signed again under the new entry";
  EXPECT_TRUE(ca->Sign(creds_, csr_, 36 * 3600).ok()) << "the raised max TTL applies";

  ASSERT_TRUE(registry_.DeleteEntry(kId, "").ok());
  auto refused = ca->Sign(creds_, csr_, 0);
  EXPECT_TRUE(absl::IsPermissionDenied(refused.status())) << refused.status();
  EXPECT_EQ(issuances_.ledger_size(), 3u);
}

TEST_F(CertificateAuthorityStoreTest, ARegistryThatKeepsChangingEndsInUnavailable) {
  auto ca = Make(CertificateServiceOptions{}, true);
  ASSERT_TRUE(ca->Sign(creds_, csr_, 0).ok());
  // Every ledger write finds the registry one generation further on.
  issuances_.set_before_record(
      [this] { ASSERT_TRUE(registry_.Block("spiffe://cluster.local/ns/x/sa/other", "", clock_.Now()).ok()); });
  auto result = ca->Sign(creds_, csr_, 0);
  EXPECT_TRUE(absl::IsUnavailable(result.status())) << result.status();
  EXPECT_NE(std::string(result.status().message()).find("changed 3 times"), std::string::npos) << result.status();
  EXPECT_EQ(issuances_.ledger_size(), 1u);
  EXPECT_EQ(Metric("meshid_ca_registry_changed_resigns"), CertificateAuthority::kMaxRegistryAttempts);
}

// A node agent N minting the identity W of a workload on its node (ImpersonatedIdentity).
class ImpersonationTest : public CertificateAuthorityStoreTest {
 protected:
  static constexpr char kNode[] = "spiffe://cluster.local/ns/istio-system/sa/ztunnel";
  static constexpr char kOtherNode[] = "spiffe://cluster.local/ns/istio-system/sa/other-node";

  static std::optional<ImpersonatedIdentity> As(const std::string& id) { return ImpersonatedIdentity{id}; }
  static RegistryEntry EntryOf(const std::string& id, const std::string& parent, absl::Duration max_ttl = {},
                               std::vector<std::string> dns_names = {}) {
    RegistryEntry entry;
    entry.spiffe_id = id;
    entry.parent_id = parent;
    if (!parent.empty()) entry.selectors = {"unix:uid:1000"};
    entry.max_ttl = max_ttl;
    entry.dns_names = std::move(dns_names);
    return entry;
  }
  double Denied(const std::string& reason) {
    return metrics_.AddCounter("meshid_ca_impersonation_denied_total", "", {{"reason", reason}}).value();
  }
  // The request is refused as every refused impersonation is, and leaves nothing behind.
  void ExpectRefused(const CertificateAuthority& ca, const CallerCredentials& credentials,
                     const std::optional<ImpersonatedIdentity>& identity) {
    const double issued = ca.issued_count();
    const size_t recorded = issuances_.ledger_size();
    auto result = ca.Sign(credentials, csr_, 0, identity);
    EXPECT_TRUE(absl::IsUnauthenticated(result.status())) << result.status();
    EXPECT_EQ(result.status().message(), kImpersonationRefused);
    EXPECT_EQ(ca.issued_count(), issued);
    EXPECT_EQ(issuances_.ledger_size(), recorded);
  }

  CallerCredentials node_creds_ = CredentialsOf("system:serviceaccount:istio-system:ztunnel");
};

TEST_F(ImpersonationTest, TheParentNodeMintsTheIdentityAndTheLedgerSaysSo) {
  auto ca = Make(CertificateServiceOptions{}, true);
  ASSERT_TRUE(registry_.CreateEntry(EntryOf(kId, kNode, {}, {"sleep.default.svc"})).ok());
  CsrOptions for_workload;
  for_workload.uri_sans = {kId};
  for (const std::string& csr : {csr_, *BuildCsrPem(key_.get(), for_workload)}) {
    auto chain = ca->Sign(node_creds_, csr, 0, As(kId));
    ASSERT_TRUE(chain.ok()) << chain.status();
    auto leaf = *CertFromPem(chain->front());
    EXPECT_EQ(UriSans(leaf.get()), std::vector<std::string>{kId});
    EXPECT_EQ(DnsSans(leaf.get()), std::vector<std::string>{"sleep.default.svc"});
    EXPECT_TRUE(SamePublicKey(X509_get0_pubkey(leaf.get()), key_.get()));
  }
  auto rows = *issuances_.ListIssuances(IssuanceQuery{});
  ASSERT_EQ(rows.size(), 2u);
  for (const IssuanceRecord& r : rows) {
    EXPECT_EQ(r.spiffe_id, kId);
    EXPECT_EQ(r.auth_method, "jwt");
    EXPECT_EQ(r.auth_detail, "iss=iss sub=system:serviceaccount:istio-system:ztunnel") << "the node's authentication";
    EXPECT_EQ(r.minted_by, kNode);
  }

  // The workload asking for itself is unchanged: no minted_by, and the node entry is not its own.
  ASSERT_TRUE(ca->Sign(creds_, csr_, 0).ok());
  rows = *issuances_.ListIssuances(IssuanceQuery{});
  EXPECT_EQ(std::count_if(rows.begin(), rows.end(), [](const IssuanceRecord& r) { return r.minted_by.empty(); }), 1);
  EXPECT_EQ(Metric("citadel_server_authentication_failure_count"), 0);
}

TEST_F(ImpersonationTest, ANodeThatIsNotTheParentIsRefusedOpaquely) {
  auto ca = Make(CertificateServiceOptions{}, true);
  ASSERT_TRUE(registry_.CreateEntry(EntryOf(kId, kOtherNode)).ok());
  ASSERT_TRUE(registry_.CreateEntry(EntryOf(kId, "")).ok());  // a direct entry is no parent either
  ExpectRefused(*ca, node_creds_, As(kId));
  EXPECT_EQ(Denied("not_parent"), 1);
  EXPECT_EQ(Metric("citadel_server_authentication_failure_count"), 1);

  // An identity without any entry: the same answer, another reason. Without
  // --require-registration the workload itself would get it, the node never.
  const std::string unregistered = "spiffe://cluster.local/ns/default/sa/unregistered";
  ExpectRefused(*ca, node_creds_, As(unregistered));
  EXPECT_EQ(Denied("no_entry"), 1);
  EXPECT_EQ(Denied("not_parent"), 1);

  // The entry for this node, made after the refusals were cached, is seen at once.
  ASSERT_TRUE(registry_.CreateEntry(EntryOf(kId, kNode)).ok());
  EXPECT_TRUE(ca->Sign(node_creds_, csr_, 0, As(kId)).ok());
}

TEST_F(ImpersonationTest, ABlockedNodeOrIdentityIsRefusedUntilUnblocked) {
  auto ca = Make(CertificateServiceOptions{}, true);
  ASSERT_TRUE(registry_.CreateEntry(EntryOf(kId, kNode)).ok());
  ASSERT_TRUE(registry_.Block(kNode, "node compromised", clock_.Now()).ok());
  ExpectRefused(*ca, node_creds_, As(kId));
  EXPECT_EQ(Denied("blocked_node"), 1);
  ASSERT_TRUE(registry_.Unblock(kNode).ok());

  ASSERT_TRUE(registry_.Block(kId, "key leaked", clock_.Now()).ok());
  ExpectRefused(*ca, node_creds_, As(kId));
  EXPECT_EQ(Denied("blocked_identity"), 1);
  EXPECT_EQ(Metric("meshid_ca_identity_denied_count"), 0) << "counted as a refused impersonation only";
  ASSERT_TRUE(registry_.Unblock(kId).ok());
  EXPECT_TRUE(ca->Sign(node_creds_, csr_, 0, As(kId)).ok());
}

// Both statuses are cached when the node is blocked: the ledger write finds the registry moved
// on, the certificate is dropped, and the request is checked again.
TEST_F(ImpersonationTest, ABlockOfTheNodeAfterItsStatusWasCachedIsHonoured) {
  auto ca = Make(CertificateServiceOptions{}, true);
  ASSERT_TRUE(registry_.CreateEntry(EntryOf(kId, kNode)).ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(ca->Sign(node_creds_, csr_, 0, As(kId)).ok());
  EXPECT_EQ(registry_.status_reads(), 2) << "the node's and the identity's, once";
  ASSERT_TRUE(registry_.Block(kNode, "", clock_.Now()).ok());
  auto refused = ca->Sign(node_creds_, csr_, 0, As(kId));
  EXPECT_TRUE(absl::IsUnauthenticated(refused.status())) << refused.status();
  EXPECT_EQ(issuances_.ledger_size(), 3u);
  EXPECT_EQ(Metric("meshid_ca_registry_changed_resigns"), 1);
  EXPECT_EQ(Denied("blocked_node"), 1);
}

// The ledger check covers the node's status too: a change read for one of the two statuses only
// (the identity's cached, the node's read later at a newer generation) is not signed under.
TEST_F(ImpersonationTest, StatusesOfTwoGenerationsAreSignedAgain) {
  auto ca = Make(CertificateServiceOptions{}, true);
  ASSERT_TRUE(registry_.CreateEntry(EntryOf(kId, kNode)).ok());
  ASSERT_TRUE(ca->Sign(creds_, csr_, 0).ok());  // caches the identity's status alone
  ASSERT_TRUE(registry_.Block("spiffe://cluster.local/ns/x/sa/unrelated", "", clock_.Now()).ok());
  ASSERT_TRUE(ca->Sign(node_creds_, csr_, 0, As(kId)).ok());
  EXPECT_EQ(issuances_.ledger_size(), 2u);
  EXPECT_EQ(Metric("meshid_ca_registry_changed_resigns"), 1);
}

TEST_F(ImpersonationTest, MalformedIdentitiesAreRefusedBeforeTheRegistryIsRead) {
  auto ca = Make(CertificateServiceOptions{}, true);
  ASSERT_TRUE(registry_.CreateEntry(EntryOf(kId, kNode)).ok());
  const std::vector<ImpersonatedIdentity> malformed = {
      {.spiffe_id = "", .is_string = false},  // a number, a list, ... in the metadata
      {.spiffe_id = ""},
      {.spiffe_id = "sleep"},
      {.spiffe_id = "https://cluster.local/ns/default/sa/sleep"},
      {.spiffe_id = "spiffe://cluster.local"},
      {.spiffe_id = "spiffe://other.example/ns/default/sa/sleep"},
      {.spiffe_id = std::string(kId) + "\nissued certificate spiffe_id=forged"},
  };
  for (const ImpersonatedIdentity& identity : malformed) {
    SCOPED_TRACE(identity.spiffe_id);
    ExpectRefused(*ca, node_creds_, identity);
  }
  EXPECT_EQ(Denied("malformed"), malformed.size());
  EXPECT_EQ(registry_.status_reads(), 0);
}

// The caller is told nothing; the server's log says who asked for what and why it was refused,
// without letting the caller's text start a line of its own.
TEST_F(ImpersonationTest, TheLogSaysWhyAndWhoMinted) {
  std::ostringstream log;
  auto logger = std::make_shared<spdlog::logger>("test", std::make_shared<spdlog::sinks::ostream_sink_st>(log));
  logger->set_pattern("%v");
  auto ca = Make(CertificateServiceOptions{}, true, logger);
  ASSERT_TRUE(registry_.CreateEntry(EntryOf(kId, kNode)).ok());
  ASSERT_TRUE(registry_.Block(kNode, "node compromised", clock_.Now()).ok());
  EXPECT_FALSE(ca->Sign(node_creds_, csr_, 0, As(kId)).ok());
  EXPECT_FALSE(ca->Sign(node_creds_, csr_, 0, As("spiffe://cluster.local/a\nissued certificate")).ok());
  ASSERT_TRUE(registry_.Unblock(kNode).ok());
  ASSERT_TRUE(ca->Sign(node_creds_, csr_, 0, As(kId)).ok());

  std::vector<std::string> lines = absl::StrSplit(log.str(), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u) << log.str();
  EXPECT_EQ(lines[0], absl::StrCat("impersonation refused (blocked_node): ", kNode,
                                   " (jwt iss=iss sub=system:serviceaccount:istio-system:ztunnel) asked for \"", kId,
                                   "\": the node agent is blocked: node compromised"));
  EXPECT_THAT(lines[1], ::testing::HasSubstr("asked for \"spiffe://cluster.local/a\\x0aissued certificate\""));
  EXPECT_THAT(lines[2], ::testing::StartsWith(absl::StrCat("issued certificate spiffe_id=", kId, " serial=")));
  EXPECT_THAT(lines[2], ::testing::EndsWith(absl::StrCat(" minted by ", kNode)));
}

TEST_F(ImpersonationTest, ACsrForTheNodeInsteadOfTheIdentityIsRefused) {
  auto ca = Make(CertificateServiceOptions{}, true);
  ASSERT_TRUE(registry_.CreateEntry(EntryOf(kId, kNode)).ok());
  CsrOptions for_node;
  for_node.uri_sans = {kNode};
  auto result = ca->Sign(node_creds_, *BuildCsrPem(key_.get(), for_node), 0, As(kId));
  EXPECT_TRUE(absl::IsInvalidArgument(result.status())) << result.status();
  EXPECT_EQ(result.status().message(),
            absl::StrCat("CSR asks for URI SAN \"", kNode, "\" but the caller is authenticated as ", kId,
                         " (the ImpersonatedIdentity asked for by ", kNode, ")"));
  EXPECT_EQ(ca->issued_count(), 0);
  EXPECT_EQ(issuances_.ledger_size(), 0u);
}

TEST_F(ImpersonationTest, TheEntrysMaxTtlBoundsTheCertificate) {
  auto ca = Make(CertificateServiceOptions{}, true);
  ASSERT_TRUE(registry_.CreateEntry(EntryOf(kId, kNode, absl::Minutes(30))).ok());
  auto too_long = ca->Sign(node_creds_, csr_, 3600, As(kId));
  EXPECT_TRUE(absl::IsInvalidArgument(too_long.status())) << too_long.status();
  EXPECT_EQ(too_long.status().message(), "requested TTL 3600s is greater than the max allowed TTL 1800s");
  auto chain = ca->Sign(node_creds_, csr_, 0, As(kId));
  ASSERT_TRUE(chain.ok()) << chain.status();
  EXPECT_EQ(NotAfter(CertFromPem(chain->front())->get()), clock_.Now() + absl::Minutes(30))
      << "the default TTL, cut to the entry's maximum";

  // The entry of another node, or the direct entry, does not apply to this node's requests.
  ASSERT_TRUE(registry_.CreateEntry(EntryOf(kId, kOtherNode, absl::Hours(48))).ok());
  ASSERT_TRUE(registry_.CreateEntry(EntryOf(kId, "", absl::Hours(48))).ok());
  EXPECT_TRUE(absl::IsInvalidArgument(ca->Sign(node_creds_, csr_, 3600, As(kId)).status()));
  ASSERT_TRUE(registry_.CreateEntry(EntryOf(kId, kNode, absl::Hours(48))).ok());
  EXPECT_TRUE(ca->Sign(node_creds_, csr_, 36 * 3600, As(kId)).ok()) << "above the server's 24h";
}

TEST_F(ImpersonationTest, ATrustedNodeAccountMintsAnyRegisteredIdentity) {
  CertificateServiceOptions options;
  options.trusted_node_accounts = {*TrustedNodeAccountId("cluster.local", "istio-system/ztunnel")};
  auto ca = Make(options, true);
  ExpectRefused(*ca, node_creds_, As(kId));
  EXPECT_EQ(Denied("no_entry"), 1) << "even a trusted node account needs an entry";

  // An entry for another node: the server's limits, no DNS names.
  ASSERT_TRUE(registry_.CreateEntry(EntryOf(kId, kOtherNode, absl::Hours(48), {"other.default.svc"})).ok());
  auto chain = ca->Sign(node_creds_, csr_, 0, As(kId));
  ASSERT_TRUE(chain.ok()) << chain.status();
  EXPECT_TRUE(DnsSans(CertFromPem(chain->front())->get()).empty());
  EXPECT_TRUE(absl::IsInvalidArgument(ca->Sign(node_creds_, csr_, 36 * 3600, As(kId)).status()));

  // A direct entry: its limits and DNS names.
  ASSERT_TRUE(registry_.CreateEntry(EntryOf(kId, "", absl::Hours(48), {"sleep.default.svc"})).ok());
  chain = ca->Sign(node_creds_, csr_, 36 * 3600, As(kId));
  ASSERT_TRUE(chain.ok()) << chain.status();
  EXPECT_EQ(DnsSans(CertFromPem(chain->front())->get()), std::vector<std::string>{"sleep.default.svc"});
  auto rows = *issuances_.ListIssuances(IssuanceQuery{});
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].minted_by, kNode);

  // Another caller is not trusted.
  ExpectRefused(*ca, CredentialsOf("system:serviceaccount:default:other"), As(kId));
  EXPECT_EQ(Denied("not_parent"), 1);
}

TEST_F(ImpersonationTest, WithoutADatastoreNothingIsMinted) {
  CertificateServiceOptions options;
  options.trusted_node_accounts = {*TrustedNodeAccountId("cluster.local", "istio-system/ztunnel")};
  auto ca = Make(options, /*with_store=*/false);
  auto result = ca->Sign(node_creds_, csr_, 0, As(kId));
  EXPECT_TRUE(absl::IsUnauthenticated(result.status())) << result.status();
  EXPECT_EQ(Denied("no_entry"), 1);
  EXPECT_TRUE(ca->Sign(creds_, csr_, 0).ok()) << "direct requests are unchanged";
}

TEST_F(ImpersonationTest, NodeEntriesDoNotRegisterTheIdentityForItself) {
  CertificateServiceOptions options;
  options.require_registration = true;
  auto ca = Make(options, true);
  ASSERT_TRUE(registry_.CreateEntry(EntryOf(kId, kNode)).ok());
  auto result = ca->Sign(creds_, csr_, 0);
  EXPECT_TRUE(absl::IsPermissionDenied(result.status())) << result.status();
  EXPECT_EQ(result.status().message(),
            absl::StrCat("identity ", kId,
                         " has no direct registry entry, only entries for node agents (the server requires "
                         "registration)"));
  EXPECT_TRUE(ca->Sign(node_creds_, csr_, 0, As(kId)).ok());
}

TEST(ImpersonatedIdentityFromMetadata, ReadsIstiosFieldAndNoticesANonString) {
  google::protobuf::Struct metadata;
  EXPECT_FALSE(ImpersonatedIdentityFromMetadata(metadata).has_value());
  (*metadata.mutable_fields())["CertSigner"].set_string_value("signer");
  EXPECT_FALSE(ImpersonatedIdentityFromMetadata(metadata).has_value());
  (*metadata.mutable_fields())["ImpersonatedIdentity"].set_string_value(kId);
  auto identity = ImpersonatedIdentityFromMetadata(metadata);
  ASSERT_TRUE(identity.has_value());
  EXPECT_EQ(identity->spiffe_id, kId);
  EXPECT_TRUE(identity->is_string);
  (*metadata.mutable_fields())["ImpersonatedIdentity"].set_number_value(7);
  identity = ImpersonatedIdentityFromMetadata(metadata);
  ASSERT_TRUE(identity.has_value());
  EXPECT_FALSE(identity->is_string);
}

TEST(TrustedNodeAccountId, IsTheServiceAccountsSpiffeId) {
  EXPECT_EQ(TrustedNodeAccountId("cluster.local", "istio-system/ztunnel")->ToString(),
            "spiffe://cluster.local/ns/istio-system/sa/ztunnel");
  for (const char* bad : {"", "ztunnel", "/ztunnel", "istio-system/", "a/b/c", "istio system/ztunnel"}) {
    SCOPED_TRACE(bad);
    auto id = TrustedNodeAccountId("cluster.local", bad);
    EXPECT_TRUE(absl::IsInvalidArgument(id.status())) << id.status();
    EXPECT_NE(std::string(id.status().message()).find(absl::StrCat("\"", bad, "\"")), std::string::npos) << id.status();
  }
}

TEST(IdentityStatusCache, KeepsTheNewestGenerationAndForgetsOnRequest) {
  IdentityStatusCache cache(/*max_identities=*/3);
  auto at = [](int64_t generation, bool blocked = false) {
    IdentityStatus s;
    s.registry_generation = generation;
    if (blocked) s.blocked = BlockedIdentity{"a", "r", absl::UnixEpoch()};
    return s;
  };
  EXPECT_EQ(cache.Find("a"), nullptr);
  cache.Put("a", at(5));
  cache.Put("b", at(5));
  ASSERT_NE(cache.Find("a"), nullptr);
  EXPECT_EQ(cache.Find("a")->registry_generation, 5);

  cache.Put("c", at(4, true));  // read before the newest: not kept
  EXPECT_EQ(cache.Find("c"), nullptr);
  cache.Put("c", at(6));  // newer: everything older goes
  EXPECT_EQ(cache.Find("a"), nullptr);
  EXPECT_EQ(cache.Find("b"), nullptr);
  ASSERT_NE(cache.Find("c"), nullptr);

  cache.Forget(5);  // older than what is cached: nothing to forget
  EXPECT_NE(cache.Find("c"), nullptr);
  cache.Forget(6);
  EXPECT_EQ(cache.Find("c"), nullptr);
  cache.Put("c", at(6));  // a read that raced the change is not kept either
  EXPECT_EQ(cache.Find("c"), nullptr);
  cache.Put("c", at(7));
  EXPECT_NE(cache.Find("c"), nullptr);

  for (const char* id : {"d", "e", "f"}) cache.Put(id, at(7));  // bounded: the fourth starts afresh
  EXPECT_EQ(cache.Find("c"), nullptr);
  EXPECT_NE(cache.Find("f"), nullptr);
}

TEST(GroupCommitLedger, SeveralLeadersRecordEverythingExactlyOnce) {
  testing::FakeIdentityRegistry registry;
  testing::FakeIssuanceStore store(registry);
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
          // Half wait for the commit, half return once queued (or once the batch they led is
          // committed): a leader takes every record, and the destructor waits for the leaders.
          if (i % 2 == 0) {
            committed += ledger.Record(record).ok();
          } else {
            ledger.RecordAsync(ledger.ExpectRecord(), record, std::nullopt,
                               [&](absl::Status s) { committed += s.ok(); });
          }
        }
      });
    }
    for (auto& t : threads) t.join();
  }
  EXPECT_EQ(committed.load(), kThreads * kPerThread);
  EXPECT_EQ(store.ledger_size(), static_cast<size_t>(kThreads * kPerThread));
}

// Waiting for the signers without timing: with an interval of an hour, a queued record is
// committed once no expected record is outstanding, or when a batch is full. Everything runs
// on this thread: the caller that makes a commit due leads it.
TEST(GroupCommitLedger, ACommitWaitsForTheRecordsBeingSignedOrAFullBatch) {
  testing::FakeIdentityRegistry registry;
  testing::FakeIssuanceStore store(registry);
  MetricsRegistry metrics;
  constexpr int kBatch = 10;
  int committed = 0;
  auto count = [&](absl::Status s) { committed += s.ok(); };
  auto record = [](int i) { return IssuanceRecord{.serial_hex = absl::StrCat(i)}; };
  {
    GroupCommitLedger ledger(store, metrics, {.max_batch = kBatch, .writers = 1, .commit_interval = absl::Hours(1)});
    ASSERT_TRUE(ledger.Record(record(0)).ok()) << "an idle ledger commits at once";

    std::optional<GroupCommitLedger::Expectation> first(ledger.ExpectRecord());
    std::optional<GroupCommitLedger::Expectation> second(ledger.ExpectRecord());
    ledger.RecordAsync(ledger.ExpectRecord(), record(1), std::nullopt, count);
    ledger.RecordAsync(*std::move(first), record(2), std::nullopt, count);
    EXPECT_EQ(committed, 0) << "a certificate is still being signed";
    second.reset();  // that request failed: nothing more is coming
    EXPECT_EQ(committed, 2);

    std::optional<GroupCommitLedger::Expectation> slow(ledger.ExpectRecord());
    for (int i = 1; i < kBatch; ++i) ledger.RecordAsync(ledger.ExpectRecord(), record(10 + i), std::nullopt, count);
    EXPECT_EQ(committed, 2) << "nine records wait for the tenth";
    ledger.RecordAsync(*std::move(slow), record(10 + kBatch), std::nullopt, count);
    EXPECT_EQ(committed, 2 + kBatch);
  }
  EXPECT_EQ(store.batch_sizes(), (std::vector<size_t>{1, 2, kBatch}));
}

// A transaction never mixes registry generations: it is checked against one.
TEST(GroupCommitLedger, BatchesHoldOneRegistryGeneration) {
  testing::FakeIdentityRegistry registry;  // at generation 1
  testing::FakeIssuanceStore store(registry);
  MetricsRegistry metrics;
  int committed = 0, aborted = 0;
  auto count = [&](absl::Status s) {
    committed += s.ok();
    aborted += absl::IsAborted(s);
  };
  {
    GroupCommitLedger ledger(store, metrics, {.max_batch = 4, .writers = 1, .commit_interval = absl::Hours(1)});
    ASSERT_TRUE(ledger.Record(IssuanceRecord{.serial_hex = "0"}).ok());
    // Holds the commits back until the queue is full.
    std::optional<GroupCommitLedger::Expectation> more(ledger.ExpectRecord());
    ledger.RecordAsync(ledger.ExpectRecord(), IssuanceRecord{.serial_hex = "1"}, 1, count);
    ledger.RecordAsync(ledger.ExpectRecord(), IssuanceRecord{.serial_hex = "2"}, 1, count);
    ledger.RecordAsync(ledger.ExpectRecord(), IssuanceRecord{.serial_hex = "3"}, 0, count);
    EXPECT_EQ(committed + aborted, 0);
    ledger.RecordAsync(ledger.ExpectRecord(), IssuanceRecord{.serial_hex = "4"}, 0, count);  // full: commits
    EXPECT_EQ(committed + aborted, 2) << "generation 1's records; generation 0's wait for the rest";
    more.reset();
    EXPECT_EQ(committed + aborted, 4);
  }
  EXPECT_EQ(committed, 2);
  EXPECT_EQ(aborted, 2);
  EXPECT_EQ(store.batch_sizes(), (std::vector<size_t>{1, 2, 2}));
  EXPECT_EQ(store.ledger_size(), 3u);
}

// The signing limits (ca/signing_limiter.h) as the CA applies them.
class SigningLimitsTest : public ImpersonationTest {
 protected:
  double RateLimited(const std::string& reason) {
    return metrics_.AddCounter("meshid_ca_rate_limited_total", "", {{"reason", reason}}).value();
  }
  CallerCredentials other_creds_ = CredentialsOf("system:serviceaccount:default:other");
};

TEST_F(SigningLimitsTest, ACallerOverItsRateIsRefusedWithAHintWhileAnotherIsServed) {
  CertificateServiceOptions options;
  options.limits.rate_per_caller = 1;
  options.limits.burst_per_caller = 2;
  auto ca = Make(options, true);
  ASSERT_TRUE(ca->Sign(creds_, csr_, 0).ok());
  ASSERT_TRUE(ca->Sign(creds_, csr_, 0).ok());
  const int reads = registry_.status_reads();

  auto refused = ca->Sign(creds_, csr_, 0);
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kResourceExhausted,
                                absl::StrCat("signing rate limit: ", kId,
                                             " is over its limit of 1 certificates/s (burst 2); retry after 1000 ms")));
  EXPECT_EQ(RetryDelayOf(refused.status()), absl::Seconds(1));
  EXPECT_EQ(ca->issued_count(), 2) << "nothing signed";
  EXPECT_EQ(issuances_.ledger_size(), 2u) << "nothing recorded";
  EXPECT_EQ(RateLimited("caller_rate"), 1);

  ASSERT_TRUE(ca->Sign(other_creds_, csr_, 0).ok()) << "another caller has its own bucket";
  EXPECT_EQ(ca->issued_count(), 3);
  EXPECT_EQ(registry_.status_reads(), reads + 1) << "only the other caller's status was read";

  clock_.Advance(absl::Seconds(1));
  EXPECT_TRUE(ca->Sign(creds_, csr_, 0).ok()) << "served again once the hint has passed";
  EXPECT_THAT(ca->Sign(creds_, csr_, 0), StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(ca->issued_count(), 4);
  EXPECT_EQ(Metric("citadel_server_csr_count"), 6) << "refusals are requests received";
}

TEST_F(SigningLimitsTest, ANodeMintingOtherIdentitiesSpendsItsOwnBucket) {
  CertificateServiceOptions options;
  options.limits.rate_per_caller = 1;
  options.limits.burst_per_caller = 2;
  auto ca = Make(options, true);
  const std::string web = "spiffe://cluster.local/ns/default/sa/web";
  ASSERT_TRUE(registry_.CreateEntry(EntryOf(kId, kNode)).ok());
  ASSERT_TRUE(registry_.CreateEntry(EntryOf(web, kNode)).ok());
  ASSERT_TRUE(ca->Sign(node_creds_, csr_, 0, As(kId)).ok());
  ASSERT_TRUE(ca->Sign(node_creds_, csr_, 0, As(web)).ok());
  EXPECT_THAT(ca->Sign(node_creds_, csr_, 0, As(web)),
              StatusIs(absl::StatusCode::kResourceExhausted, ::testing::HasSubstr(kNode)))
      << "naming another workload gets the node no new bucket";
  EXPECT_THAT(ca->Sign(node_creds_, csr_, 0, As("spiffe://cluster.local/ns/default/sa/never-seen")),
              StatusIs(absl::StatusCode::kResourceExhausted))
      << "refused before its registry status is read";
  EXPECT_EQ(issuances_.ledger_size(), 2u);
  EXPECT_TRUE(ca->Sign(creds_, csr_, 0).ok()) << "the workload asking for itself has its own bucket";
}

TEST_F(SigningLimitsTest, EveryWayASigningEndsGivesItsSlotBack) {
  CertificateServiceOptions options;
  options.limits.max_concurrent = 1;
  auto ca = Make(options, true);
  // With one slot, a request is refused for concurrency if any earlier one kept its slot.
  auto expect_slot_free = [&](const char* after) {
    EXPECT_TRUE(ca->Sign(other_creds_, csr_, 0).ok()) << "after " << after;
  };
  registry_.set_available(false);
  EXPECT_THAT(ca->Sign(creds_, csr_, 0), StatusIs(absl::StatusCode::kUnavailable));
  registry_.set_available(true);
  expect_slot_free("the registry was down");

  issuances_.set_available(false);
  EXPECT_THAT(ca->Sign(creds_, csr_, 0), StatusIs(absl::StatusCode::kUnavailable));
  issuances_.set_available(true);
  expect_slot_free("the ledger was down");

  EXPECT_THAT(ca->Sign(creds_, "junk", 0), StatusIs(absl::StatusCode::kInvalidArgument));
  expect_slot_free("a bad CSR");
  EXPECT_THAT(ca->Sign(creds_, csr_, 86401), StatusIs(absl::StatusCode::kInvalidArgument));
  expect_slot_free("a TTL too long");

  ASSERT_TRUE(registry_.Block(kId, "", clock_.Now()).ok());  // the cached status is stale: signed, aborted, refused
  EXPECT_THAT(ca->Sign(creds_, csr_, 0), StatusIs(absl::StatusCode::kPermissionDenied));
  ASSERT_TRUE(registry_.Unblock(kId).ok());
  expect_slot_free("a block found at the ledger");

  EXPECT_THAT(ca->Sign(node_creds_, csr_, 0, As("not a SPIFFE ID")), StatusIs(absl::StatusCode::kUnauthenticated));
  expect_slot_free("a malformed impersonation");
  EXPECT_THAT(ca->Sign(node_creds_, csr_, 0, As(kId)), StatusIs(absl::StatusCode::kUnauthenticated));
  expect_slot_free("a refused impersonation");

  EXPECT_THAT(ca->Sign(CallerCredentials{}, csr_, 0), StatusIs(absl::StatusCode::kUnauthenticated));
  expect_slot_free("no credentials (refused before admission)");
  EXPECT_EQ(RateLimited("concurrency"), 0);
  EXPECT_EQ(ca->issued_count(), 8) << "the requests that checked for a free slot";
}

TEST_F(SigningLimitsTest, TheWaitForTheLedgerHoldsNoSlot) {
  CertificateServiceOptions options;
  options.limits.max_concurrent = 1;
  auto ca = Make(options, true);
  // While the first certificate is being committed, a second request is admitted and signed.
  std::optional<absl::Status> second;
  absl::Notification second_done;
  bool first = true;
  issuances_.set_before_record([&] {
    if (!std::exchange(first, false)) return;
    ca->SignAsync(other_creds_, csr_, 0, std::nullopt, [&](absl::StatusOr<std::vector<std::string>> chain) {
      second = chain.status();
      second_done.Notify();
    });
  });
  EXPECT_TRUE(ca->Sign(creds_, csr_, 0).ok());
  second_done.WaitForNotification();
  EXPECT_TRUE(second->ok()) << *second;
  EXPECT_EQ(issuances_.ledger_size(), 2u);
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
