// The policy stream's declaration (PolicySnapshotType) driving xds/'s rules on the serving and
// the receiving side, and the snapshot checks, without any transport.
#include "policy/wire.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "policy/client.h"
#include "xds/client.h"
#include "xds/sotw_state.h"

namespace meshid::policy {
namespace {

using envoy::service::discovery::v3::DiscoveryRequest;
using envoy::service::discovery::v3::DiscoveryResponse;
using meshid::policy::v1::PolicySnapshot;
using ::testing::HasSubstr;

PolicySnapshotPtr Snapshot(int64_t version, int documents = 2) {
  PolicyVersion v;
  v.info.version = version;
  v.info.created_at = absl::FromUnixSeconds(1'800'000'000);
  for (int i = 0; i < documents; ++i) {
    v.documents.push_back({"AuthorizationPolicy", "demo", absl::StrCat("p", i),
                           absl::StrCat("kind: AuthorizationPolicy\nmetadata: {name: p", i,
                                        ", namespace: demo}\nspec: {}\n# v", version, "\n"),
                           "x.yaml:1"});
  }
  return MakePolicySnapshot(v);
}

DiscoveryRequest First(const std::string& node = "hello-a", const std::string& version = "") {
  DiscoveryRequest r;
  r.set_type_url(std::string(kPolicySnapshotTypeUrl));
  r.mutable_node()->set_id(node);
  r.mutable_node()->set_cluster("hello");
  (*r.mutable_node()->mutable_metadata()->mutable_fields())["NAMESPACE"].set_string_value("demo");
  r.set_version_info(version);
  return r;
}

DiscoveryRequest Ack(const DiscoveryResponse& response) {
  DiscoveryRequest r;
  r.set_type_url(std::string(kPolicySnapshotTypeUrl));
  r.set_version_info(response.version_info());
  r.set_response_nonce(response.nonce());
  return r;
}

DiscoveryRequest Nack(const DiscoveryResponse& response, const std::string& applied, const std::string& error) {
  DiscoveryRequest r = Ack(response);
  r.set_version_info(applied);
  r.mutable_error_detail()->set_code(3);
  r.mutable_error_detail()->set_message(error);
  return r;
}

int64_t VersionOf(const std::optional<DiscoveryResponse>& response) {
  EXPECT_TRUE(response.has_value());
  if (!response) return -1;
  auto snapshot = DecodePolicyResponse(*response);
  EXPECT_TRUE(snapshot.ok()) << snapshot.status();
  return snapshot.ok() ? (*snapshot)->version() : -1;
}

// The version an ACK or NACK refers to.
int64_t VersionOf(const xds::AckOrNack& verdict) {
  return ParsePolicyVersion(xds::SotwVersionInfo(verdict.applied)).value_or(-1);
}

// One serving stream of the policy type, as xds::StreamServer drives xds::SotwStreamState for
// it: the snapshot a publisher holds, handed over when the stream subscribes and when it
// changes, and the node and client status the stream reports to observers.
class ServingStream {
 public:
  absl::StatusOr<xds::SotwRequestResult> OnRequest(const DiscoveryRequest& request) {
    auto result = state_.OnRequest(request);
    if (!result.ok()) return result;
    if (result->first) {
      node_ = PolicyNodeOf(request.node());
      client_.OnFirstRequest(request.version_info());
    }
    if (!result->stale) client_.OnVerdict(*result);
    if (result->names_changed && latest_ != nullptr) {
      EXPECT_TRUE(state_.OnUpdate({std::string(kPolicySnapshotName), latest_, absl::OkStatus()}).ok());
    }
    return result;
  }
  void OnSnapshot(const PolicySnapshotPtr& snapshot) {
    auto resource = std::make_shared<xds::Resource>(PolicySnapshotResource(*snapshot));
    resource->generation = ++generation_;
    latest_ = std::move(resource);
    EXPECT_TRUE(state_.OnUpdate({std::string(kPolicySnapshotName), latest_, absl::OkStatus()}).ok());
  }
  std::optional<DiscoveryResponse> TakeResponse(const std::string& nonce) { return state_.TakeResponse(nonce); }

  const PolicyNode& node() const { return node_; }
  int64_t applied_version() const { return ParsePolicyVersion(client_.applied_version).value_or(-1); }
  int64_t rejected_version() const { return ParsePolicyVersion(client_.rejected_version).value_or(-1); }
  const std::string& last_error() const { return client_.last_error; }

 private:
  xds::SotwStreamState state_{PolicySnapshotType()};
  xds::ClientStatus client_;
  PolicyNode node_;
  xds::ResourcePtr latest_;
  uint64_t generation_ = 0;
};

// ---- serving side ----

TEST(PolicyServingStream, TheFirstRequestNeedsANodeAndOurTypeUrl) {
  ServingStream state;
  DiscoveryRequest no_node = First("");
  EXPECT_THAT(state.OnRequest(no_node).status().message(), HasSubstr("missing node information"));
  ServingStream other;
  DiscoveryRequest wrong_type = First();
  wrong_type.set_type_url("type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret");
  EXPECT_EQ(other.OnRequest(wrong_type).status().code(), absl::StatusCode::kInvalidArgument);
  ServingStream no_type;
  DiscoveryRequest empty_type = First();
  empty_type.clear_type_url();
  EXPECT_EQ(no_type.OnRequest(empty_type).status().code(), absl::StatusCode::kInvalidArgument);
  ServingStream bad_version;
  EXPECT_THAT(bad_version.OnRequest(First("n", "v1")).status().message(), HasSubstr("not a policy version"));
  ServingStream negative;
  EXPECT_FALSE(negative.OnRequest(First("n", "-1")).ok());
  ServingStream long_id;
  EXPECT_THAT(long_id.OnRequest(First(std::string(257, 'n'))).status().message(), HasSubstr("too long"));
}

TEST(PolicyServingStream, SendsTheCurrentSnapshotOnSubscribeThenOnlyNewVersions) {
  ServingStream state;
  auto first = state.OnRequest(First());
  ASSERT_TRUE(first.ok());
  EXPECT_TRUE(first->first);
  EXPECT_EQ(state.node().id, "hello-a");
  EXPECT_EQ(state.node().service, "hello");
  EXPECT_EQ(state.node().namespace_, "demo");
  EXPECT_FALSE(state.TakeResponse("n0").has_value()) << "nothing to send before there is a snapshot";

  state.OnSnapshot(Snapshot(1));
  auto r1 = state.TakeResponse("n1");
  EXPECT_EQ(VersionOf(r1), 1);
  EXPECT_EQ(r1->version_info(), "1");
  EXPECT_EQ(r1->nonce(), "n1");
  EXPECT_EQ(r1->type_url(), kPolicySnapshotTypeUrl);
  EXPECT_FALSE(state.TakeResponse("n2").has_value());

  auto ack = state.OnRequest(Ack(*r1));
  ASSERT_TRUE(ack.ok());
  EXPECT_TRUE(ack->ack);
  EXPECT_EQ(VersionOf(*ack), 1);
  EXPECT_EQ(state.applied_version(), 1);
  EXPECT_FALSE(state.TakeResponse("n2").has_value()) << "an ACK is never answered with the same content";

  state.OnSnapshot(Snapshot(1));  // the same version again (e.g. a re-poll): nothing to send
  EXPECT_FALSE(state.TakeResponse("n2").has_value());
  state.OnSnapshot(Snapshot(2));
  EXPECT_EQ(VersionOf(state.TakeResponse("n3")), 2);
}

TEST(PolicyServingStream, ANackedVersionIsNeverResentButTheNextOneIs) {
  ServingStream state;
  ASSERT_TRUE(state.OnRequest(First()).ok());
  state.OnSnapshot(Snapshot(1));
  auto r1 = *state.TakeResponse("a");
  ASSERT_TRUE(state.OnRequest(Ack(r1)).ok());
  state.OnSnapshot(Snapshot(2));
  auto r2 = *state.TakeResponse("b");
  auto nack = state.OnRequest(Nack(r2, "1", "jwks: file:///missing.json: not found"));
  ASSERT_TRUE(nack.ok());
  EXPECT_TRUE(nack->nack);
  EXPECT_EQ(VersionOf(*nack), 2);
  EXPECT_EQ(nack->nack_message, "jwks: file:///missing.json: not found");
  EXPECT_EQ(state.rejected_version(), 2);
  EXPECT_EQ(state.applied_version(), 1) << "the client keeps its last good version";
  EXPECT_EQ(state.last_error(), "jwks: file:///missing.json: not found");
  EXPECT_FALSE(state.TakeResponse("c").has_value());

  // Even a re-subscription on the stream does not bring the rejected version back.
  DiscoveryRequest resubscribe = Ack(r2);
  resubscribe.clear_response_nonce();
  ASSERT_TRUE(state.OnRequest(resubscribe).ok());
  EXPECT_FALSE(state.TakeResponse("c").has_value());

  state.OnSnapshot(Snapshot(3));
  auto r3 = state.TakeResponse("d");
  EXPECT_EQ(VersionOf(r3), 3);
  ASSERT_TRUE(state.OnRequest(Ack(*r3))->ack);
  EXPECT_EQ(state.applied_version(), 3);
}

TEST(PolicyServingStream, OneResponseInFlightAndTheNewestVersionNext) {
  ServingStream state;
  ASSERT_TRUE(state.OnRequest(First()).ok());
  state.OnSnapshot(Snapshot(1));
  auto r1 = *state.TakeResponse("a");
  state.OnSnapshot(Snapshot(2));
  state.OnSnapshot(Snapshot(3));
  EXPECT_FALSE(state.TakeResponse("b").has_value()) << "version 1 still awaits its ACK";
  ASSERT_TRUE(state.OnRequest(Ack(r1))->ack);
  EXPECT_EQ(VersionOf(state.TakeResponse("b")), 3) << "version 2 is skipped";
}

TEST(PolicyServingStream, StaleAndRepeatedNoncesChangeNothing) {
  ServingStream state;
  ASSERT_TRUE(state.OnRequest(First()).ok());
  state.OnSnapshot(Snapshot(1));
  auto r1 = *state.TakeResponse("a");
  DiscoveryRequest stale = Ack(r1);
  stale.set_response_nonce("not-ours");
  auto result = state.OnRequest(stale);
  ASSERT_TRUE(result.ok());
  EXPECT_TRUE(result->stale);
  EXPECT_FALSE(result->ack);
  EXPECT_EQ(state.applied_version(), 0);
  ASSERT_TRUE(state.OnRequest(Ack(r1))->ack);
  auto again = state.OnRequest(Ack(r1));
  EXPECT_TRUE(again->stale) << "a second ACK of the same nonce";
  // A stale NACK does not reject anything either.
  auto stale_nack = state.OnRequest(Nack(r1, "0", "late"));
  EXPECT_TRUE(stale_nack->stale);
  EXPECT_FALSE(stale_nack->nack);
  EXPECT_EQ(state.rejected_version(), 0);
}

TEST(PolicyServingStream, AnAckClaimingAnotherVersionIsARejection) {
  ServingStream state;
  ASSERT_TRUE(state.OnRequest(First()).ok());
  state.OnSnapshot(Snapshot(4));
  auto r = *state.TakeResponse("a");
  DiscoveryRequest odd = Ack(r);
  odd.set_version_info("3");
  auto result = state.OnRequest(odd);
  EXPECT_TRUE(result->nack);
  EXPECT_EQ(state.rejected_version(), 4);
  EXPECT_THAT(state.last_error(), HasSubstr("reports version 3"));
}

TEST(PolicyServingStream, VersionZeroIsTheEmptySetAndIsSentLikeAnyOther) {
  ServingStream state;
  ASSERT_TRUE(state.OnRequest(First()).ok());
  state.OnSnapshot(Snapshot(0, 0));
  auto r0 = state.TakeResponse("a");
  EXPECT_EQ(VersionOf(r0), 0);
  EXPECT_EQ(r0->version_info(), "0");
  ASSERT_TRUE(state.OnRequest(Ack(*r0))->ack);
  EXPECT_FALSE(state.TakeResponse("b").has_value());
  state.OnSnapshot(Snapshot(1));
  EXPECT_EQ(VersionOf(state.TakeResponse("b")), 1);
}

TEST(PolicyServingStream, AReconnectSaysWhatTheClientHasAndGetsTheCurrentVersion) {
  ServingStream state;
  state.OnSnapshot(Snapshot(5));
  EXPECT_FALSE(state.TakeResponse("a").has_value()) << "not before the first request";
  ASSERT_TRUE(state.OnRequest(First("hello-a", "5")).ok());
  EXPECT_EQ(state.applied_version(), 5);
  auto r = state.TakeResponse("a");
  EXPECT_EQ(VersionOf(r), 5) << "a new stream is a new subscription";
}

// ---- receiving side ----

// An `apply` for the receiving side that records the versions it is handed and answers with
// the statuses queued (then OK).
class Applier {
 public:
  xds::ResponseHandler Handler(std::vector<absl::Status> answers = {}) {
    answers_ = std::move(answers);
    return PolicyResponseHandler([this](const PolicySnapshotPtr& s) {
      applied.push_back(s->version());
      if (answers_.empty()) return absl::OkStatus();
      absl::Status answer = answers_.front();
      answers_.erase(answers_.begin());
      return answer;
    });
  }
  std::vector<int64_t> applied;

 private:
  std::vector<absl::Status> answers_;
};

TEST(PolicyReceivingStream, AppliesAcksAndReportsWhatItRuns) {
  xds::SotwClientState client(PolicySnapshotType(), ToXdsNode({"hello-a", "hello", "demo"}), {});
  DiscoveryRequest start = client.StartStream();
  EXPECT_EQ(start.node().id(), "hello-a");
  EXPECT_EQ(start.node().cluster(), "hello");
  EXPECT_EQ(start.node().metadata().fields().at("NAMESPACE").string_value(), "demo");
  EXPECT_EQ(start.version_info(), "");
  EXPECT_EQ(start.type_url(), kPolicySnapshotTypeUrl);
  EXPECT_EQ(start.resource_names_size(), 0) << "the snapshot is subscribed to without naming it";

  Applier applier;
  ServingStream server;
  ASSERT_TRUE(server.OnRequest(start).ok());
  server.OnSnapshot(Snapshot(1));
  DiscoveryRequest ack = client.OnResponse(*server.TakeResponse("n1"), applier.Handler());
  EXPECT_EQ(applier.applied, std::vector<int64_t>{1});
  EXPECT_EQ(ack.version_info(), "1");
  EXPECT_EQ(ack.response_nonce(), "n1");
  EXPECT_FALSE(ack.has_error_detail());
  EXPECT_EQ(client.applied_version(), "1");
  ASSERT_TRUE(server.OnRequest(ack)->ack);

  // A version the receiver cannot apply: NACK, keep version 1.
  server.OnSnapshot(Snapshot(2));
  DiscoveryRequest nack = client.OnResponse(
      *server.TakeResponse("n2"), applier.Handler({absl::FailedPreconditionError("cannot load the key set")}));
  EXPECT_EQ(applier.applied, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(nack.version_info(), "1");
  EXPECT_EQ(nack.response_nonce(), "n2");
  EXPECT_EQ(nack.error_detail().message(), "cannot load the key set");
  EXPECT_EQ(nack.error_detail().code(), static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(client.applied_version(), "1");
  EXPECT_EQ(client.rejected_version(), "2");
  EXPECT_EQ(client.last_error(), "cannot load the key set");
  auto result = server.OnRequest(nack);
  EXPECT_TRUE(result->nack);
  EXPECT_EQ(server.applied_version(), 1);

  // Reconnect: the new stream says version 1; a resend of what it runs is ACKed unapplied.
  DiscoveryRequest restart = client.StartStream();
  EXPECT_EQ(restart.version_info(), "1");
  ServingStream other_replica;
  ASSERT_TRUE(other_replica.OnRequest(restart).ok());
  other_replica.OnSnapshot(Snapshot(1));
  DiscoveryRequest reply = client.OnResponse(*other_replica.TakeResponse("n3"), applier.Handler());
  EXPECT_EQ(applier.applied, (std::vector<int64_t>{1, 2})) << "not applied again";
  EXPECT_FALSE(reply.has_error_detail());
  EXPECT_EQ(reply.response_nonce(), "n3");
  EXPECT_TRUE(other_replica.OnRequest(reply)->ack);
}

TEST(PolicyReceivingStream, AnInvalidResponseIsNackedWithTheReason) {
  xds::SotwClientState client(PolicySnapshotType(), ToXdsNode({"agent-1", "", ""}), {});
  client.StartStream();
  DiscoveryResponse response;
  response.set_type_url(std::string(kPolicySnapshotTypeUrl));
  response.set_version_info("7");
  response.set_nonce("x");
  auto* any = response.add_resources();
  any->set_type_url(std::string(kPolicySnapshotTypeUrl));
  any->set_value("\xff\xff not a protobuf");
  Applier applier;
  DiscoveryRequest reply = client.OnResponse(response, applier.Handler());
  EXPECT_TRUE(applier.applied.empty());
  EXPECT_EQ(reply.response_nonce(), "x");
  EXPECT_EQ(reply.version_info(), "");
  EXPECT_THAT(reply.error_detail().message(), HasSubstr("not a serialized meshid.policy.v1.PolicySnapshot"));
  EXPECT_EQ(client.rejected_version(), "7");
}

TEST(PolicyNodeTest, RoundTripsAndDropsANamespaceThatIsNotAShortString) {
  PolicyNode node = PolicyNodeOf(ToXdsNode({"hello-a", "hello", "demo"}));
  EXPECT_EQ(node.id, "hello-a");
  EXPECT_EQ(node.service, "hello");
  EXPECT_EQ(node.namespace_, "demo");
  envoy::config::core::v3::Node odd = ToXdsNode({"x", "", ""});
  (*odd.mutable_metadata()->mutable_fields())["NAMESPACE"].set_number_value(3);
  EXPECT_EQ(PolicyNodeOf(odd).namespace_, "");
  (*odd.mutable_metadata()->mutable_fields())["NAMESPACE"].set_string_value(std::string(254, 'n'));
  EXPECT_EQ(PolicyNodeOf(odd).namespace_, "");
}

// ---- snapshot checks (untrusted input) ----

DiscoveryResponse ResponseFor(const PolicySnapshot& snapshot, const std::string& version_info) {
  DiscoveryResponse response;
  response.set_type_url(std::string(kPolicySnapshotTypeUrl));
  response.set_version_info(version_info);
  auto* any = response.add_resources();
  any->set_type_url(std::string(kPolicySnapshotTypeUrl));
  snapshot.SerializeToString(any->mutable_value());
  return response;
}

TEST(DecodePolicyResponse, AcceptsWhatMakePolicySnapshotBuilds) {
  auto s = Snapshot(3, 5);
  EXPECT_EQ(s->digest().size(), 64u);
  auto decoded = DecodePolicyResponse(ResponseFor(*s, "3"));
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ((*decoded)->documents_size(), 5);
  PolicySnapshot empty;
  empty.set_version(1);
  empty.set_digest(PolicyDigest(empty.documents()));
  EXPECT_TRUE(DecodePolicyResponse(ResponseFor(empty, "1")).ok()) << "an empty policy set is a valid version";
}

TEST(DecodePolicyResponse, RefusesEveryMalformedResponseSayingWhy) {
  auto good = *Snapshot(3, 3);
  struct Case {
    std::string name;
    std::function<void(PolicySnapshot&, DiscoveryResponse&)> mutate;
    std::string error;
  };
  std::vector<Case> cases = {
      {"version mismatch", [](PolicySnapshot&, DiscoveryResponse& r) { r.set_version_info("4"); },
       "differs from the snapshot's version"},
      {"version not a number", [](PolicySnapshot&, DiscoveryResponse& r) { r.set_version_info("3a"); },
       "not a policy version"},
      {"type url", [](PolicySnapshot&, DiscoveryResponse& r) { r.set_type_url("x"); }, "type_url \"x\""},
      {"resource type url", [](PolicySnapshot&, DiscoveryResponse& r) { r.mutable_resources(0)->set_type_url("y"); },
       "resources[0].type_url"},
      {"two resources", [](PolicySnapshot&, DiscoveryResponse& r) { *r.add_resources() = r.resources(0); },
       "exactly one resource"},
      {"no resource", [](PolicySnapshot&, DiscoveryResponse& r) { r.clear_resources(); }, "exactly one resource"},
      {"version zero with documents",
       [](PolicySnapshot& s, DiscoveryResponse& r) {
         s.set_version(0);
         r.set_version_info("0");
       },
       "version 0 is the empty policy set"},
      {"negative version",
       [](PolicySnapshot& s, DiscoveryResponse& r) {
         s.set_version(-3);
         r.set_version_info("-3");
       },
       "must not be negative"},
      {"digest", [](PolicySnapshot& s, DiscoveryResponse&) { s.set_digest("00"); }, "does not match the documents"},
      {"content changed", [](PolicySnapshot& s, DiscoveryResponse&) { s.mutable_documents(1)->set_yaml("spec: {}"); },
       "does not match"},
      {"unsorted", [](PolicySnapshot& s, DiscoveryResponse&) { s.mutable_documents()->SwapElements(0, 2); },
       "out of order or listed twice"},
      {"duplicate", [](PolicySnapshot& s, DiscoveryResponse&) { *s.mutable_documents(1) = s.documents(0); },
       "documents[1]"},
      {"no kind", [](PolicySnapshot& s, DiscoveryResponse&) { s.mutable_documents(0)->clear_kind(); },
       "documents[0].kind"},
      {"no name", [](PolicySnapshot& s, DiscoveryResponse&) { s.mutable_documents(2)->clear_name(); },
       "documents[2].name"},
      {"no yaml", [](PolicySnapshot& s, DiscoveryResponse&) { s.mutable_documents(2)->clear_yaml(); },
       "documents[2].yaml"},
  };
  for (const auto& c : cases) {
    PolicySnapshot s = good;
    DiscoveryResponse r = ResponseFor(s, "3");
    c.mutate(s, r);
    if (r.resources_size() == 1 && r.resources(0).type_url() == kPolicySnapshotTypeUrl) {
      s.SerializeToString(r.mutable_resources(0)->mutable_value());
    }
    auto decoded = DecodePolicyResponse(r);
    EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_THAT(decoded.status().message(), HasSubstr(c.error)) << c.name;
  }
}

}  // namespace
}  // namespace meshid::policy
