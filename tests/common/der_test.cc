// common/der: the strict reader and the time writer the CRL builder uses for every entry.
#include "common/der.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "tests/support/status_matchers.h"

namespace meshid::der {
namespace {

using ::meshid::testing::StatusIs;
using ::testing::HasSubstr;

absl::Time At(int year, int month, int day, int hour, int minute, int second) {
  return absl::FromCivil(absl::CivilSecond(year, month, day, hour, minute, second), absl::UTCTimeZone());
}

TEST(DerTest, AppendTimeTlvWritesWhatTimeTlvWrites) {
  for (absl::Time t : {At(1950, 1, 1, 0, 0, 0), At(1949, 12, 31, 23, 59, 59), At(2049, 12, 31, 23, 59, 59),
                       At(2050, 1, 1, 0, 0, 0), At(2026, 2, 28, 1, 2, 3), At(9999, 12, 31, 23, 59, 59),
                       At(1000, 1, 1, 0, 0, 0), At(2026, 12, 7, 4, 5, 6) + absl::Milliseconds(999)}) {
    std::string out = "x";
    ASSERT_TRUE(AppendTimeTlv(&out, t)) << t;
    EXPECT_EQ(out, "x" + TimeTlv(t)) << t;
  }
  // Four digits of year before 1000 too (TimeTlv, through absl::FormatTime, writes fewer).
  std::string out;
  ASSERT_TRUE(AppendTimeTlv(&out, At(0, 1, 1, 0, 0, 0)));
  EXPECT_EQ(out, std::string("\x18\x0f") + "00000101000000Z");
  out.clear();
  EXPECT_EQ(TimeTlv(At(2049, 1, 2, 3, 4, 5)), std::string("\x17\x0d") + "490102030405Z");
  EXPECT_EQ(TimeTlv(At(2050, 1, 2, 3, 4, 5)), std::string("\x18\x0f") + "20500102030405Z");
  for (absl::Time t :
       {absl::InfinitePast(), absl::InfiniteFuture(), At(10000, 1, 1, 0, 0, 0), At(-1, 12, 31, 0, 0, 0)}) {
    EXPECT_FALSE(AppendTimeTlv(&out, t)) << t;
  }
  EXPECT_EQ(out, "");
}

TEST(DerTest, ReaderRefusesWhatIsNotStrictDer) {
  const std::string bytes("\x02\x01\x05\x30\x00", 5);  // a Reader views, never owns, its bytes
  Reader ok(bytes);
  auto first = ok.Next();
  ASSERT_OK(first.status());
  EXPECT_EQ(first->tag, kInteger);
  EXPECT_EQ(first->value, "\x05");
  EXPECT_EQ(first->whole, "\x02\x01\x05");
  ASSERT_OK(ok.Expect(kSequence, "second").status());
  EXPECT_TRUE(ok.empty());

  EXPECT_THAT(Reader("\x02").Next(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("truncated")));
  EXPECT_THAT(Reader(std::string("\x30\x80\x00\x00", 4)).Next(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("indefinite")));
  EXPECT_THAT(Reader(std::string("\x04\x81\x05xxxxx", 8)).Next(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("non-minimal")));
  EXPECT_THAT(Reader(std::string("\x04\x82\x00\x80", 4) + std::string(0x80, 'x')).Next(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("non-minimal")));
  EXPECT_THAT(Reader("\x04\x05xx").Next(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("beyond")));
  EXPECT_THAT(Reader("\x04\x85\x01\x02\x03\x04\x05").Next(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bad length")));
  EXPECT_THAT(Reader("\x1f\x01\x00").Next(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("high tag")));
  EXPECT_THAT(Reader(std::string("\x02\x01\x05", 3)).Expect(kSequence, "field"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("field: unexpected DER tag")));
}

}  // namespace
}  // namespace meshid::der
