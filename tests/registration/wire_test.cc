// The registration stream's wire form without any transport: what a server publishes for one
// parent, and the agent's check of a received response (every refusal an InvalidArgument naming
// the field).
#include "registration/wire.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "tests/support/status_matchers.h"

namespace meshid::registration {
namespace {

using envoy::service::discovery::v3::DiscoveryResponse;
using meshid::registration::v1::EntrySet;
using ::meshid::testing::StatusIs;
using ::testing::HasSubstr;

constexpr char kAgent[] = "spiffe://cluster.local/ns/istio-system/sa/node-1";

RegistryEntry Entry(const std::string& name, std::vector<std::string> selectors = {"unix:uid:1000"}) {
  RegistryEntry entry;
  entry.spiffe_id = absl::StrCat("spiffe://cluster.local/ns/default/sa/", name);
  entry.parent_id = kAgent;
  entry.selectors = std::move(selectors);
  entry.max_ttl = absl::Hours(1);
  entry.dns_names = {"db.local"};
  return entry;
}

DiscoveryResponse Response(const xds::Resource& resource) {
  DiscoveryResponse response;
  response.set_type_url(std::string(kEntrySetTypeUrl));
  response.set_version_info(resource.version);
  response.set_nonce("n1");
  auto* any = response.add_resources();
  any->set_type_url(std::string(kEntrySetTypeUrl));
  any->set_value(std::string(resource.body.view()));
  return response;
}

// A response carrying `set` as is (to plant what a valid server would never send).
DiscoveryResponse RawResponse(const EntrySet& set) {
  DiscoveryResponse response;
  response.set_type_url(std::string(kEntrySetTypeUrl));
  response.set_version_info(absl::StrCat(set.registry_generation(), ".abcd"));
  auto* any = response.add_resources();
  any->set_type_url(std::string(kEntrySetTypeUrl));
  any->set_value(set.SerializeAsString());
  return response;
}

TEST(EntrySetResource, RoundTripsAndVersionsByGenerationAndContent) {
  const auto resource = EntrySetResource(kAgent, {Entry("db"), Entry("web", {"unix:path:/usr/bin/web"})}, 12);
  EXPECT_EQ(resource.name, kAgent);
  EXPECT_TRUE(absl::StartsWith(resource.version, "12.")) << resource.version;
  auto set = DecodeEntrySetResponse(Response(resource), kAgent);
  ASSERT_TRUE(set.ok()) << set.status();
  ASSERT_EQ(set->entries_size(), 2);
  EXPECT_EQ(set->entries(0).spiffe_id(), "spiffe://cluster.local/ns/default/sa/db");
  EXPECT_EQ(set->entries(0).max_ttl_seconds(), 3600);
  EXPECT_EQ(set->entries(0).dns_names(0), "db.local");
  EXPECT_EQ(set->entries(1).selectors(0), "unix:path:/usr/bin/web");
  EXPECT_EQ(set->registry_generation(), 12);
  // Same entries, same generation: same version; a change of either: another.
  EXPECT_EQ(EntrySetResource(kAgent, {Entry("db"), Entry("web", {"unix:path:/usr/bin/web"})}, 12).version,
            resource.version);
  EXPECT_NE(EntrySetResource(kAgent, {Entry("db")}, 12).version, resource.version);
  EXPECT_NE(EntrySetResource(kAgent, {Entry("db"), Entry("web", {"unix:path:/usr/bin/web"})}, 13).version,
            resource.version);
}

TEST(EntrySetResource, EmptySetIsAValidAnswer) {
  auto set = DecodeEntrySetResponse(Response(EntrySetResource(kAgent, {}, 3)), kAgent);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->entries_size(), 0);
}

TEST(DecodeEntrySetResponse, RefusesAnotherAgentsEntries) {
  auto response = Response(EntrySetResource(kAgent, {Entry("db")}, 1));
  EXPECT_THAT(DecodeEntrySetResponse(response, "spiffe://cluster.local/ns/istio-system/sa/node-2"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("resources[0].parent_id")));

  EntrySet set;
  set.set_parent_id(kAgent);
  set.set_registry_generation(1);
  auto* entry = set.add_entries();
  entry->set_spiffe_id("spiffe://cluster.local/ns/default/sa/db");
  entry->set_parent_id("spiffe://cluster.local/ns/istio-system/sa/node-2");
  entry->add_selectors("unix:uid:0");
  EXPECT_THAT(DecodeEntrySetResponse(RawResponse(set), kAgent),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("entries[0].parent_id")));
}

TEST(DecodeEntrySetResponse, RefusesMalformedEntries) {
  struct Case {
    std::string what;
    std::function<void(meshid::registration::v1::WorkloadEntry&)> plant;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"bad id", [](auto& e) { e.set_spiffe_id("http://x"); }, "entries[0].spiffe_id"},
      {"no selector", [](auto& e) { e.clear_selectors(); }, "entries[0].selectors: 0 selectors"},
      {"bad selector", [](auto& e) { e.set_selectors(0, "unix:uid:x"); }, "entries[0].selectors"},
      {"unsorted",
       [](auto& e) {
         e.clear_selectors();
         e.add_selectors("unix:uid:2");
         e.add_selectors("unix:gid:1");
       },
       "not canonical, sorted and unique"},
      {"negative ttl", [](auto& e) { e.set_max_ttl_seconds(-1); }, "max_ttl_seconds"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    EntrySet set;
    set.set_parent_id(kAgent);
    set.set_registry_generation(4);
    auto* entry = set.add_entries();
    entry->set_spiffe_id("spiffe://cluster.local/ns/default/sa/db");
    entry->set_parent_id(kAgent);
    entry->add_selectors("unix:uid:1000");
    c.plant(*entry);
    EXPECT_THAT(DecodeEntrySetResponse(RawResponse(set), kAgent),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)));
  }
}

TEST(DecodeEntrySetResponse, RefusesDuplicatesAndEnvelopeErrors) {
  auto response = Response(EntrySetResource(kAgent, {Entry("db"), Entry("db")}, 2));
  EXPECT_THAT(DecodeEntrySetResponse(response, kAgent),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("listed twice")));

  response = Response(EntrySetResource(kAgent, {Entry("db")}, 2));
  response.set_type_url("type.googleapis.com/other");
  EXPECT_THAT(DecodeEntrySetResponse(response, kAgent),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("type_url")));

  response = Response(EntrySetResource(kAgent, {Entry("db")}, 2));
  response.add_resources()->CopyFrom(response.resources(0));
  EXPECT_THAT(DecodeEntrySetResponse(response, kAgent),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("exactly one")));

  response = Response(EntrySetResource(kAgent, {Entry("db")}, 2));
  response.mutable_resources(0)->set_value("\xff\xff not a proto");
  EXPECT_THAT(DecodeEntrySetResponse(response, kAgent),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a serialized")));

  response = Response(EntrySetResource(kAgent, {Entry("db")}, 2));
  response.set_version_info("3.abcd");
  EXPECT_THAT(DecodeEntrySetResponse(response, kAgent),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("differs from the set's generation 2")));
  response.set_version_info("two");
  EXPECT_THAT(DecodeEntrySetResponse(response, kAgent),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("version_info")));
}

}  // namespace
}  // namespace meshid::registration
