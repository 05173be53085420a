// The agent's receiver: entries put in force only when they decode for this agent, matched
// against a workload's selectors, and watchers told of every change.
#include "registration/receiver.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "registration/wire.h"
#include "tests/support/status_matchers.h"

namespace meshid::registration {
namespace {

using envoy::service::discovery::v3::DiscoveryResponse;
using ::meshid::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr char kAgent[] = "spiffe://cluster.local/ns/istio-system/sa/node-1";

RegistryEntry Entry(const std::string& name, std::vector<std::string> selectors) {
  RegistryEntry entry;
  entry.spiffe_id = "spiffe://cluster.local/ns/default/sa/" + name;
  entry.parent_id = kAgent;
  entry.selectors = std::move(selectors);
  return entry;
}

DiscoveryResponse Response(const std::vector<RegistryEntry>& entries, int64_t generation) {
  const auto resource = EntrySetResource(kAgent, entries, generation);
  DiscoveryResponse response;
  response.set_type_url(std::string(kEntrySetTypeUrl));
  response.set_version_info(resource.version);
  auto* any = response.add_resources();
  any->set_type_url(std::string(kEntrySetTypeUrl));
  any->set_value(std::string(resource.body.view()));
  return response;
}

std::vector<std::string> Ids(const std::vector<const NodeEntry*>& entries) {
  std::vector<std::string> ids;
  for (const auto* e : entries) ids.push_back(e->spiffe_id);
  return ids;
}

class EntryReceiverTest : public ::testing::Test {
 protected:
  MetricsRegistry metrics_;
  std::string own_id_ = kAgent;
  EntryReceiver receiver_{[this] { return own_id_; }, metrics_, MakeNullLogger()};
};

TEST_F(EntryReceiverTest, MatchesEveryEntryWhoseSelectorsTheWorkloadHas) {
  ASSERT_TRUE(receiver_
                  .OnResponse(Response(
                      {Entry("db", {"unix:uid:1000"}), Entry("db-admin", {"unix:group:admin", "unix:uid:1000"}),
                       Entry("web", {"unix:path:/usr/bin/web", "unix:uid:1000"})},
                      5))
                  .ok());
  auto entries = receiver_.current();
  ASSERT_NE(entries, nullptr);
  EXPECT_EQ(entries->registry_generation, 5);
  EXPECT_THAT(Ids(entries->Matching({"unix:uid:1000", "unix:gid:1000"})),
              ElementsAre("spiffe://cluster.local/ns/default/sa/db"));
  EXPECT_THAT(Ids(entries->Matching({"unix:uid:1000", "unix:group:admin", "unix:path:/usr/bin/web"})),
              ElementsAre("spiffe://cluster.local/ns/default/sa/db", "spiffe://cluster.local/ns/default/sa/db-admin",
                          "spiffe://cluster.local/ns/default/sa/web"));
  EXPECT_THAT(Ids(entries->Matching({"unix:uid:1001", "unix:path:/usr/bin/web"})), IsEmpty());
  EXPECT_THAT(Ids(entries->Matching({})), IsEmpty());
}

TEST_F(EntryReceiverTest, RefusedSetLeavesTheEntriesInForce) {
  ASSERT_TRUE(receiver_.OnResponse(Response({Entry("db", {"unix:uid:1000"})}, 5)).ok());
  own_id_ = "spiffe://cluster.local/ns/istio-system/sa/node-2";  // as if re-identified
  EXPECT_THAT(receiver_.OnResponse(Response({}, 6)), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(receiver_.current()->entries.size(), 1u);
  // Before the agent knows its own ID, the set's parent stands in.
  own_id_ = "";
  EXPECT_TRUE(receiver_.OnResponse(Response({}, 6)).ok());
  EXPECT_TRUE(receiver_.current()->entries.empty());
}

TEST_F(EntryReceiverTest, WatchersHearOfEveryChangeUntilTheirHandleGoes) {
  int calls = 0;
  auto watch = receiver_.AddWatch([&] { ++calls; });
  ASSERT_TRUE(receiver_.OnResponse(Response({Entry("db", {"unix:uid:1000"})}, 5)).ok());
  ASSERT_TRUE(receiver_.OnResponse(Response({}, 6)).ok());
  EXPECT_EQ(calls, 2);
  EXPECT_TRUE(receiver_.current()->entries.empty());
  watch.reset();
  ASSERT_TRUE(receiver_.OnResponse(Response({Entry("db", {"unix:uid:1000"})}, 7)).ok());
  EXPECT_EQ(calls, 2);
}

}  // namespace
}  // namespace meshid::registration
