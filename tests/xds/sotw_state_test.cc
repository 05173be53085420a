#include "xds/sotw_state.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "envoy/extensions/transport_sockets/tls/v3/secret.pb.h"
#include "tests/sds/test_resources.h"

namespace meshid::xds {
namespace {

using envoy::service::discovery::v3::DiscoveryRequest;
using envoy::service::discovery::v3::DiscoveryResponse;
using sds::kSecretTypeUrl;
using sds::testing::Cert;
using sds::testing::Roots;
using ::testing::ElementsAre;
using ::testing::Pair;

DiscoveryRequest Request(std::vector<std::string> names, const std::string& nonce = "",
                         const std::string& version = "") {
  DiscoveryRequest r;
  r.set_type_url(std::string(kSecretTypeUrl));
  for (auto& n : names) r.add_resource_names(n);
  r.set_response_nonce(nonce);
  r.set_version_info(version);
  return r;
}

std::vector<std::string> Names(const DiscoveryResponse& response) {
  std::vector<std::string> out;
  for (const auto& any : response.resources()) {
    envoy::extensions::transport_sockets::tls::v3::Secret secret;
    EXPECT_TRUE(any.UnpackTo(&secret));
    EXPECT_EQ(any.type_url(), kSecretTypeUrl);
    out.push_back(secret.name());
  }
  return out;
}

class SotwStateTest : public ::testing::Test {
 protected:
  // Sends the initial request for `names` and feeds the given resources.
  void Start(std::vector<std::string> names) {
    DiscoveryRequest first = Request(names);
    first.mutable_node()->set_id("sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local");
    auto result = state_.OnRequest(first);
    ASSERT_TRUE(result.ok());
    EXPECT_TRUE(result->names_changed);
    EXPECT_EQ(state_.node_id(), "sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local");
  }
  std::string NextNonce() { return "n" + std::to_string(++nonce_); }

  SotwStreamState state_{sds::SecretType()};
  int nonce_ = 0;
};

TEST_F(SotwStateTest, InitialRequestIsAnsweredOnceTheResourceExists) {
  Start({"default"});
  EXPECT_FALSE(state_.TakeResponse(NextNonce()).has_value());  // nothing known yet
  ASSERT_TRUE(state_.OnUpdate({"default", Cert("a", 1), absl::OkStatus()}).ok());
  auto response = state_.TakeResponse(NextNonce());
  ASSERT_TRUE(response.has_value());
  EXPECT_THAT(Names(*response), ElementsAre("default"));
  EXPECT_EQ(response->nonce(), "n2");
  EXPECT_EQ(response->version_info(), Cert("a", 1)->version);
  EXPECT_EQ(response->type_url(), kSecretTypeUrl);
  // Nothing more to send until something changes.
  EXPECT_FALSE(state_.TakeResponse(NextNonce()).has_value());
}

TEST_F(SotwStateTest, AckIsRecognisedAndNotAnswered) {
  Start({"default"});
  ASSERT_TRUE(state_.OnUpdate({"default", Cert("a", 1), absl::OkStatus()}).ok());
  auto response = state_.TakeResponse("n1");
  auto ack = state_.OnRequest(Request({"default"}, "n1", response->version_info()));
  ASSERT_TRUE(ack.ok());
  EXPECT_TRUE(ack->ack);
  EXPECT_FALSE(ack->nack);
  EXPECT_FALSE(ack->names_changed);
  EXPECT_THAT(ack->applied, ElementsAre(Pair("default", Cert("a", 1)->version)));
  EXPECT_FALSE(state_.HasPendingResponse());
}

TEST_F(SotwStateTest, NackKeepsTheRejectedVersionFromBeingResentButANewOneGoesOut) {
  Start({"default"});
  ASSERT_TRUE(state_.OnUpdate({"default", Cert("bad", 1), absl::OkStatus()}).ok());
  auto response = state_.TakeResponse("n1");
  DiscoveryRequest nack = Request({"default"}, "n1", "");
  nack.mutable_error_detail()->set_code(3);
  nack.mutable_error_detail()->set_message("Failed to load certificate chain");
  auto result = state_.OnRequest(nack);
  ASSERT_TRUE(result.ok());
  EXPECT_TRUE(result->nack);
  EXPECT_EQ(result->nack_message, "Failed to load certificate chain");
  EXPECT_EQ(result->nack_code, 3);
  EXPECT_FALSE(state_.HasPendingResponse());
  // The same version again (e.g. a duplicate update) is not resent.
  ASSERT_TRUE(state_.OnUpdate({"default", Cert("bad", 1), absl::OkStatus()}).ok());
  EXPECT_FALSE(state_.HasPendingResponse());
  // A new version is.
  ASSERT_TRUE(state_.OnUpdate({"default", Cert("good", 2), absl::OkStatus()}).ok());
  auto next = state_.TakeResponse("n2");
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->version_info(), Cert("good", 2)->version);
}

TEST_F(SotwStateTest, StaleNoncesAreIgnoredEntirely) {
  Start({"default"});
  ASSERT_TRUE(state_.OnUpdate({"default", Cert("a", 1), absl::OkStatus()}).ok());
  state_.TakeResponse("n1");
  ASSERT_TRUE(state_.OnUpdate({"default", Cert("b", 2), absl::OkStatus()}).ok());
  state_.TakeResponse("n2");
  // The client's ACK of n1 arrives after n2 was sent, even asking for another name: nothing
  // changes and nothing is sent, but what the client applied is still reported.
  auto stale = state_.OnRequest(Request({"default", "ROOTCA"}, "n1"));
  ASSERT_TRUE(stale.ok());
  EXPECT_TRUE(stale->stale);
  EXPECT_FALSE(stale->names_changed);
  EXPECT_TRUE(stale->ack);
  EXPECT_THAT(stale->applied, ElementsAre(Pair("default", Cert("a", 1)->version)));
  EXPECT_THAT(state_.names(), ElementsAre("default"));
  EXPECT_FALSE(state_.HasPendingResponse());
  // A nonce this stream never sent acknowledges nothing.
  auto unknown = state_.OnRequest(Request({"default"}, "made-up"));
  ASSERT_TRUE(unknown.ok());
  EXPECT_TRUE(unknown->stale);
  EXPECT_FALSE(unknown->ack);
  EXPECT_TRUE(unknown->applied.empty());
}

TEST_F(SotwStateTest, ChangedResourceListIsAnsweredWithTheNewList) {
  Start({"default"});
  ASSERT_TRUE(state_.OnUpdate({"default", Cert("a", 1), absl::OkStatus()}).ok());
  state_.TakeResponse("n1");
  auto added = state_.OnRequest(Request({"default", "ROOTCA"}, "n1"));
  ASSERT_TRUE(added.ok());
  EXPECT_TRUE(added->ack);
  EXPECT_TRUE(added->names_changed);
  EXPECT_THAT(added->names, ElementsAre("ROOTCA", "default"));
  ASSERT_TRUE(state_.OnUpdate({"ROOTCA", Roots("r", 2), absl::OkStatus()}).ok());
  auto response = state_.TakeResponse("n2");
  ASSERT_TRUE(response.has_value());
  EXPECT_THAT(Names(*response), ElementsAre("ROOTCA", "default"));
  EXPECT_EQ(response->version_info(), Roots("r", 2)->version + "+" + Cert("a", 1)->version);

  // Dropping a name is answered with what remains.
  auto removed = state_.OnRequest(Request({"ROOTCA"}, "n2"));
  ASSERT_TRUE(removed.ok());
  EXPECT_TRUE(removed->names_changed);
  auto after = state_.TakeResponse("n3");
  ASSERT_TRUE(after.has_value());
  EXPECT_THAT(Names(*after), ElementsAre("ROOTCA"));
  // Updates for the dropped name are no longer sent.
  ASSERT_TRUE(state_.OnUpdate({"default", Cert("c", 3), absl::OkStatus()}).ok());
  EXPECT_FALSE(state_.HasPendingResponse());
}

TEST_F(SotwStateTest, OnlyTheChangedResourceIsPushedAndOlderGenerationsAreIgnored) {
  Start({"default", "ROOTCA"});
  ASSERT_TRUE(state_.OnUpdate({"default", Cert("a", 2), absl::OkStatus()}).ok());
  ASSERT_TRUE(state_.OnUpdate({"ROOTCA", Roots("r", 1), absl::OkStatus()}).ok());
  state_.TakeResponse("n1");
  state_.OnRequest(Request({"default", "ROOTCA"}, "n1")).IgnoreError();
  ASSERT_TRUE(state_.OnUpdate({"default", Cert("old", 1), absl::OkStatus()}).ok());  // late, older
  EXPECT_FALSE(state_.HasPendingResponse());
  ASSERT_TRUE(state_.OnUpdate({"default", Cert("rotated", 3), absl::OkStatus()}).ok());
  auto push = state_.TakeResponse("n2");
  ASSERT_TRUE(push.has_value());
  EXPECT_THAT(Names(*push), ElementsAre("default"));
}

TEST_F(SotwStateTest, AReconnectingClientGetsEverythingAgain) {
  // A new stream state: the client says which version it had, but a new stream is a new
  // subscription and is answered.
  auto first = state_.OnRequest(Request({"default"}, "", "old-version"));
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(state_.OnUpdate({"default", Cert("a", 1), absl::OkStatus()}).ok());
  EXPECT_TRUE(state_.TakeResponse("n1").has_value());
}

TEST_F(SotwStateTest, ErrorsForWatchedNamesFailTheStreamAndWrongTypesAreRefused) {
  Start({"default"});
  EXPECT_TRUE(state_.OnUpdate({"ROOTCA", nullptr, absl::UnavailableError("x")}).ok());  // not watched
  EXPECT_EQ(state_.OnUpdate({"default", nullptr, absl::UnavailableError("expired")}).code(),
            absl::StatusCode::kUnavailable);
  DiscoveryRequest wrong = Request({"x"});
  wrong.set_type_url("type.googleapis.com/envoy.config.cluster.v3.Cluster");
  SotwStreamState fresh{sds::SecretType()};
  EXPECT_EQ(fresh.OnRequest(wrong).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace meshid::xds
