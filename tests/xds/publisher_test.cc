// xds::ResourcePublisher: the in-memory provider the streams fed from the centre use.
#include "xds/publisher.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <vector>

#include "absl/strings/str_cat.h"

namespace meshid::xds {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

Resource Make(const std::string& name, const std::string& version, const std::string& body) {
  Resource r;
  r.name = name;
  r.version = version;
  r.body = SecretString(body);
  return r;
}

class Recorder final : public ResourceWatcher {
 public:
  void OnUpdate(const ResourceUpdate& update) override {
    seen.push_back(absl::StrCat(update.name, "@", update.resource->version, "#", update.resource->generation));
  }
  std::vector<std::string> seen;  // the test publishes on its own thread
};

TEST(ResourcePublisherTest, ASubscriptionGetsTheCurrentResourceThenEveryNewOne) {
  ResourcePublisher publisher({"a", "b"});
  ASSERT_TRUE(publisher.Publish(Make("a", "1", "one")).ok());
  auto watcher = std::make_shared<Recorder>();
  auto sub = publisher.Subscribe({.bearer_token = "ignored-token"}, watcher);
  ASSERT_TRUE(sub.ok());
  auto current = (*sub)->SetNames({"a", "b"});
  ASSERT_TRUE(current.ok());
  ASSERT_EQ(current->size(), 1u) << "b has nothing yet; it arrives through the watcher";
  EXPECT_EQ((*current)[0].resource->version, "1");

  ASSERT_TRUE(publisher.Publish(Make("b", "7", "seven")).ok());
  ASSERT_TRUE(publisher.Publish(Make("a", "2", "two")).ok());
  EXPECT_THAT(watcher->seen, ElementsAre("b@7#2", "a@2#3")) << "generations grow with every publish";
  EXPECT_EQ(publisher.Current("a")->version, "2");
  EXPECT_EQ(publisher.Current("b")->body.view(), "seven");
}

TEST(ResourcePublisherTest, RepublishingTheSameContentChangesNothing) {
  ResourcePublisher publisher({"a"});
  auto first = publisher.Publish(Make("a", "1", "one"));
  auto watcher = std::make_shared<Recorder>();
  auto sub = *publisher.Subscribe({}, watcher);
  ASSERT_TRUE(sub->SetNames({"a"}).ok());
  auto again = publisher.Publish(Make("a", "1", "one"));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *first) << "the current resource stays";
  EXPECT_THAT(watcher->seen, IsEmpty());
  ASSERT_TRUE(publisher.Publish(Make("a", "1", "other bytes")).ok());
  EXPECT_THAT(watcher->seen, ElementsAre("a@1#2")) << "same version, other content: a change";
}

TEST(ResourcePublisherTest, OnlyWatchedNamesAreDeliveredAndUnknownNamesRefused) {
  ResourcePublisher publisher({"a", "b"});
  EXPECT_TRUE(publisher.IsKnownName("a"));
  EXPECT_FALSE(publisher.IsKnownName("c"));
  auto watcher = std::make_shared<Recorder>();
  auto sub = *publisher.Subscribe({}, watcher);
  ASSERT_TRUE(sub->SetNames({"a"}).ok());
  auto unknown = sub->SetNames({"a", "c"});
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(unknown.status().message(), HasSubstr("\"c\""));
  ASSERT_TRUE(publisher.Publish(Make("b", "1", "x")).ok());
  ASSERT_TRUE(publisher.Publish(Make("a", "1", "y")).ok());
  EXPECT_THAT(watcher->seen, ElementsAre("a@1#2")) << "still watching a only";
  EXPECT_EQ(publisher.Publish(Make("c", "1", "z")).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ResourcePublisherTest, WithoutDeclaredNamesEveryNameIsServed) {
  ResourcePublisher publisher;
  EXPECT_TRUE(publisher.IsKnownName("anything"));
  EXPECT_TRUE(publisher.Publish(Make("anything", "1", "x")).ok());
}

TEST(ResourcePublisherTest, ADestroyedSubscriptionHearsNothingMore) {
  ResourcePublisher publisher({"a"});
  auto watcher = std::make_shared<Recorder>();
  auto sub = *publisher.Subscribe({}, watcher);
  ASSERT_TRUE(sub->SetNames({"a"}).ok());
  sub.reset();
  ASSERT_TRUE(publisher.Publish(Make("a", "1", "x")).ok());
  EXPECT_THAT(watcher->seen, IsEmpty());
}

}  // namespace
}  // namespace meshid::xds
