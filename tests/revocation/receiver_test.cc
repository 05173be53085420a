// The agent's CrlReceiver with real OpenSSL objects: CRLs built by ca/crl_builder for a root in
// the trust bundle file (meshid's self-signed layout) and for an intermediate under it (Istio's
// plug-in CA layout), checked, refused with the reason while the last good CRL stays, kept in the
// state file and enforced again by the next receiver. A fake clock moves time; nothing sleeps.
#include "revocation/receiver.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "ca/crl_builder.h"
#include "common/files.h"
#include "common/keys.h"
#include "common/pem.h"
#include "common/x509.h"
#include "revocation/wire.h"
#include "tests/support/certs.h"
#include "tests/support/fake_clock.h"
#include "tests/support/status_matchers.h"
#include "tests/support/temp_dir.h"

namespace meshid::revocation {
namespace {

using meshid::revocation::v1::RevocationList;
using ::meshid::testing::CertificateSpec;
using ::meshid::testing::FakeClock;
using ::meshid::testing::StatusIs;
using ::meshid::testing::TempDir;
using ::meshid::testing::TestCa;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

// The value of the unlabelled series `name` as the monitoring endpoint renders it.
std::string Metric(const MetricsRegistry& metrics, absl::string_view name) {
  for (absl::string_view line : absl::StrSplit(metrics.RenderPrometheus(), '\n')) {
    if (absl::ConsumePrefix(&line, name) && absl::ConsumePrefix(&line, " ")) return std::string(line);
  }
  return "<absent>";
}

// A CA certificate and its key (the root of a TestCa, or an intermediate).
struct Issuer {
  X509* cert;
  EVP_PKEY* key;
};

class CrlReceiverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = NewCa("meshid root");
    ASSERT_TRUE(root_.has_value());
    bundle_ = dir_.Write("root-cert.pem", root_->cert_pem());
  }

  // A self-signed CA valid around the fake clock's now.
  std::optional<TestCa> NewCa(const std::string& organization) {
    TestCa::Options options;
    options.organization = organization;
    options.not_before = clock_.Now() - absl::Hours(1);
    options.not_after = clock_.Now() + absl::Hours(24 * 365);
    auto ca = TestCa::Create(options);
    EXPECT_OK(ca.status());
    if (!ca.ok()) return std::nullopt;
    return *std::move(ca);
  }

  // An intermediate CA signed by `parent` (Istio's plug-in layout), owned by the fixture.
  Issuer NewIntermediate(const TestCa& parent, const std::string& organization = "meshid intermediate") {
    auto key = GenerateKey(KeyAlgorithm::kEcdsaP256);
    EXPECT_OK(key.status());
    CertificateSpec spec;
    spec.ca = true;
    spec.organization = organization;
    spec.not_before = clock_.Now() - absl::Hours(1);
    spec.not_after = clock_.Now() + absl::Hours(24 * 365);
    auto cert = parent.Sign(spec, key->get());
    EXPECT_OK(cert.status());
    keys_.push_back(*std::move(key));
    certs_.push_back(*std::move(cert));
    return Issuer{certs_.back().get(), keys_.back().get()};
  }

  Issuer Root() const { return Issuer{root_->cert(), root_->key()}; }

  // A CRL of `issuer` listing `serials`, valid [this_update, next_update).
  std::string Crl(Issuer issuer, int64_t number, const std::vector<std::string>& serials,
                  std::optional<absl::Time> this_update = std::nullopt,
                  std::optional<absl::Time> next_update = std::nullopt) {
    std::vector<RevocationRecord> revocations;
    for (const auto& serial : serials) {
      revocations.push_back(RevocationRecord{serial, "spiffe://cluster.local/ns/default/sa/web", SerialHex(issuer.cert),
                                             clock_.Now() + absl::Hours(24 * 30), RevocationReason::kKeyCompromise,
                                             "ops@host", clock_.Now() - absl::Minutes(5)});
    }
    CrlContents contents{number, this_update.value_or(clock_.Now() - absl::Minutes(1)),
                         next_update.value_or(clock_.Now() + absl::Hours(24))};
    auto der = BuildCrl(issuer.cert, issuer.key, revocations, contents);
    EXPECT_OK(der.status());
    return der.ok() ? *der : std::string();
  }

  static RevocationList List(const std::string& crl_der, int64_t number, const std::vector<X509*>& chain = {}) {
    RevocationList list;
    list.set_crl_der(crl_der);
    for (X509* cert : chain) list.add_issuer_chain_der(CertToDer(cert));
    list.set_crl_number(number);
    return list;
  }

  std::unique_ptr<CrlReceiver> NewReceiver(MetricsRegistry& metrics, const std::string& state_file = "") {
    CrlReceiverOptions options;
    options.trust_bundle_file = bundle_;
    options.state_file = state_file;
    auto receiver = CrlReceiver::Create(options, clock_, metrics, MakeNullLogger(),
                                        [this](const std::shared_ptr<const NodeCrl>& crl) { heard_.push_back(crl); });
    EXPECT_OK(receiver.status());
    return receiver.ok() ? *std::move(receiver) : nullptr;
  }

  // A receiver with CRL number 5 of the root (two entries) in force.
  std::unique_ptr<CrlReceiver> ReceiverWithCrl5(const std::string& state_file = "") {
    auto receiver = NewReceiver(metrics_, state_file);
    if (receiver == nullptr) return nullptr;
    EXPECT_OK(receiver->Apply(List(Crl(Root(), 5, {"0A01", "0A02"}), 5)));
    EXPECT_THAT(heard_, SizeIs(1));
    return receiver;
  }

  // `list` is refused with `message` and CRL number 5 stays in force, the listener not called.
  void ExpectRefusedAndKept(CrlReceiver& receiver, const RevocationList& list, const std::string& message) {
    const std::string rejected_before = Metric(metrics_, "meshid_agent_crl_rejected_total");
    EXPECT_THAT(receiver.Apply(list), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(message)));
    ASSERT_NE(receiver.current(), nullptr);
    EXPECT_EQ(receiver.current()->number, 5);
    EXPECT_EQ(receiver.current()->issuer_serial_hex, SerialHex(root_->cert()));
    EXPECT_THAT(heard_, SizeIs(1));
    EXPECT_EQ(Metric(metrics_, "meshid_agent_crl_number"), "5");
    EXPECT_EQ(Metric(metrics_, "meshid_agent_crl_entries"), "2");
    EXPECT_EQ(Metric(metrics_, "meshid_agent_crl_updates_total"), "1");
    EXPECT_EQ(Metric(metrics_, "meshid_agent_crl_rejected_total"), absl::StrCat(std::stoi(rejected_before) + 1));
  }

  FakeClock clock_;
  TempDir dir_;
  MetricsRegistry metrics_;
  std::optional<TestCa> root_;
  std::string bundle_;
  std::vector<EvpPkeyPtr> keys_;
  std::vector<X509Ptr> certs_;
  std::vector<std::shared_ptr<const NodeCrl>> heard_;
};

TEST_F(CrlReceiverTest, CreateNeedsTheTrustBundleFile) {
  auto receiver = CrlReceiver::Create(CrlReceiverOptions{}, clock_, metrics_, MakeNullLogger(), nullptr);
  EXPECT_THAT(receiver, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("trust_bundle_file")));
}

TEST_F(CrlReceiverTest, NothingIsInForceBeforeTheFirstCrl) {
  auto receiver = NewReceiver(metrics_);
  ASSERT_NE(receiver, nullptr);
  EXPECT_EQ(receiver->current(), nullptr);
  EXPECT_THAT(heard_, IsEmpty());
  EXPECT_EQ(Metric(metrics_, "meshid_agent_crl_number"), "0");
  EXPECT_EQ(Metric(metrics_, "meshid_agent_crl_entries"), "0");
  EXPECT_EQ(Metric(metrics_, "meshid_agent_crl_age_seconds"), "NaN");
  EXPECT_EQ(Metric(metrics_, "meshid_agent_crl_updates_total"), "0");
  EXPECT_EQ(Metric(metrics_, "meshid_agent_crl_rejected_total"), "0");
}

// meshid's own CA: the CRL is signed by the root of the bundle and carries no chain.
TEST_F(CrlReceiverTest, SelfSignedLayoutIsApplied) {
  auto leaf_pem = root_->Leaf({"spiffe://cluster.local/ns/default/sa/web"});
  ASSERT_OK(leaf_pem.status());
  auto leaf = CertFromPem(leaf_pem->cert);
  ASSERT_OK(leaf.status());
  auto other_pem = root_->Leaf({"spiffe://cluster.local/ns/default/sa/db"});
  ASSERT_OK(other_pem.status());
  auto other = CertFromPem(other_pem->cert);
  ASSERT_OK(other.status());

  auto receiver = NewReceiver(metrics_);
  ASSERT_NE(receiver, nullptr);
  const std::string der = Crl(Root(), 5, {SerialHex(leaf->get()), "0A02"});
  ASSERT_OK(receiver->Apply(List(der, 5)));

  ASSERT_THAT(heard_, SizeIs(1));
  EXPECT_EQ(heard_[0]->number, 5);
  EXPECT_EQ(heard_[0]->index->size(), 2u);
  EXPECT_EQ(heard_[0], receiver->current());
  const NodeCrl& crl = *receiver->current();
  EXPECT_EQ(crl.der, der);
  EXPECT_EQ(crl.pem, CrlDerToPem(der));
  EXPECT_THAT(crl.issuer_chain_der, IsEmpty());
  EXPECT_EQ(crl.issuer_serial_hex, SerialHex(root_->cert()));
  EXPECT_EQ(crl.this_update, clock_.Now() - absl::Minutes(1));
  EXPECT_EQ(crl.next_update, clock_.Now() + absl::Hours(24));
  EXPECT_TRUE(crl.index->IsRevoked(leaf->get()));
  EXPECT_FALSE(crl.index->IsRevoked(other->get()));

  EXPECT_EQ(Metric(metrics_, "meshid_agent_crl_number"), "5");
  EXPECT_EQ(Metric(metrics_, "meshid_agent_crl_entries"), "2");
  EXPECT_EQ(Metric(metrics_, "meshid_agent_crl_updates_total"), "1");
  EXPECT_EQ(Metric(metrics_, "meshid_agent_crl_rejected_total"), "0");
  EXPECT_EQ(Metric(metrics_, "meshid_agent_crl_age_seconds"), "60");
  clock_.Advance(absl::Seconds(90));
  EXPECT_EQ(Metric(metrics_, "meshid_agent_crl_age_seconds"), "150");

  // A newer number replaces it; so does the same number re-signed for a later nextUpdate.
  ASSERT_OK(receiver->Apply(List(Crl(Root(), 6, {"0A02"}), 6)));
  ASSERT_OK(receiver->Apply(List(Crl(Root(), 6, {"0A02"}), 6)));
  ASSERT_THAT(heard_, SizeIs(3));
  EXPECT_EQ(receiver->current()->number, 6);
  EXPECT_FALSE(receiver->current()->index->IsRevoked(leaf->get()));
  EXPECT_EQ(Metric(metrics_, "meshid_agent_crl_number"), "6");
  EXPECT_EQ(Metric(metrics_, "meshid_agent_crl_entries"), "1");
  EXPECT_EQ(Metric(metrics_, "meshid_agent_crl_updates_total"), "3");
}

// Istio's plug-in CA: the workload certificates and the CRL are signed by an intermediate that
// only the list's chain brings; the bundle holds the root.
TEST_F(CrlReceiverTest, IstioPluginLayoutIsApplied) {
  const Issuer intermediate = NewIntermediate(*root_);
  auto key = GenerateKey(KeyAlgorithm::kEcdsaP256);
  ASSERT_OK(key.status());
  CertificateSpec leaf_spec;
  leaf_spec.uri_sans = {"spiffe://cluster.local/ns/default/sa/web"};
  auto leaf = testing::SignCertificate(leaf_spec, key->get(), intermediate.cert, intermediate.key);
  ASSERT_OK(leaf.status());

  auto receiver = NewReceiver(metrics_);
  ASSERT_NE(receiver, nullptr);
  const std::string der = Crl(intermediate, 9, {SerialHex(leaf->get())});
  ASSERT_OK(receiver->Apply(List(der, 9, {intermediate.cert})));

  ASSERT_THAT(heard_, SizeIs(1));
  EXPECT_EQ(heard_[0]->number, 9);
  EXPECT_EQ(heard_[0]->index->size(), 1u);
  ASSERT_NE(receiver->current(), nullptr);
  EXPECT_THAT(receiver->current()->issuer_chain_der, ElementsAre(CertToDer(intermediate.cert)));
  EXPECT_EQ(receiver->current()->issuer_serial_hex, SerialHex(intermediate.cert));
  EXPECT_TRUE(receiver->current()->index->IsRevoked(leaf->get()));
  EXPECT_EQ(Metric(metrics_, "meshid_agent_crl_number"), "9");
  EXPECT_EQ(Metric(metrics_, "meshid_agent_crl_entries"), "1");
  EXPECT_EQ(Metric(metrics_, "meshid_agent_crl_updates_total"), "1");

  // Two levels below the root: the chain carries both intermediates, the signer first.
  auto lower_key = GenerateKey(KeyAlgorithm::kEcdsaP256);
  ASSERT_OK(lower_key.status());
  CertificateSpec lower_spec;
  lower_spec.ca = true;
  lower_spec.organization = "meshid issuing CA";
  lower_spec.not_before = clock_.Now() - absl::Hours(1);
  lower_spec.not_after = clock_.Now() + absl::Hours(24 * 30);
  auto lower = testing::SignCertificate(lower_spec, lower_key->get(), intermediate.cert, intermediate.key);
  ASSERT_OK(lower.status());
  const Issuer issuing{lower->get(), lower_key->get()};
  ASSERT_OK(receiver->Apply(List(Crl(issuing, 1, {"0B01", "0B02"}), 1, {issuing.cert, intermediate.cert})));
  EXPECT_EQ(receiver->current()->issuer_serial_hex, SerialHex(issuing.cert));
  EXPECT_EQ(receiver->current()->number, 1) << "another issuer: its numbers are its own";
}

TEST_F(CrlReceiverTest, AnIntermediatesCrlWithoutItsChainIsRefused) {
  auto receiver = ReceiverWithCrl5();
  ASSERT_NE(receiver, nullptr);
  const Issuer intermediate = NewIntermediate(*root_);
  ExpectRefusedAndKept(*receiver, List(Crl(intermediate, 9, {}), 9), "CRL: issued by");
}

// The same issuer name as the root, another key: a forged CRL.
TEST_F(CrlReceiverTest, RefusesABadSignature) {
  auto receiver = ReceiverWithCrl5();
  ASSERT_NE(receiver, nullptr);
  auto impostor = NewCa("meshid root");
  ASSERT_TRUE(impostor.has_value());
  ExpectRefusedAndKept(*receiver, List(Crl(Issuer{impostor->cert(), impostor->key()}, 6, {}), 6), "bad signature");

  // Bytes changed in transit.
  std::string tampered = Crl(Root(), 6, {"0A03"});
  tampered[tampered.size() - 10] ^= 0x01;
  ExpectRefusedAndKept(*receiver, List(tampered, 6), "CRL");
}

TEST_F(CrlReceiverTest, RefusesACrlFromAnotherCa) {
  auto receiver = ReceiverWithCrl5();
  ASSERT_NE(receiver, nullptr);
  auto other = NewCa("another mesh");
  ASSERT_TRUE(other.has_value());
  const Issuer foreign{other->cert(), other->key()};
  ExpectRefusedAndKept(*receiver, List(Crl(foreign, 6, {}), 6),
                       "issued by \"O=another mesh\", not by \"O=meshid root\"");
  // Its own certificate as the chain does not make it trusted.
  ExpectRefusedAndKept(*receiver, List(Crl(foreign, 6, {}), 6, {foreign.cert}), "does not chain to the trust bundle");
}

TEST_F(CrlReceiverTest, RefusesAChainThatDoesNotLeadToTheBundle) {
  auto receiver = ReceiverWithCrl5();
  ASSERT_NE(receiver, nullptr);
  auto other_root = NewCa("another mesh");
  ASSERT_TRUE(other_root.has_value());
  // Named like the plug-in intermediate a real root could have, but issued by a foreign root.
  const Issuer foreign = NewIntermediate(*other_root);
  ExpectRefusedAndKept(
      *receiver, List(Crl(foreign, 6, {}), 6, {foreign.cert}),
      absl::StrCat("the CRL's issuer \"/O=meshid intermediate\" does not chain to the trust bundle ", bundle_));
  // Even with the foreign root appended: the chain must end below a root of the bundle.
  ExpectRefusedAndKept(*receiver, List(Crl(foreign, 6, {}), 6, {foreign.cert, other_root->cert()}),
                       "does not chain to the trust bundle");
}

TEST_F(CrlReceiverTest, RefusesAChainCertificateThatDoesNotParse) {
  auto receiver = ReceiverWithCrl5();
  ASSERT_NE(receiver, nullptr);
  RevocationList list = List(Crl(Root(), 6, {}), 6);
  list.add_issuer_chain_der("not a certificate");
  ExpectRefusedAndKept(*receiver, list, "issuer_chain_der[0]");
}

TEST_F(CrlReceiverTest, RefusesAnExpiredCrl) {
  auto receiver = ReceiverWithCrl5();
  ASSERT_NE(receiver, nullptr);
  const std::string short_lived = Crl(Root(), 6, {}, clock_.Now() - absl::Minutes(1), clock_.Now() + absl::Hours(1));
  clock_.Advance(absl::Hours(2));
  ExpectRefusedAndKept(*receiver, List(short_lived, 6), "expired at");
}

TEST_F(CrlReceiverTest, RefusesACrlNotYetValid) {
  auto receiver = ReceiverWithCrl5();
  ASSERT_NE(receiver, nullptr);
  ExpectRefusedAndKept(*receiver,
                       List(Crl(Root(), 6, {}, clock_.Now() + absl::Hours(1), clock_.Now() + absl::Hours(25)), 6),
                       "not valid yet");
}

TEST_F(CrlReceiverTest, RefusesALowerNumberThanTheOneInForce) {
  auto receiver = ReceiverWithCrl5();
  ASSERT_NE(receiver, nullptr);
  ExpectRefusedAndKept(*receiver, List(Crl(Root(), 4, {}), 4), "CRL number 4 is older than the one in force (5)");
}

// A workload's own certificate chains to the bundle too, and the workload holds its key: a CRL
// it signs (naming itself as issuer) must not replace the CA's, whatever its number.
TEST_F(CrlReceiverTest, RefusesACrlSignedByALeafUnderTheBundle) {
  auto receiver = ReceiverWithCrl5();
  ASSERT_NE(receiver, nullptr);
  auto key = GenerateKey(KeyAlgorithm::kEcdsaP256);
  ASSERT_OK(key.status());
  CertificateSpec spec;
  spec.organization = "meshid root";  // the CA's name, as a forger would choose
  spec.uri_sans = {"spiffe://cluster.local/ns/default/sa/web"};
  spec.not_before = clock_.Now() - absl::Hours(1);
  spec.not_after = clock_.Now() + absl::Hours(1);
  auto leaf = root_->Sign(spec, key->get());
  ASSERT_OK(leaf.status());
  ExpectRefusedAndKept(*receiver, List(Crl(Issuer{leaf->get(), key->get()}, 6, {}), 6, {leaf->get()}),
                       "the CRL's signer is not a CA certificate");
}

TEST_F(CrlReceiverTest, RefusesACrlNumberFieldOtherThanTheCrls) {
  auto receiver = ReceiverWithCrl5();
  ASSERT_NE(receiver, nullptr);
  ExpectRefusedAndKept(*receiver, List(Crl(Root(), 6, {}), 7), "crl_number 7 differs from the CRL's cRLNumber 6");
}

TEST_F(CrlReceiverTest, OnResponseDecodesThenApplies) {
  auto receiver = NewReceiver(metrics_);
  ASSERT_NE(receiver, nullptr);
  envoy::service::discovery::v3::DiscoveryResponse response;
  response.set_type_url(std::string(kRevocationListTypeUrl));
  const auto list = List(Crl(Root(), 5, {"0A01"}), 5);
  response.set_version_info(RevocationListResource(list).version);
  auto* any = response.add_resources();
  any->set_type_url(std::string(kRevocationListTypeUrl));
  any->set_value(list.SerializeAsString());
  ASSERT_OK(receiver->OnResponse(response));
  ASSERT_NE(receiver->current(), nullptr);
  EXPECT_EQ(receiver->current()->number, 5);
  EXPECT_THAT(heard_, SizeIs(1));

  envoy::service::discovery::v3::DiscoveryResponse malformed = response;
  malformed.set_version_info("6.00ff");
  EXPECT_THAT(receiver->OnResponse(malformed),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("version_info 6 differs")));
  malformed = response;
  malformed.mutable_resources(0)->set_value("\xff\xff\xff");
  EXPECT_THAT(receiver->OnResponse(malformed),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("resources[0]: not a serialized")));
  EXPECT_EQ(receiver->current()->number, 5);
  EXPECT_THAT(heard_, SizeIs(1));
  EXPECT_EQ(Metric(metrics_, "meshid_agent_crl_rejected_total"), "2");
  EXPECT_EQ(Metric(metrics_, "meshid_agent_crl_updates_total"), "1");
}

TEST_F(CrlReceiverTest, KeepsTheCrlInForceInTheStateFile) {
  const Issuer intermediate = NewIntermediate(*root_);
  const std::string state = dir_.path() + "/agent/crl.pem";  // the directory is created
  auto receiver = NewReceiver(metrics_, state);
  ASSERT_NE(receiver, nullptr);
  const std::string der = Crl(intermediate, 9, {"0C01"});
  ASSERT_OK(receiver->Apply(List(der, 9, {intermediate.cert, root_->cert()})));

  auto text = ReadFile(state);
  ASSERT_OK(text.status());
  auto blocks = ParsePemBlocks(*text);
  ASSERT_OK(blocks.status());
  ASSERT_THAT(*blocks, SizeIs(3));
  EXPECT_EQ((*blocks)[0].type, "X509 CRL");
  EXPECT_EQ((*blocks)[0].der, der);
  EXPECT_EQ((*blocks)[1].type, "CERTIFICATE");
  EXPECT_EQ((*blocks)[1].der, CertToDer(intermediate.cert));
  EXPECT_EQ((*blocks)[2].type, "CERTIFICATE");
  EXPECT_EQ((*blocks)[2].der, CertToDer(root_->cert()));
  EXPECT_EQ(CrlDerFromPem(*text).value_or(""), der);

  // A refused list leaves the file alone.
  EXPECT_FALSE(receiver->Apply(List(Crl(intermediate, 8, {}), 8, {intermediate.cert})).ok());
  EXPECT_EQ(ReadFile(state).value_or(""), *text);
}

TEST_F(CrlReceiverTest, ANewReceiverEnforcesTheKeptCrlAtCreate) {
  const Issuer intermediate = NewIntermediate(*root_);
  const std::string state = dir_.path() + "/crl.pem";
  {
    auto first = NewReceiver(metrics_, state);
    ASSERT_NE(first, nullptr);
    ASSERT_OK(first->Apply(List(Crl(intermediate, 9, {"0C01", "0C02"}), 9, {intermediate.cert})));
  }
  heard_.clear();

  MetricsRegistry metrics;
  auto second = NewReceiver(metrics, state);
  ASSERT_NE(second, nullptr);
  ASSERT_THAT(heard_, SizeIs(1)) << "the listener hears the kept CRL at Create";
  EXPECT_EQ(heard_[0]->number, 9);
  EXPECT_EQ(heard_[0]->index->size(), 2u);
  ASSERT_NE(second->current(), nullptr);
  EXPECT_EQ(second->current()->issuer_serial_hex, SerialHex(intermediate.cert));
  EXPECT_THAT(second->current()->issuer_chain_der, ElementsAre(CertToDer(intermediate.cert)));
  EXPECT_EQ(Metric(metrics, "meshid_agent_crl_number"), "9");
  EXPECT_EQ(Metric(metrics, "meshid_agent_crl_entries"), "2");
  EXPECT_EQ(Metric(metrics, "meshid_agent_crl_updates_total"), "0") << "nothing came from the server yet";

  // The kept number is the one in force: an older list from the server is refused.
  EXPECT_THAT(second->Apply(List(Crl(intermediate, 8, {}), 8, {intermediate.cert})),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("older than the one in force (9)")));
  ASSERT_OK(second->Apply(List(Crl(intermediate, 10, {}), 10, {intermediate.cert})));
  EXPECT_EQ(second->current()->number, 10);
}

// An agent restarted while the server is unreachable, a day later: the kept CRL is past its
// nextUpdate and is still what the node enforces.
TEST_F(CrlReceiverTest, AKeptCrlPastItsNextUpdateIsStillEnforced) {
  const std::string state = dir_.path() + "/crl.pem";
  {
    MetricsRegistry metrics;
    auto first = NewReceiver(metrics, state);
    ASSERT_NE(first, nullptr);
    ASSERT_OK(first->Apply(List(Crl(Root(), 5, {"0A01"}), 5)));
  }
  heard_.clear();
  clock_.Advance(absl::Hours(48));

  auto second = NewReceiver(metrics_, state);
  ASSERT_NE(second, nullptr);
  ASSERT_THAT(heard_, SizeIs(1));
  EXPECT_EQ(heard_[0]->number, 5);
  ASSERT_NE(second->current(), nullptr);
  EXPECT_LT(second->current()->next_update, clock_.Now());
  EXPECT_EQ(Metric(metrics_, "meshid_agent_crl_number"), "5");
  EXPECT_EQ(Metric(metrics_, "meshid_agent_crl_age_seconds"), absl::StrCat(48 * 3600 + 60));

  // The same stale CRL coming from the server is refused; a fresh one replaces it.
  EXPECT_THAT(
      second->Apply(List(Crl(Root(), 5, {"0A01"}, clock_.Now() - absl::Hours(49), clock_.Now() - absl::Hours(1)), 5)),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expired at")));
  ASSERT_OK(second->Apply(List(Crl(Root(), 6, {"0A01"}), 6)));
  EXPECT_GT(second->current()->next_update, clock_.Now());
}

TEST_F(CrlReceiverTest, ACorruptStateFileIsIgnored) {
  const std::string state = dir_.Write("crl.pem", "-----BEGIN X509 CRL-----\nnot base64 at all\n");
  auto receiver = NewReceiver(metrics_, state);
  ASSERT_NE(receiver, nullptr);
  EXPECT_EQ(receiver->current(), nullptr);
  EXPECT_THAT(heard_, IsEmpty());
  EXPECT_EQ(Metric(metrics_, "meshid_agent_crl_number"), "0");

  // The next good CRL overwrites it.
  ASSERT_OK(receiver->Apply(List(Crl(Root(), 5, {}), 5)));
  EXPECT_EQ(CrlDerFromPem(ReadFile(state).value_or("")).value_or(""), receiver->current()->der);
}

TEST_F(CrlReceiverTest, AKeptCrlThatNoLongerVerifiesIsIgnored) {
  auto other = NewCa("another mesh");
  ASSERT_TRUE(other.has_value());
  const std::string foreign_der = Crl(Issuer{other->cert(), other->key()}, 5, {"0A01"});
  for (const std::string& text : {CrlDerToPem(foreign_der),                      // another CA's CRL
                                  CrlDerToPem(foreign_der) + other->cert_pem(),  // with its own issuer as the chain
                                  root_->cert_pem(),                             // no CRL
                                  std::string()}) {
    heard_.clear();
    const std::string state = dir_.Write("crl.pem", text);
    MetricsRegistry metrics;
    auto receiver = NewReceiver(metrics, state);
    ASSERT_NE(receiver, nullptr);
    EXPECT_EQ(receiver->current(), nullptr) << text;
    EXPECT_THAT(heard_, IsEmpty());
  }
}

// Keeping the CRL comes first: a CRL that cannot be kept is not used either, so a restart can
// never fall back to an older list than the one the node enforced.
TEST_F(CrlReceiverTest, AStateFileThatCannotBeWrittenKeepsTheCrlOutOfForce) {
  dir_.Write("not-a-directory", "x");
  const std::string state = dir_.path() + "/not-a-directory/crl.pem";
  auto receiver = NewReceiver(metrics_, state);
  ASSERT_NE(receiver, nullptr);
  EXPECT_THAT(receiver->Apply(List(Crl(Root(), 5, {"0A01"}), 5)),
              StatusIs(absl::StatusCode::kInternal, HasSubstr(absl::StrCat("keeping the CRL in ", state))));
  EXPECT_EQ(receiver->current(), nullptr);
  EXPECT_THAT(heard_, IsEmpty());
  EXPECT_EQ(Metric(metrics_, "meshid_agent_crl_number"), "0");
  EXPECT_EQ(Metric(metrics_, "meshid_agent_crl_updates_total"), "0");
  EXPECT_EQ(Metric(metrics_, "meshid_agent_crl_rejected_total"), "1");
}

TEST_F(CrlReceiverTest, AMissingTrustBundleFileRefusesEveryCrl) {
  CrlReceiverOptions options;
  options.trust_bundle_file = dir_.path() + "/missing.pem";
  auto receiver = CrlReceiver::Create(options, clock_, metrics_, MakeNullLogger(), nullptr);
  ASSERT_OK(receiver.status());
  const absl::Status status = (*receiver)->Apply(List(Crl(Root(), 5, {}), 5));
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()), HasSubstr("missing.pem"));
  EXPECT_EQ((*receiver)->current(), nullptr);
}

}  // namespace
}  // namespace meshid::revocation
