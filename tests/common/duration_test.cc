#include "common/duration.h"

#include <gtest/gtest.h>

namespace meshid {
namespace {

TEST(Duration, ParsesGoAndDayForms) {
  EXPECT_EQ(*ParseDuration("90s"), absl::Seconds(90));
  EXPECT_EQ(*ParseDuration("1h30m"), absl::Minutes(90));
  EXPECT_EQ(*ParseDuration("24h"), absl::Hours(24));
  EXPECT_EQ(*ParseDuration("500ms"), absl::Milliseconds(500));
  EXPECT_EQ(*ParseDuration("7d"), absl::Hours(168));
  EXPECT_EQ(*ParseDuration("0"), absl::ZeroDuration());
}

TEST(Duration, RejectsBadInput) {
  for (const char* bad : {"", "1", "h", "-5s", "1x", "inf", "1d2h", "99999999d"}) {
    EXPECT_FALSE(ParseDuration(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace meshid
