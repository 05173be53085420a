// Live reload (ca/reloader.h) with files in a temporary directory, driven by RunOne() and a fake
// clock: a good new plug-in set switches the signing certificate (and the trust bundle, and
// leaves renewals by certificates of the old one working); a bad one (key, mismatch, chain,
// missing file, a set half written) keeps the old material and says why; the JWKS of a file and
// of a URL are replaced, refused and retried the same way.
#include "ca/reloader.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <filesystem>
#include <functional>
#include <sstream>

#include "ca/cert_issuer.h"
#include "common/files.h"
#include "common/jwt.h"
#include "common/keys.h"
#include "common/random.h"
#include "common/x509.h"
#include "tests/support/certs.h"
#include "tests/support/fake_clock.h"
#include "tests/support/status_matchers.h"
#include "tests/support/temp_dir.h"

namespace meshid {
namespace {

using ::meshid::testing::FakeClock;
using ::meshid::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kId[] = "spiffe://cluster.local/ns/default/sa/sleep";

// A root or an intermediate with its key.
struct Ca {
  EvpPkeyPtr key;
  X509Ptr cert;
};

class ReloaderTest : public ::testing::Test {
 protected:
  ReloaderTest() {
    logger_ = std::make_shared<spdlog::logger>("test", std::make_shared<spdlog::sinks::ostream_sink_mt>(log_));
    logger_->set_level(spdlog::level::info);
  }

  Ca MakeRoot() {
    Ca root{*GenerateKey(KeyAlgorithm::kEcdsaP256), nullptr};
    root.cert = *CreateSelfSignedRoot(root.key.get(), "cluster.local", absl::Hours(1000), clock_, random_);
    return root;
  }

  Ca MakeIntermediate(const Ca& root, const char* name) {
    Ca ca{*GenerateKey(KeyAlgorithm::kEcdsaP256), nullptr};
    testing::CertificateSpec spec;
    spec.ca = true;
    spec.common_name = name;
    spec.not_before = clock_.Now() - absl::Hours(1);
    spec.not_after = clock_.Now() + absl::Hours(100);
    auto cert = testing::SignCertificate(spec, ca.key.get(), root.cert.get(), root.key.get());
    EXPECT_TRUE(cert.ok()) << cert.status();
    ca.cert = *std::move(cert);
    return ca;
  }

  std::string CacertsFile(const char* name) const { return cacerts_ + "/" + name; }

  // Istio's layout for `ca` under `roots` (the first one is ca's), each file written atomically.
  void WritePlugin(const Ca& ca, const std::vector<const Ca*>& roots) {
    std::string root_pems;
    for (const Ca* r : roots) root_pems += CertToPem(r->cert.get());
    Write("ca-key.pem", PrivateKeyToPem(ca.key.get())->view());
    Write("ca-cert.pem", CertToPem(ca.cert.get()));
    Write("cert-chain.pem", CertToPem(ca.cert.get()) + CertToPem(roots.front()->cert.get()));
    Write("root-cert.pem", root_pems);
  }
  void Write(const char* name, absl::string_view content) {
    ASSERT_TRUE(WriteFileAtomic(CacertsFile(name), content, 0600).ok());
  }

  // The server's start: the material from the files, and their reloader.
  void Start() {
    auto files = ReadPluggedInFiles(cacerts_);
    ASSERT_OK(files.status());
    auto authority = ParsePluggedInAuthority(*files, clock_);
    ASSERT_OK(authority.status());
    ASSERT_OK(WriteTrustBundle(**authority, temp_dir_.path()));  // as the server does at start
    authorities_ = std::make_shared<AuthoritySource>(*CertIssuer::Create(*authority, clock_, random_));
    PluggedInCaReloaderOptions options;
    options.cacerts_dir = cacerts_;
    options.trust_bundle_file = trust_bundle_;
    options.approve_new_roots = approve_new_roots_;
    reloader_ = std::make_unique<PluggedInCaReloader>(options, *std::move(files), *authorities_, clock_, random_,
                                                      metrics_, logger_);
  }

  std::string SigningSerial() const { return authorities_->Current()->issuer->signing_serial_hex(); }

  // An SVID signed with the material in force, PEM.
  std::string Svid() {
    auto key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
    auto svid = authorities_->Current()->issuer->IssueSvid(*PublicKeyDer(key.get()), KeyAlgorithm::kEcdsaP256,
                                                           *SpiffeId::Parse(kId), absl::Hours(1));
    EXPECT_TRUE(svid.ok()) << svid.status();
    return svid.ok() ? svid->pem : "";
  }

  double Metric(const std::string& what, const std::string& result) const {
    const std::string series = absl::StrCat("meshid_ca_reload_total{result=\"", result, "\",what=\"", what, "\"} ");
    const std::string text = metrics_.RenderPrometheus();
    size_t at = text.find(series);
    return at == std::string::npos ? -1 : std::stod(text.substr(at + series.size()));
  }

  FakeClock clock_;
  OpenSslRandom random_;
  MetricsRegistry metrics_;
  std::ostringstream log_;
  LoggerPtr logger_;
  testing::TempDir temp_dir_{"reloader-test"};
  std::string cacerts_ = temp_dir_.path();
  std::string trust_bundle_ = temp_dir_.File("root-cert.pem");
  std::shared_ptr<AuthoritySource> authorities_;
  std::unique_ptr<PluggedInCaReloader> reloader_;
  std::function<absl::Status(const SigningAuthority&)> approve_new_roots_;  // set before Start()
};

TEST_F(ReloaderTest, UnchangedFilesAreNotReloaded) {
  Ca root = MakeRoot();
  Ca ca = MakeIntermediate(root, "first");
  WritePlugin(ca, {&root});
  Start();
  const std::string serial = SigningSerial();
  EXPECT_EQ(*reloader_->RunOne(), false);
  // Rewritten with the same content (a touch, an operator copying the same files again).
  WritePlugin(ca, {&root});
  EXPECT_EQ(*reloader_->RunOne(), false);
  EXPECT_EQ(SigningSerial(), serial);
  EXPECT_EQ(authorities_->Current()->generation, 0u);
  EXPECT_EQ(Metric("cacerts", "ok"), 0);
}

TEST_F(ReloaderTest, NewIntermediateSignsAndOldCertificatesStillRenew) {
  Ca root = MakeRoot();
  Ca first = MakeIntermediate(root, "first");
  WritePlugin(first, {&root});
  Start();
  const std::string old_svid = Svid();
  std::shared_ptr<const AuthoritySnapshot> before = authorities_->Current();

  Ca second = MakeIntermediate(root, "second");
  WritePlugin(second, {&root});
  EXPECT_EQ(*reloader_->RunOne(), true);
  EXPECT_EQ(SigningSerial(), SerialHex(second.cert.get()));
  EXPECT_EQ(authorities_->Current()->generation, 1u);
  EXPECT_EQ(*ReadFile(trust_bundle_), CertToPem(root.cert.get()));
  EXPECT_EQ(Metric("cacerts", "ok"), 1);
  EXPECT_THAT(log_.str(), HasSubstr("reloaded: signing cert serial " + SerialHex(second.cert.get())));
  // A request that took its snapshot before the reload finishes with it.
  EXPECT_EQ(before->issuer->signing_serial_hex(), SerialHex(first.cert.get()));

  // New certificates chain through the new intermediate, and the chain handed out says so.
  auto leaf = CertFromPem(Svid());
  ASSERT_OK(leaf.status());
  EXPECT_OK(VerifyCertChain(leaf->get(), {second.cert.get()}, {root.cert.get()}, clock_.Now()));
  EXPECT_FALSE(VerifyCertChain(leaf->get(), {first.cert.get()}, {root.cert.get()}, clock_.Now()).ok());
  EXPECT_EQ(authorities_->Current()->authority().chain_pems.front(), CertToPem(second.cert.get()));

  // A workload renewing with the certificate it got before the rotation (the leaf alone, as
  // istio-agent sends it) is still this CA's: its root is in the bundle.
  ClientCertAuthenticator authenticator(authorities_, "cluster.local", clock_);
  CallerCredentials credentials;
  credentials.peer_cert_pem = old_svid;
  auto caller = authenticator.Authenticate(credentials);
  ASSERT_OK(caller.status());
  EXPECT_EQ(caller->id.ToString(), kId);
}

TEST_F(ReloaderTest, ANewRootReplacesTheOldOneOnlyWhileBothAreInTheBundle) {
  Ca root = MakeRoot();
  Ca first = MakeIntermediate(root, "first");
  WritePlugin(first, {&root});
  Start();
  const std::string old_svid = Svid();
  ClientCertAuthenticator authenticator(authorities_, "cluster.local", clock_);
  CallerCredentials credentials;
  credentials.peer_cert_pem = old_svid;

  // Istio's root rotation: the new root first, both in root-cert.pem.
  Ca new_root = MakeRoot();
  Ca second = MakeIntermediate(new_root, "second");
  WritePlugin(second, {&new_root, &root});
  EXPECT_EQ(*reloader_->RunOne(), true);
  EXPECT_EQ(*ReadFile(trust_bundle_), CertToPem(new_root.cert.get()) + CertToPem(root.cert.get()));
  EXPECT_OK(authenticator.Authenticate(credentials).status());

  // Then the old root leaves: its certificates no longer authenticate, and the log warns.
  WritePlugin(second, {&new_root});
  EXPECT_EQ(*reloader_->RunOne(), true);
  EXPECT_THAT(authenticator.Authenticate(credentials),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("not a valid certificate of this CA")));
  EXPECT_THAT(log_.str(),
              HasSubstr("root-cert.pem no longer holds the root with serial " + SerialHex(root.cert.get())));
}

// The replicas' record in the store is asked only when the roots change, and may refuse them
// (daemons/server.cc wires ca/shared_ca.h here).
TEST_F(ReloaderTest, NewRootsAreUsedOnlyOnceApproved) {
  Ca root = MakeRoot();
  Ca first = MakeIntermediate(root, "first");
  WritePlugin(first, {&root});
  std::vector<size_t> asked;  // the number of roots of each set asked about
  absl::Status answer = absl::OkStatus();
  approve_new_roots_ = [&](const SigningAuthority& next) {
    asked.push_back(next.roots.size());
    return answer;
  };
  Start();
  // A new intermediate under the same root: nothing to ask.
  Ca second = MakeIntermediate(root, "second");
  WritePlugin(second, {&root});
  EXPECT_EQ(*reloader_->RunOne(), true);
  EXPECT_TRUE(asked.empty());

  // Another root, refused: the old material and its trust bundle stay.
  Ca other_root = MakeRoot();
  Ca third = MakeIntermediate(other_root, "third");
  WritePlugin(third, {&other_root});
  answer = absl::FailedPreconditionError("this server's CA shares no root with the one the store records");
  EXPECT_THAT(reloader_->RunOne(), StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("shares no root")));
  EXPECT_EQ(asked, std::vector<size_t>{1});
  EXPECT_EQ(SigningSerial(), SerialHex(second.cert.get()));
  EXPECT_EQ(authorities_->Current()->authority().root_bundle_pem, CertToPem(root.cert.get()));
  EXPECT_EQ(Metric("cacerts", "refused"), 1);

  // Both roots, approved: taken.
  WritePlugin(third, {&other_root, &root});
  answer = absl::OkStatus();
  EXPECT_EQ(*reloader_->RunOne(), true);
  EXPECT_EQ(asked, (std::vector<size_t>{1, 2}));
  EXPECT_EQ(SigningSerial(), SerialHex(third.cert.get()));
}

TEST_F(ReloaderTest, BadSetsAreRefusedAndTheOldMaterialStays) {
  Ca root = MakeRoot();
  Ca first = MakeIntermediate(root, "first");
  WritePlugin(first, {&root});
  Start();
  const std::string serial = SigningSerial();
  const std::string bundle = *ReadFile(trust_bundle_);
  Ca foreign_root = MakeRoot();
  Ca foreign = MakeIntermediate(foreign_root, "foreign");
  Ca second = MakeIntermediate(root, "second");

  struct Case {
    std::string name;
    std::function<void()> write;
    std::string message;
  } cases[] = {
      {"an unparseable key", [&] { Write("ca-key.pem", "-----BEGIN PRIVATE KEY-----\ngarbage\n"); },
       CacertsFile("ca-key.pem") + ": "},
      {"a key that does not match the certificate",
       [&] { Write("ca-key.pem", PrivateKeyToPem(second.key.get())->view()); },
       CacertsFile("ca-key.pem") + ": private key does not match the certificate in " + CacertsFile("ca-cert.pem")},
      {"a certificate that does not chain to the root",
       [&] {
         Write("ca-key.pem", PrivateKeyToPem(foreign.key.get())->view());
         Write("ca-cert.pem", CertToPem(foreign.cert.get()));
         Write("cert-chain.pem", CertToPem(foreign.cert.get()));
       },
       CacertsFile("ca-cert.pem") + ": does not chain through " + CacertsFile("cert-chain.pem") + " to a root in " +
           CacertsFile("root-cert.pem")},
      {"a missing file", [&] { std::filesystem::remove(CacertsFile("cert-chain.pem")); },
       "incomplete plug-in CA bundle: missing " + CacertsFile("cert-chain.pem")},
      {"an unparseable certificate", [&] { Write("ca-cert.pem", "not a certificate"); }, CacertsFile("ca-cert.pem")},
  };
  double refused = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    WritePlugin(first, {&root});
    c.write();
    EXPECT_THAT(reloader_->RunOne(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)));
    EXPECT_EQ(SigningSerial(), serial);
    EXPECT_EQ(authorities_->Current()->generation, 0u);
    EXPECT_EQ(*ReadFile(trust_bundle_), bundle) << "the trust bundle is untouched";
    EXPECT_EQ(Metric("cacerts", "refused"), ++refused);
    EXPECT_THAT(log_.str(),
                HasSubstr("refusing the new files, still signing with serial " + serial + ": " + c.message));
    // The same refusal again is neither logged nor counted again.
    const size_t logged = log_.str().size();
    EXPECT_FALSE(reloader_->RunOne().ok());
    EXPECT_EQ(log_.str().size(), logged);
    EXPECT_EQ(Metric("cacerts", "refused"), refused);
  }
  // Back to the files in force: nothing to reload, and the log says the files are good again.
  WritePlugin(first, {&root});
  EXPECT_EQ(*reloader_->RunOne(), false);
  EXPECT_THAT(log_.str(), HasSubstr("the files hold the material in force again"));
  EXPECT_EQ(Metric("cacerts", "ok"), 0);
}

// The four files are not replaced together: a poll between two writes sees a set that does not
// hold together, refuses it, and takes it once it is whole.
TEST_F(ReloaderTest, ASetWrittenFileByFileIsTakenWhenWhole) {
  Ca root = MakeRoot();
  Ca first = MakeIntermediate(root, "first");
  WritePlugin(first, {&root});
  Start();
  const std::string serial = SigningSerial();
  Ca second = MakeIntermediate(root, "second");

  Write("ca-cert.pem", CertToPem(second.cert.get()));
  EXPECT_THAT(reloader_->RunOne(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("does not match")));
  EXPECT_EQ(SigningSerial(), serial);
  Write("ca-key.pem", PrivateKeyToPem(second.key.get())->view());
  // cert-chain.pem still holds the old intermediate: not on the new certificate's path.
  EXPECT_THAT(reloader_->RunOne(), StatusIs(absl::StatusCode::kInvalidArgument,
                                            HasSubstr(CacertsFile("cert-chain.pem") + ": holds 1 certificate(s) that "
                                                                                      "are not on the path from")));
  EXPECT_EQ(SigningSerial(), serial);
  Write("cert-chain.pem", CertToPem(second.cert.get()) + CertToPem(root.cert.get()));
  EXPECT_EQ(*reloader_->RunOne(), true);
  EXPECT_EQ(SigningSerial(), SerialHex(second.cert.get()));
}

class JwksReloaderTest : public ReloaderTest {
 protected:
  static constexpr char kIssuer[] = "https://idp.example";

  JwksReloaderTest() {
    key1_ = *GenerateKey(KeyAlgorithm::kEcdsaP256);
    key2_ = *GenerateKey(KeyAlgorithm::kEcdsaP256);
    std::vector<JwtIssuer> issuers;
    issuers.push_back(JwtIssuer{kIssuer, Jwks(), {"istio-ca"}});
    authenticator_ = std::make_unique<JwtAuthenticator>("cluster.local", std::move(issuers), clock_);
  }

  std::string JwksOf(std::vector<std::pair<EVP_PKEY*, std::string>> keys) {
    nlohmann::json all = nlohmann::json::array();
    for (const auto& [key, kid] : keys)
      all.push_back(nlohmann::json::parse(Jwks::FromPublicKey(key, kid)->ToJson())["keys"][0]);
    return nlohmann::json{{"keys", all}}.dump();
  }

  absl::Status Authenticate(EVP_PKEY* key, const std::string& kid) {
    CallerCredentials credentials;
    credentials.authorization = {"Bearer " + *SignJwt({{"iss", kIssuer},
                                                       {"sub", "system:serviceaccount:default:sleep"},
                                                       {"aud", "istio-ca"},
                                                       {"exp", absl::ToUnixSeconds(clock_.Now() + absl::Hours(1))}},
                                                      key, kid)};
    return authenticator_->Authenticate(credentials).status();
  }

  absl::StatusOr<std::unique_ptr<JwksReloader>> Create(const std::string& location, FetchDocument fetch = nullptr) {
    JwksReloaderOptions options;
    options.issuers.push_back({kIssuer, location});
    options.url_refresh_interval = absl::Minutes(5);
    if (!fetch)
      fetch = [](const std::string& url) -> absl::StatusOr<std::string> {
        return absl::UnavailableError(url + ": no network in this test");
      };
    return JwksReloader::Create(options, *authenticator_, fetch, clock_, random_, metrics_, logger_);
  }

  EvpPkeyPtr key1_, key2_;
  std::unique_ptr<JwtAuthenticator> authenticator_;
};

TEST_F(JwksReloaderTest, FileGainsAndLosesKeys) {
  const std::string file = testing::WriteTestFile(temp_dir_.File("jwks.json"), JwksOf({{key1_.get(), "k1"}}));
  auto reloader = Create(file);
  ASSERT_OK(reloader.status());
  EXPECT_OK(Authenticate(key1_.get(), "k1"));
  EXPECT_TRUE(Authenticate(key1_.get(), "k1").ok()) << "from the cache";
  EXPECT_FALSE(Authenticate(key2_.get(), "k2").ok()) << "not in the JWKS yet";
  EXPECT_OK((*reloader)->RunOne());
  EXPECT_EQ(Metric("jwks", "ok"), 0) << "unchanged";

  // The file gains k2 and loses k1 (written in place, as an editor would).
  testing::WriteTestFile(file, JwksOf({{key2_.get(), "k2"}}));
  EXPECT_OK((*reloader)->RunOne());
  EXPECT_OK(Authenticate(key2_.get(), "k2"));
  EXPECT_FALSE(Authenticate(key1_.get(), "k1").ok()) << "a removed key is refused, cached token or not";
  EXPECT_EQ(Metric("jwks", "ok"), 1);
  EXPECT_THAT(log_.str(), HasSubstr("--jwt-issuer https://idp.example: keys reloaded from " + file + ": k2"));
}

TEST_F(JwksReloaderTest, GarbageOrMissingFileKeepsTheKeys) {
  const std::string file = testing::WriteTestFile(temp_dir_.File("jwks.json"), JwksOf({{key1_.get(), "k1"}}));
  auto reloader = Create(file);
  ASSERT_OK(reloader.status());

  testing::WriteTestFile(file, "{\"keys\": [");
  EXPECT_THAT((*reloader)->RunOne(), StatusIs(absl::StatusCode::kInvalidArgument,
                                              HasSubstr("--jwt-issuer https://idp.example: " + file + ": ")));
  EXPECT_OK(Authenticate(key1_.get(), "k1"));
  EXPECT_EQ(Metric("jwks", "refused"), 1);
  EXPECT_THAT(log_.str(), HasSubstr("keeping the keys in force"));

  testing::WriteTestFile(file, "{\"keys\": []}");
  EXPECT_THAT((*reloader)->RunOne(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(file)));
  EXPECT_EQ(Metric("jwks", "refused"), 2);

  std::filesystem::remove(file);
  EXPECT_THAT((*reloader)->RunOne(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(file)));
  EXPECT_OK(Authenticate(key1_.get(), "k1"));
  EXPECT_EQ(Metric("jwks", "refused"), 3);
}

TEST_F(JwksReloaderTest, ABrokenFileFailsTheStart) {
  EXPECT_THAT(Create(temp_dir_.File("missing.json")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--jwt-issuer https://idp.example: " + temp_dir_.File("missing.json") + ": ")));
  const std::string file = testing::WriteTestFile(temp_dir_.File("bad.json"), "not json");
  EXPECT_THAT(Create(file),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--jwt-issuer https://idp.example: " + file)));
}

TEST_F(JwksReloaderTest, UrlIsFetchedAtStartAndAtTheRefreshInterval) {
  int fetches = 0;
  absl::StatusOr<std::string> answer = absl::UnavailableError("https://idp.example/jwks: connection refused");
  auto fetch = [&](const std::string& url) -> absl::StatusOr<std::string> {
    EXPECT_EQ(url, "https://idp.example/jwks");
    ++fetches;
    return answer;
  };
  // The identity provider is down while the CA starts: it starts, without keys for the issuer.
  auto reloader = Create("https://idp.example/jwks", fetch);
  ASSERT_OK(reloader.status());
  EXPECT_EQ(fetches, 1);
  EXPECT_FALSE(Authenticate(key1_.get(), "k1").ok());
  EXPECT_EQ(Metric("jwks", "failed"), 1);
  EXPECT_THAT(log_.str(), HasSubstr("connection refused; no keys for this issuer until a fetch succeeds"));

  // Retried sooner than the refresh interval, with backoff.
  answer = JwksOf({{key1_.get(), "k1"}});
  EXPECT_OK((*reloader)->RunOne());
  EXPECT_EQ(fetches, 1) << "not due yet";
  clock_.Advance(JwksReloader::kRetryInitial * 1.5);
  EXPECT_OK((*reloader)->RunOne());
  EXPECT_EQ(fetches, 2);
  EXPECT_OK(Authenticate(key1_.get(), "k1"));

  // A new key appears at the identity provider: taken at the next refresh, not before.
  answer = JwksOf({{key1_.get(), "k1"}, {key2_.get(), "k2"}});
  clock_.Advance(absl::Minutes(4));
  EXPECT_OK((*reloader)->RunOne());
  EXPECT_EQ(fetches, 2);
  EXPECT_FALSE(Authenticate(key2_.get(), "k2").ok());
  clock_.Advance(absl::Minutes(1));
  EXPECT_OK((*reloader)->RunOne());
  EXPECT_EQ(fetches, 3);
  EXPECT_OK(Authenticate(key2_.get(), "k2"));

  // A failed fetch or a bad document keeps the keys.
  answer = absl::UnavailableError("https://idp.example/jwks: HTTP 503");
  clock_.Advance(absl::Minutes(5));
  EXPECT_THAT((*reloader)->RunOne(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("HTTP 503")));
  EXPECT_OK(Authenticate(key2_.get(), "k2"));
  EXPECT_EQ(Metric("jwks", "failed"), 2);
  answer = std::string("<html>");
  clock_.Advance(absl::Minutes(5));
  EXPECT_FALSE((*reloader)->RunOne().ok());
  EXPECT_OK(Authenticate(key2_.get(), "k2"));
  EXPECT_EQ(Metric("jwks", "refused"), 1);
}

}  // namespace
}  // namespace meshid
