#include "xds/delta_state.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/sds/test_resources.h"

namespace meshid::xds {
namespace {

using envoy::service::discovery::v3::DeltaDiscoveryRequest;
using sds::kSecretTypeUrl;
using sds::testing::Cert;
using sds::testing::Roots;
using ::testing::ElementsAre;

bool Known(const std::string& name) { return name == "default" || name == "ROOTCA"; }

DeltaDiscoveryRequest Request(std::vector<std::string> subscribe, std::vector<std::string> unsubscribe = {},
                              const std::string& nonce = "") {
  DeltaDiscoveryRequest r;
  r.set_type_url(std::string(kSecretTypeUrl));
  for (auto& n : subscribe) r.add_resource_names_subscribe(n);
  for (auto& n : unsubscribe) r.add_resource_names_unsubscribe(n);
  r.set_response_nonce(nonce);
  return r;
}

std::vector<std::string> Names(const envoy::service::discovery::v3::DeltaDiscoveryResponse& response) {
  std::vector<std::string> out;
  for (const auto& r : response.resources()) out.push_back(r.name());
  return out;
}

TEST(DeltaStateTest, SubscribeAckUnsubscribe) {
  DeltaStreamState state{sds::SecretType()};
  auto first = state.OnRequest(Request({"default", "ROOTCA"}), Known);
  ASSERT_TRUE(first.ok());
  EXPECT_TRUE(first->names_changed);
  EXPECT_THAT(first->names, ElementsAre("ROOTCA", "default"));
  ASSERT_TRUE(state.OnUpdate({"default", Cert("a", 1), absl::OkStatus()}).ok());
  ASSERT_TRUE(state.OnUpdate({"ROOTCA", Roots("r", 2), absl::OkStatus()}).ok());
  auto response = state.TakeResponse("n1");
  ASSERT_TRUE(response.has_value());
  EXPECT_THAT(Names(*response), ElementsAre("ROOTCA", "default"));
  EXPECT_EQ(response->resources(1).version(), Cert("a", 1)->version);
  EXPECT_EQ(response->resources(1).resource().type_url(), kSecretTypeUrl);
  EXPECT_EQ(response->nonce(), "n1");

  auto ack = state.OnRequest(Request({}, {}, "n1"), Known);
  ASSERT_TRUE(ack.ok());
  EXPECT_TRUE(ack->ack);
  EXPECT_EQ(ack->applied.size(), 2u);
  EXPECT_FALSE(state.HasPendingResponse());

  // Only the changed resource is sent.
  ASSERT_TRUE(state.OnUpdate({"default", Cert("b", 3), absl::OkStatus()}).ok());
  auto push = state.TakeResponse("n2");
  ASSERT_TRUE(push.has_value());
  EXPECT_THAT(Names(*push), ElementsAre("default"));

  auto unsub = state.OnRequest(Request({}, {"default"}, "n2"), Known);
  ASSERT_TRUE(unsub.ok());
  EXPECT_TRUE(unsub->names_changed);
  EXPECT_THAT(unsub->names, ElementsAre("ROOTCA"));
  ASSERT_TRUE(state.OnUpdate({"default", Cert("c", 4), absl::OkStatus()}).ok());
  EXPECT_FALSE(state.HasPendingResponse());
}

TEST(DeltaStateTest, UnknownNamesAreReportedRemovedWithAnError) {
  DeltaStreamState state{sds::SecretType()};
  auto first = state.OnRequest(Request({"default", "spiffe://cluster.local/ns/x/sa/y"}), Known);
  ASSERT_TRUE(first.ok());
  EXPECT_THAT(first->names, ElementsAre("default"));
  auto response = state.TakeResponse("n1");
  ASSERT_TRUE(response.has_value());
  EXPECT_THAT(response->removed_resources(), ElementsAre("spiffe://cluster.local/ns/x/sa/y"));
  ASSERT_EQ(response->resource_errors_size(), 1);
  EXPECT_EQ(response->resource_errors(0).resource_name().name(), "spiffe://cluster.local/ns/x/sa/y");
  EXPECT_EQ(response->resource_errors(0).error_detail().code(), 5);  // NOT_FOUND
  EXPECT_FALSE(state.HasPendingResponse());
}

TEST(DeltaStateTest, InitialResourceVersionsSkipWhatTheClientAlreadyHas) {
  DeltaStreamState state{sds::SecretType()};
  DeltaDiscoveryRequest first = Request({"default", "ROOTCA"});
  (*first.mutable_initial_resource_versions())["ROOTCA"] = Roots("r", 1)->version;
  (*first.mutable_initial_resource_versions())["default"] = "something-older";
  ASSERT_TRUE(state.OnRequest(first, Known).ok());
  ASSERT_TRUE(state.OnUpdate({"default", Cert("a", 2), absl::OkStatus()}).ok());
  ASSERT_TRUE(state.OnUpdate({"ROOTCA", Roots("r", 1), absl::OkStatus()}).ok());
  auto response = state.TakeResponse("n1");
  ASSERT_TRUE(response.has_value());
  EXPECT_THAT(Names(*response), ElementsAre("default"));
}

TEST(DeltaStateTest, NackedVersionIsNotResentAndSubscriptionsApplyEvenWithAStaleNonce) {
  DeltaStreamState state{sds::SecretType()};
  ASSERT_TRUE(state.OnRequest(Request({"default"}), Known).ok());
  ASSERT_TRUE(state.OnUpdate({"default", Cert("a", 1), absl::OkStatus()}).ok());
  state.TakeResponse("n1");
  DeltaDiscoveryRequest nack = Request({}, {}, "n1");
  nack.mutable_error_detail()->set_message("bad key");
  auto result = state.OnRequest(nack, Known);
  ASSERT_TRUE(result.ok());
  EXPECT_TRUE(result->nack);
  EXPECT_EQ(result->nack_message, "bad key");
  EXPECT_FALSE(state.HasPendingResponse());
  ASSERT_TRUE(state.OnUpdate({"default", Cert("b", 2), absl::OkStatus()}).ok());
  state.TakeResponse("n2");
  // A request echoing the older n1 reports on n1 only, and its subscription change still counts.
  auto stale = state.OnRequest(Request({"ROOTCA"}, {}, "n1"), Known);
  ASSERT_TRUE(stale.ok());
  EXPECT_TRUE(stale->stale_nonce);
  EXPECT_TRUE(stale->ack);
  EXPECT_THAT(stale->applied, ElementsAre(std::pair<std::string, std::string>("default", Cert("a", 1)->version)));
  EXPECT_TRUE(stale->names_changed);
  EXPECT_THAT(stale->names, ElementsAre("ROOTCA", "default"));
}

}  // namespace
}  // namespace meshid::xds
