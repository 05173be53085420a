// The trust bundle stream's wire form without any transport: a bundle made from PEM (each root a
// self-signed CA, deduplicated, sorted, fingerprinted as the servers fingerprint their trust
// anchors), the check of a received response (every refusal an InvalidArgument naming the field),
// the resource a server publishes, and the stream's declaration driving xds/'s state-of-the-world
// rules on the serving side.
#include "trustbundle/wire.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "ca/authority.h"
#include "ca/shared_ca.h"
#include "common/keys.h"
#include "common/pem.h"
#include "common/sha256.h"
#include "common/x509.h"
#include "tests/support/certs.h"
#include "tests/support/status_matchers.h"
#include "tests/trustbundle/test_bundles.h"
#include "xds/sotw_state.h"

namespace meshid::trustbundle {
namespace {

using envoy::service::discovery::v3::DiscoveryRequest;
using envoy::service::discovery::v3::DiscoveryResponse;
using ::meshid::testing::CertificateSpec;
using ::meshid::testing::StatusIs;
using ::meshid::testing::TestCa;
using meshid::trustbundle::v1::TrustBundle;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::SizeIs;

std::string Der(const TestCa& ca) { return CertToDer(ca.cert()); }
std::string Fp(const std::string& der) { return "sha256:" + Sha256Hex(der); }

// A CA certificate signed by `parent`: a CA, but not a root.
std::string IntermediatePem(const TestCa& parent) {
  auto key = GenerateKey(KeyAlgorithm::kEcdsaP256);
  EXPECT_OK(key.status());
  CertificateSpec spec;
  spec.ca = true;
  spec.organization = "intermediate";
  auto cert = parent.Sign(spec, key->get());
  EXPECT_OK(cert.status());
  return CertToPem(cert->get());
}

class TrustBundleWireTest : public ::testing::Test {
 protected:
  static DiscoveryResponse Response(const TrustBundle& bundle) {
    DiscoveryResponse response;
    response.set_type_url(std::string(kTrustBundleTypeUrl));
    response.set_version_info(TrustBundleResource(bundle).version);
    response.set_nonce("n1");
    auto* any = response.add_resources();
    any->set_type_url(std::string(kTrustBundleTypeUrl));
    any->set_value(bundle.SerializeAsString());
    return response;
  }

  // `bundle` sent as it is, with the version a server would give it: only the named field is wrong.
  static absl::Status Invalid(const TrustBundle& bundle) {
    return DecodeTrustBundleResponse(Response(bundle)).status();
  }
  static absl::Status Invalid(const DiscoveryResponse& response) {
    return DecodeTrustBundleResponse(response).status();
  }

  TestCa a_ = NewCa("root a");
  TestCa b_ = NewCa("root b");
};

TEST_F(TrustBundleWireTest, MakeTrustBundleDeduplicatesSortsAndFingerprints) {
  auto bundle = MakeTrustBundle("cluster.local", b_.cert_pem() + a_.cert_pem() + b_.cert_pem());
  ASSERT_OK(bundle.status());
  EXPECT_EQ(bundle->trust_domain(), "cluster.local");
  std::vector<std::string> sorted = {Der(a_), Der(b_)};
  if (Fp(sorted[1]) < Fp(sorted[0])) std::swap(sorted[0], sorted[1]);
  EXPECT_THAT(bundle->root_der(), ElementsAre(sorted[0], sorted[1]));
  EXPECT_EQ(bundle->fingerprint(), absl::StrCat(Fp(sorted[0]), ",", Fp(sorted[1])));
  EXPECT_THAT(bundle->fingerprint(), MatchesRegex("sha256:[0-9a-f]{64},sha256:[0-9a-f]{64}"));
  EXPECT_EQ(RootSetFingerprint({Der(b_), Der(a_), Der(a_)}), bundle->fingerprint());
  EXPECT_OK(ValidateTrustBundle(*bundle));

  // The same roots in any order, with text around them, are the same bundle.
  auto again = MakeTrustBundle("cluster.local", "# roots\n" + a_.cert_pem() + "\n" + b_.cert_pem());
  ASSERT_OK(again.status());
  EXPECT_EQ(again->SerializeAsString(), bundle->SerializeAsString());
  EXPECT_EQ(TrustBundleVersion(*again), TrustBundleVersion(*bundle));
}

// The servers record TrustAnchorFingerprint (ca/shared_ca.h) in the store; the bundle's fingerprint
// must be the same string for the same roots.
TEST_F(TrustBundleWireTest, FingerprintIsTheServersTrustAnchorFingerprint) {
  SigningAuthority authority;
  authority.roots.push_back(CopyCert(b_.cert()));
  authority.roots.push_back(CopyCert(a_.cert()));
  auto bundle = MakeTrustBundle("cluster.local", a_.cert_pem() + b_.cert_pem());
  ASSERT_OK(bundle.status());
  EXPECT_EQ(bundle->fingerprint(), TrustAnchorFingerprint(authority));

  SigningAuthority one;
  one.roots.push_back(CopyCert(a_.cert()));
  EXPECT_EQ(RootSetFingerprint({Der(a_)}), TrustAnchorFingerprint(one));
  EXPECT_EQ(RootFingerprint(Der(a_)), TrustAnchorFingerprint(one));
}

TEST_F(TrustBundleWireTest, MakeTrustBundleRefusesALeaf) {
  auto leaf = a_.Leaf({"spiffe://cluster.local/ns/default/sa/web"});
  ASSERT_OK(leaf.status());
  EXPECT_THAT(MakeTrustBundle("cluster.local", a_.cert_pem() + leaf->cert),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("roots_pem: certificate 2 ("), HasSubstr("): not a CA certificate"))));
}

TEST_F(TrustBundleWireTest, MakeTrustBundleRefusesACaThatIsNotSelfSigned) {
  EXPECT_THAT(MakeTrustBundle("cluster.local", IntermediatePem(a_)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("roots_pem: certificate 1 (/O=intermediate): not self-signed")));
}

TEST_F(TrustBundleWireTest, MakeTrustBundleRefusesNoRootsAndOtherBlocks) {
  EXPECT_THAT(MakeTrustBundle("cluster.local", ""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("roots_pem: ")));
  EXPECT_THAT(MakeTrustBundle("cluster.local", "not PEM at all"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("roots_pem: ")));
  auto key = GenerateKey(KeyAlgorithm::kEcdsaP256);
  ASSERT_OK(key.status());
  EXPECT_THAT(MakeTrustBundle("cluster.local", a_.cert_pem() + EncodePem("PUBLIC KEY", "\x30\x00")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("roots_pem: PEM block 2 is \"PUBLIC KEY\", expected CERTIFICATE")));
}

TEST_F(TrustBundleWireTest, MakeTrustBundleRefusesMoreThanSixteenRoots) {
  std::vector<TestCa> cas;
  std::string pem;
  for (int i = 0; i < kMaxTrustBundleRoots; ++i) {
    cas.push_back(NewCa(absl::StrCat("root ", i)));
    pem += cas.back().cert_pem();
  }
  auto sixteen = MakeTrustBundle("cluster.local", pem + cas[0].cert_pem());  // a duplicate does not count
  ASSERT_OK(sixteen.status());
  EXPECT_THAT(sixteen->root_der(), SizeIs(kMaxTrustBundleRoots));
  EXPECT_OK(DecodeTrustBundleResponse(Response(*sixteen)).status());

  EXPECT_THAT(MakeTrustBundle("cluster.local", pem + a_.cert_pem()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("roots_pem: 17 distinct roots, more than 16")));
  // Sent anyway: the receiver's bound.
  TrustBundle seventeen = *sixteen;
  seventeen.add_root_der(Der(a_));
  EXPECT_THAT(Invalid(seventeen), StatusIs(absl::StatusCode::kInvalidArgument,
                                           HasSubstr("resources[0].root_der: 17 certificates, more than 16")));
}

TEST_F(TrustBundleWireTest, MakeTrustBundleRefusesABadTrustDomain) {
  EXPECT_THAT(MakeTrustBundle("", a_.cert_pem()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("trust_domain: trust domain is empty")));
  EXPECT_THAT(MakeTrustBundle("Cluster.Local", a_.cert_pem()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("trust_domain: ")));
}

TEST_F(TrustBundleWireTest, DecodeAcceptsAWellFormedResponse) {
  const TrustBundle sent = Bundle({&a_, &b_});
  auto bundle = DecodeTrustBundleResponse(Response(sent));
  ASSERT_OK(bundle.status());
  EXPECT_EQ(bundle->SerializeAsString(), sent.SerializeAsString());
}

TEST_F(TrustBundleWireTest, DecodeRefusesAnotherTypeUrl) {
  DiscoveryResponse response = Response(Bundle({&a_}));
  response.set_type_url("type.googleapis.com/meshid.revocation.v1.RevocationList");
  EXPECT_THAT(Invalid(response), StatusIs(absl::StatusCode::kInvalidArgument,
                                          HasSubstr("type_url \"type.googleapis.com/meshid.revocation")));
  response.clear_type_url();
  EXPECT_THAT(Invalid(response), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("type_url \"\"")));

  DiscoveryResponse inner = Response(Bundle({&a_}));
  inner.mutable_resources(0)->set_type_url("type.googleapis.com/meshid.policy.v1.PolicySnapshot");
  EXPECT_THAT(Invalid(inner), StatusIs(absl::StatusCode::kInvalidArgument,
                                       HasSubstr("resources[0].type_url \"type.googleapis.com/meshid.policy")));
}

TEST_F(TrustBundleWireTest, DecodeRefusesAnythingButExactlyOneResource) {
  DiscoveryResponse none = Response(Bundle({&a_}));
  none.clear_resources();
  EXPECT_THAT(Invalid(none), StatusIs(absl::StatusCode::kInvalidArgument,
                                      HasSubstr("resources: a trust bundle response carries exactly one, this one 0")));
  DiscoveryResponse two = Response(Bundle({&a_}));
  *two.add_resources() = two.resources(0);
  EXPECT_THAT(Invalid(two), StatusIs(absl::StatusCode::kInvalidArgument,
                                     HasSubstr("resources: a trust bundle response carries exactly one, this one 2")));
}

TEST_F(TrustBundleWireTest, DecodeRefusesBytesThatAreNotATrustBundle) {
  DiscoveryResponse response = Response(Bundle({&a_}));
  // Field 2, length 5, but only two bytes follow.
  response.mutable_resources(0)->set_value(
      std::string("\x12\x05"
                  "ab",
                  4));
  EXPECT_THAT(Invalid(response),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("resources[0]: not a serialized meshid.trustbundle.v1.TrustBundle")));
  response.mutable_resources(0)->set_value(std::string(kMaxTrustBundleBytes + 1, 'x'));
  EXPECT_THAT(Invalid(response),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(absl::StrCat("resources[0]: ", kMaxTrustBundleBytes + 1, " bytes"))));
}

TEST_F(TrustBundleWireTest, DecodeRefusesAFingerprintOtherThanTheRoots) {
  TrustBundle bundle = Bundle({&a_, &b_});
  TrustBundle other = bundle;
  other.set_fingerprint(Fp(Der(a_)));  // one root's only
  EXPECT_THAT(Invalid(other),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("resources[0].fingerprint \"sha256:")));
  other.set_fingerprint(absl::StrCat(Fp(bundle.root_der(1)), ",", Fp(bundle.root_der(0))));  // unsorted
  EXPECT_THAT(Invalid(other), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("differs from the roots' \"")));
  other.clear_fingerprint();
  EXPECT_THAT(Invalid(other), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("resources[0].fingerprint \"\"")));
}

TEST_F(TrustBundleWireTest, DecodeRefusesAVersionOtherThanTheFingerprintsDigest) {
  const TrustBundle bundle = Bundle({&a_});
  DiscoveryResponse response = Response(bundle);
  response.set_version_info(TrustBundleVersion(Bundle({&b_})));
  EXPECT_THAT(
      Invalid(response),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr(absl::StrCat("differs from the bundle's version \"", TrustBundleVersion(bundle), "\""))));
  for (const std::string version : {"", "1.ab", "latest"}) {
    response.set_version_info(version);
    EXPECT_THAT(Invalid(response),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("version_info \"" + version + "\"")))
        << version;
  }
}

TEST_F(TrustBundleWireTest, DecodeRefusesALeafOrAnIntermediateAmongTheRoots) {
  auto leaf_pem = a_.Leaf({"spiffe://cluster.local/ns/default/sa/web"});
  ASSERT_OK(leaf_pem.status());
  auto leaf = CertFromPem(leaf_pem->cert);
  ASSERT_OK(leaf.status());
  TrustBundle bundle;
  bundle.set_trust_domain("cluster.local");
  bundle.add_root_der(CertToDer(leaf->get()));
  bundle.set_fingerprint(RootSetFingerprint({bundle.root_der(0)}));
  EXPECT_THAT(Invalid(bundle),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("resources[0].root_der[0] ("), HasSubstr("): not a CA certificate"))));

  auto intermediate = CertFromPem(IntermediatePem(a_));
  ASSERT_OK(intermediate.status());
  bundle.set_root_der(0, CertToDer(intermediate->get()));
  bundle.set_fingerprint(RootSetFingerprint({bundle.root_der(0)}));
  EXPECT_THAT(Invalid(bundle), StatusIs(absl::StatusCode::kInvalidArgument,
                                        HasSubstr("resources[0].root_der[0] (/O=intermediate): not self-signed")));
}

TEST_F(TrustBundleWireTest, DecodeRefusesRootsThatAreNotCanonical) {
  const TrustBundle bundle = Bundle({&a_, &b_});

  TrustBundle empty = bundle;
  empty.clear_root_der();
  empty.set_fingerprint("");
  EXPECT_THAT(Invalid(empty), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("resources[0].root_der: empty")));

  TrustBundle garbage = bundle;
  garbage.set_root_der(1, "not DER");
  EXPECT_THAT(Invalid(garbage), StatusIs(absl::StatusCode::kInvalidArgument,
                                         HasSubstr("resources[0].root_der[1]: malformed DER certificate")));

  TrustBundle huge = bundle;
  huge.set_root_der(0, std::string(kMaxRootBytes + 1, '\x30'));
  EXPECT_THAT(Invalid(huge), StatusIs(absl::StatusCode::kInvalidArgument,
                                      HasSubstr(absl::StrCat("resources[0].root_der[0]: ", kMaxRootBytes + 1,
                                                             " bytes, more than ", kMaxRootBytes))));

  TrustBundle swapped = bundle;
  swapped.mutable_root_der()->SwapElements(0, 1);
  EXPECT_THAT(Invalid(swapped),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("resources[0].root_der[1]: out of order")));

  TrustBundle twice = Bundle({&a_});
  twice.add_root_der(twice.root_der(0));
  EXPECT_THAT(Invalid(twice), StatusIs(absl::StatusCode::kInvalidArgument,
                                       HasSubstr("resources[0].root_der[1]: the same certificate as root_der[0]")));

  TrustBundle no_domain = bundle;
  no_domain.clear_trust_domain();
  EXPECT_THAT(Invalid(no_domain), StatusIs(absl::StatusCode::kInvalidArgument,
                                           HasSubstr("resources[0].trust_domain: trust domain is empty")));
}

TEST_F(TrustBundleWireTest, ResourceIsTheSingletonVersionedByTheFingerprint) {
  const TrustBundle bundle = Bundle({&a_, &b_});
  xds::Resource resource = TrustBundleResource(bundle);
  EXPECT_EQ(resource.name, "bundle");
  EXPECT_EQ(resource.name, kTrustBundleName);
  EXPECT_THAT(resource.version, MatchesRegex("[0-9a-f]{16}"));
  EXPECT_EQ(resource.version, TrustBundleVersion(bundle));
  EXPECT_EQ(resource.version, Sha256Hex(bundle.fingerprint()).substr(0, 16));
  EXPECT_NE(TrustBundleResource(Bundle({&a_})).version, resource.version);
  TrustBundle parsed;
  ASSERT_TRUE(parsed.ParseFromString(std::string(resource.body.view())));
  EXPECT_EQ(parsed.SerializeAsString(), bundle.SerializeAsString());
}

DiscoveryRequest Request(const std::string& node = "agent-1", const std::string& version = "") {
  DiscoveryRequest request;
  request.set_type_url(std::string(kTrustBundleTypeUrl));
  request.mutable_node()->set_id(node);
  request.set_version_info(version);
  return request;
}

TEST(TrustBundleType, DeclaresTheRevocationStreamsRules) {
  const xds::ResourceType& type = TrustBundleType();
  EXPECT_EQ(&type, &TrustBundleType()) << "a declaration outlives every stream: one instance";
  EXPECT_EQ(type.type_url, kTrustBundleTypeUrl);
  EXPECT_EQ(type.sotw_method, "/meshid.trustbundle.v1.TrustBundleDistributionService/StreamTrustBundles");
  EXPECT_FALSE(type.sotw.one_response_in_flight);
  EXPECT_TRUE(type.sotw.require_node_id);
  EXPECT_THAT(type.sotw.wildcard_names, ElementsAre("bundle"));
  EXPECT_TRUE(type.sotw.strict_ack);
  EXPECT_TRUE(type.client_acks_unchanged_without_handler);
  ASSERT_TRUE(type.sotw.validate_request);
}

TEST(TrustBundleType, ValidateRequestChecksTheTypeUrlAndTheVersion) {
  const auto& validate = TrustBundleType().sotw.validate_request;
  EXPECT_OK(validate(Request(), /*first=*/true));
  EXPECT_OK(validate(Request("agent-1", "0123456789abcdef"), /*first=*/false));

  DiscoveryRequest foreign = Request();
  foreign.set_type_url("type.googleapis.com/meshid.revocation.v1.RevocationList");
  EXPECT_THAT(validate(foreign, true),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("type_url \"type.googleapis.com/meshid")));
  DiscoveryRequest unnamed = Request();
  unnamed.clear_type_url();
  EXPECT_THAT(validate(unnamed, true), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("type_url \"\"")));

  for (const std::string version : {"abc", "12.00ff", "0123456789ABCDEF", "0123456789abcdef0", "0123456789abcdeg"}) {
    EXPECT_THAT(validate(Request("agent-1", version), false),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("version_info \"" + version + "\"")))
        << version;
  }
  EXPECT_THAT(validate(Request(std::string(257, 'n')), true),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("node.id")));
}

// The server's side of the stream, as xds::StreamServer drives it: a wildcard request subscribes
// to "bundle", the bundle is sent once, what is sent decodes on the agent's side, and a rotated
// bundle goes out after the ACK.
TEST_F(TrustBundleWireTest, AWildcardRequestGetsTheBundleAndItDecodes) {
  xds::SotwStreamState state(TrustBundleType());
  auto first = state.OnRequest(Request());
  ASSERT_OK(first.status());
  EXPECT_THAT(first->names, ElementsAre("bundle"));
  EXPECT_FALSE(state.TakeResponse("n0").has_value()) << "nothing to send before a bundle is published";

  auto resource = std::make_shared<xds::Resource>(TrustBundleResource(Bundle({&a_})));
  resource->generation = 1;
  ASSERT_OK(state.OnUpdate({std::string(kTrustBundleName), resource, absl::OkStatus()}));
  auto response = state.TakeResponse("n1");
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->version_info(), resource->version);
  auto bundle = DecodeTrustBundleResponse(*response);
  ASSERT_OK(bundle.status());
  EXPECT_THAT(bundle->root_der(), ElementsAre(Der(a_)));

  DiscoveryRequest ack = Request("agent-1", resource->version);
  ack.set_response_nonce("n1");
  auto verdict = state.OnRequest(ack);
  ASSERT_OK(verdict.status());
  EXPECT_TRUE(verdict->ack);
  auto rotated = std::make_shared<xds::Resource>(TrustBundleResource(Bundle({&a_, &b_})));
  rotated->generation = 2;
  ASSERT_OK(state.OnUpdate({std::string(kTrustBundleName), rotated, absl::OkStatus()}));
  auto second = state.TakeResponse("n2");
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->version_info(), rotated->version);
  auto two = DecodeTrustBundleResponse(*second);
  ASSERT_OK(two.status());
  EXPECT_THAT(two->root_der(), SizeIs(2));
}

}  // namespace
}  // namespace meshid::trustbundle
