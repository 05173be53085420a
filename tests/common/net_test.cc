#include "common/net.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace meshid {
namespace {

using ::testing::HasSubstr;

TEST(ParseServerTarget, OneAddressIsTheTargetAsGiven) {
  for (const char* text : {"127.0.0.1:15012", "istiod.istio-system.svc:15012", "[::1]:15012"}) {
    auto target = ParseServerTarget(text);
    ASSERT_TRUE(target.ok()) << text << ": " << target.status();
    EXPECT_EQ(target->target, text);
    EXPECT_EQ(target->tls_name, "") << "gRPC verifies the host of the target";
  }
}

TEST(ParseServerTarget, AListOfAddressesIsOneChannelOverAllOfThem) {
  auto v4 = ParseServerTarget("10.0.0.1:15012, 10.0.0.2:15013");
  ASSERT_TRUE(v4.ok()) << v4.status();
  EXPECT_EQ(v4->target, "ipv4:10.0.0.1:15012,10.0.0.2:15013");
  EXPECT_EQ(v4->tls_name, "10.0.0.1");
  auto v6 = ParseServerTarget("[fd00::1]:15012,[fd00::2]:15012");
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(v6->target, "ipv6:[fd00::1]:15012,[fd00::2]:15012");
  EXPECT_EQ(v6->tls_name, "fd00::1");
}

TEST(ParseServerTarget, BadListsSayWhichItemAndWhy) {
  const struct {
    const char* text;
    const char* message;
  } cases[] = {
      {"", "an empty address"},
      {"10.0.0.1:15012,", "item 2 of the list: an empty address"},
      {"10.0.0.1:15012,10.0.0.2", "item 2 of the list: address \"10.0.0.2\" has no :port"},
      {"10.0.0.1:0", "has port 0"},
      {"10.0.0.1:15012,istiod:15012", "item 2 of the list: \"istiod\" is not an IP address"},
      {"10.0.0.1:15012,[fd00::1]:15012", "item 2 of the list: IPv4 and IPv6 addresses cannot be mixed"},
      {"10.0.0.1:99999", "invalid port"},
  };
  for (const auto& c : cases) {
    auto target = ParseServerTarget(c.text);
    ASSERT_FALSE(target.ok()) << c.text;
    EXPECT_EQ(target.status().code(), absl::StatusCode::kInvalidArgument) << c.text;
    EXPECT_THAT(target.status().message(), HasSubstr(c.message)) << c.text;
  }
}

}  // namespace
}  // namespace meshid
