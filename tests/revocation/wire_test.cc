// The revocation stream's wire form without any transport: the check of a received response
// (every refusal an InvalidArgument naming the field), the resource a server publishes, and the
// stream's declaration driving xds/'s state-of-the-world rules on the serving side.
#include "revocation/wire.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "tests/support/status_matchers.h"
#include "xds/sotw_state.h"

namespace meshid::revocation {
namespace {

using envoy::service::discovery::v3::DiscoveryRequest;
using envoy::service::discovery::v3::DiscoveryResponse;
using meshid::revocation::v1::RevocationList;
using ::meshid::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// The wire check does not parse the CRL or the certificates (the receiver does), so opaque bytes
// stand in for them here.
RevocationList List(int64_t number = 7, int chain = 1) {
  RevocationList list;
  list.set_crl_der("crl-der-bytes");
  for (int i = 0; i < chain; ++i) list.add_issuer_chain_der(absl::StrCat("issuer-", i));
  list.set_crl_number(number);
  return list;
}

DiscoveryResponse Response(const RevocationList& list) {
  DiscoveryResponse response;
  response.set_type_url(std::string(kRevocationListTypeUrl));
  response.set_version_info(RevocationListResource(list).version);
  response.set_nonce("n1");
  auto* any = response.add_resources();
  any->set_type_url(std::string(kRevocationListTypeUrl));
  any->set_value(list.SerializeAsString());
  return response;
}

DiscoveryRequest Request(const std::string& node = "agent-1", const std::string& version = "") {
  DiscoveryRequest request;
  request.set_type_url(std::string(kRevocationListTypeUrl));
  request.mutable_node()->set_id(node);
  request.set_version_info(version);
  return request;
}

absl::Status Invalid(const DiscoveryResponse& response) { return DecodeRevocationResponse(response).status(); }

TEST(DecodeRevocationResponse, AcceptsAWellFormedResponse) {
  const RevocationList sent = List(7, 2);
  auto list = DecodeRevocationResponse(Response(sent));
  ASSERT_OK(list.status());
  EXPECT_EQ(list->crl_der(), "crl-der-bytes");
  EXPECT_THAT(list->issuer_chain_der(), ElementsAre("issuer-0", "issuer-1"));
  EXPECT_EQ(list->crl_number(), 7);

  // A root-signed CRL carries no chain; exactly kMaxIssuerChain certificates is still fine.
  EXPECT_OK(DecodeRevocationResponse(Response(List(7, 0))).status());
  EXPECT_OK(DecodeRevocationResponse(Response(List(7, kMaxIssuerChain))).status());
}

TEST(DecodeRevocationResponse, RefusesAnotherTypeUrl) {
  DiscoveryResponse response = Response(List());
  response.set_type_url("type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret");
  EXPECT_THAT(Invalid(response), StatusIs(absl::StatusCode::kInvalidArgument,
                                          HasSubstr("type_url \"type.googleapis.com/envoy.extensions")));
  response.clear_type_url();
  EXPECT_THAT(Invalid(response), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("type_url \"\"")));
}

TEST(DecodeRevocationResponse, RefusesAResourceOfAnotherType) {
  DiscoveryResponse response = Response(List());
  response.mutable_resources(0)->set_type_url("type.googleapis.com/meshid.policy.v1.PolicySnapshot");
  EXPECT_THAT(Invalid(response), StatusIs(absl::StatusCode::kInvalidArgument,
                                          HasSubstr("resources[0].type_url \"type.googleapis.com/meshid.policy")));
}

TEST(DecodeRevocationResponse, RefusesAnythingButExactlyOneResource) {
  DiscoveryResponse none = Response(List());
  none.clear_resources();
  EXPECT_THAT(Invalid(none), StatusIs(absl::StatusCode::kInvalidArgument,
                                      HasSubstr("resources: a revocation response carries exactly one")));
  DiscoveryResponse two = Response(List());
  *two.add_resources() = two.resources(0);
  EXPECT_THAT(Invalid(two), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("exactly one, this one 2")));
}

TEST(DecodeRevocationResponse, RefusesBytesThatAreNotARevocationList) {
  DiscoveryResponse response = Response(List());
  // Field 1, length 5, but only two bytes follow.
  response.mutable_resources(0)->set_value(
      std::string("\x0a\x05"
                  "ab",
                  4));
  EXPECT_THAT(Invalid(response),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("resources[0]: not a serialized meshid.revocation.v1.RevocationList")));
}

TEST(DecodeRevocationResponse, RefusesAListWithoutACrl) {
  RevocationList list = List();
  list.clear_crl_der();
  EXPECT_THAT(Invalid(Response(list)), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("resources[0].crl_der")));
}

TEST(DecodeRevocationResponse, RefusesALongerIssuerChainThanTheBound) {
  EXPECT_THAT(
      Invalid(Response(List(7, kMaxIssuerChain + 1))),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr(absl::StrCat("resources[0].issuer_chain_der: ", kMaxIssuerChain + 1, " certificates"))));
}

TEST(DecodeRevocationResponse, RefusesANegativeCrlNumber) {
  DiscoveryResponse response = Response(List(-1));
  EXPECT_THAT(Invalid(response), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("resources[0].crl_number")));
  response.set_version_info("1.ab");
  EXPECT_THAT(Invalid(response), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("resources[0].crl_number")));
}

TEST(DecodeRevocationResponse, RefusesAVersionInfoThatIsNotANumberAndADigest) {
  for (const std::string version : {"7", "v7.ab", "+7.ab", "-7.ab", " 7.ab", "7.ab ", "0x7.ab", "07.ab", "7.", "7.xyz",
                                    ".ab", "99999999999999999999.ab"}) {
    DiscoveryResponse response = Response(List());
    response.set_version_info(version);
    EXPECT_THAT(Invalid(response),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("version_info \"" + version + "\"")))
        << version;
  }
}

TEST(DecodeRevocationResponse, RefusesAVersionInfoOtherThanTheCrlNumber) {
  DiscoveryResponse response = Response(List(7));
  response.set_version_info("8.0123abcd");
  EXPECT_THAT(Invalid(response), StatusIs(absl::StatusCode::kInvalidArgument,
                                          HasSubstr("version_info 8 differs from the list's crl_number 7")));
  response.clear_version_info();
  EXPECT_THAT(Invalid(response), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("version_info")));
}

TEST(RevocationListResource, IsTheSingletonVersionedByItsCrlNumberAndBytes) {
  const RevocationList list = List(42, 1);
  xds::Resource resource = RevocationListResource(list);
  EXPECT_EQ(resource.name, "crl");
  EXPECT_EQ(resource.name, kRevocationListName);
  EXPECT_THAT(resource.version, ::testing::MatchesRegex("42\\.[0-9a-f]{16}"));
  // Re-signed under the same number (other bytes): a new version, so open streams receive it.
  RevocationList resigned = list;
  resigned.set_crl_der("re-signed-crl-der-bytes");
  EXPECT_NE(RevocationListResource(resigned).version, resource.version);
  EXPECT_EQ(RevocationListResource(list).version, resource.version);
  RevocationList parsed;
  ASSERT_TRUE(parsed.ParseFromString(std::string(resource.body.view())));
  EXPECT_EQ(parsed.SerializeAsString(), list.SerializeAsString());

  EXPECT_THAT(RevocationListResource(List(0)).version, ::testing::StartsWith("0."));
}

TEST(RevocationListType, DeclaresTheStreamRules) {
  const xds::ResourceType& type = RevocationListType();
  EXPECT_EQ(&type, &RevocationListType()) << "a declaration outlives every stream: one instance";
  EXPECT_EQ(type.type_url, kRevocationListTypeUrl);
  EXPECT_EQ(type.sotw_method, "/meshid.revocation.v1.RevocationDistributionService/StreamRevocations");
  EXPECT_TRUE(type.sotw.require_node_id);
  EXPECT_THAT(type.sotw.wildcard_names, ElementsAre("crl"));
  EXPECT_TRUE(type.sotw.strict_ack);
  EXPECT_TRUE(type.client_acks_unchanged_without_handler);
  ASSERT_TRUE(type.sotw.validate_request);
}

TEST(RevocationListType, ValidateRequestChecksTheTypeUrlAndTheVersion) {
  const auto& validate = RevocationListType().sotw.validate_request;
  EXPECT_OK(validate(Request(), /*first=*/true));
  EXPECT_OK(validate(Request("agent-1", "12.00ff"), /*first=*/false));

  DiscoveryRequest foreign = Request();
  foreign.set_type_url("type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret");
  EXPECT_THAT(validate(foreign, true),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("type_url \"type.googleapis.com/envoy")));
  // Stricter than xDS allows (an empty type_url meaning the stream's): our clients always name it.
  DiscoveryRequest unnamed = Request();
  unnamed.clear_type_url();
  EXPECT_THAT(validate(unnamed, true), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("type_url \"\"")));

  for (const std::string version : {"abc", "-1", "12", "1.xy", "99999999999999999999.ab"}) {
    EXPECT_THAT(validate(Request("agent-1", version), false),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("version_info \"" + version + "\"")))
        << version;
  }
  EXPECT_THAT(validate(Request(std::string(257, 'n')), true),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("node.id")));
  EXPECT_OK(validate(Request(std::string(257, 'n')), /*first=*/false));  // node is read on the first request only
}

TEST(RevocationListType, ServingStreamRefusesARequestWithoutNodeOrOfAnotherType) {
  xds::SotwStreamState no_node(RevocationListType());
  EXPECT_THAT(no_node.OnRequest(Request("")), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("node.id")));

  xds::SotwStreamState foreign(RevocationListType());
  DiscoveryRequest request = Request();
  request.set_type_url("type.googleapis.com/meshid.policy.v1.PolicySnapshot");
  EXPECT_THAT(foreign.OnRequest(request), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("type_url")));

  xds::SotwStreamState bad_version(RevocationListType());
  EXPECT_THAT(bad_version.OnRequest(Request("agent-1", "latest")),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("version_info")));
}

// The server's side of the stream, as xds::StreamServer drives it: a wildcard request subscribes
// to "crl", the list is sent once, and what is sent decodes on the agent's side.
TEST(RevocationListType, AWildcardRequestGetsTheListAndItDecodes) {
  xds::SotwStreamState state(RevocationListType());
  auto first = state.OnRequest(Request());
  ASSERT_OK(first.status());
  EXPECT_TRUE(first->first);
  EXPECT_THAT(first->names, ElementsAre("crl"));
  EXPECT_EQ(state.node_id(), "agent-1");
  EXPECT_FALSE(state.TakeResponse("n0").has_value()) << "nothing to send before a CRL is published";

  auto resource = std::make_shared<xds::Resource>(RevocationListResource(List(3, 1)));
  resource->generation = 1;
  ASSERT_OK(state.OnUpdate({std::string(kRevocationListName), resource, absl::OkStatus()}));
  auto response = state.TakeResponse("n1");
  ASSERT_TRUE(response.has_value());
  EXPECT_EQ(response->version_info(), resource->version);
  auto list = DecodeRevocationResponse(*response);
  ASSERT_OK(list.status());
  EXPECT_EQ(list->crl_number(), 3);
  EXPECT_THAT(list->issuer_chain_der(), ElementsAre("issuer-0"));
  EXPECT_FALSE(state.TakeResponse("n2").has_value());

  // ACKed; a newer CRL number goes out as the next response.
  DiscoveryRequest ack = Request("agent-1", resource->version);
  ack.set_response_nonce("n1");
  auto verdict = state.OnRequest(ack);
  ASSERT_OK(verdict.status());
  EXPECT_TRUE(verdict->ack);
  auto newer = std::make_shared<xds::Resource>(RevocationListResource(List(4, 1)));
  newer->generation = 2;
  ASSERT_OK(state.OnUpdate({std::string(kRevocationListName), newer, absl::OkStatus()}));
  auto second = state.TakeResponse("n2");
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->version_info(), newer->version);
  EXPECT_OK(DecodeRevocationResponse(*second).status());
}

}  // namespace
}  // namespace meshid::revocation
