// The /proc parsers (workload/proc.h): the kernel's formats, and refusals of everything else.
#include "workload/proc.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/files.h"
#include "tests/support/status_matchers.h"

namespace meshid::workload {
namespace {

using ::meshid::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// The lines around the ones the parser reads, as a 6.x kernel writes them.
std::string Status(const std::string& uid, const std::string& gid, const std::string& groups) {
  return absl::StrCat("Name:\twhoami\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t42\nPid:\t42\nPPid:\t1\n",
                      "TracerPid:\t0\n", uid, "\n", gid, "\nFDSize:\t64\n", groups,
                      "\nNStgid:\t42\nNSpid:\t42\nVmPeak:\t    1000 kB\n");
}

TEST(ParseProcStatusTest, ReadsTheRealIdsAndTheGroups) {
  auto ids = ParseProcStatus(Status("Uid:\t1000\t0\t0\t0", "Gid:\t100\t0\t0\t0", "Groups:\t4 24 100 65534 "));
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(ids->real_uid, 1000u);
  EXPECT_EQ(ids->real_gid, 100u);
  EXPECT_THAT(ids->groups, ElementsAre(4, 24, 100, 65534));
}

TEST(ParseProcStatusTest, NoGroups) {
  // Today's kernels write a lone space; older ones nothing.
  for (const char* groups : {"Groups:\t ", "Groups:\t"}) {
    auto ids = ParseProcStatus(Status("Uid:\t0\t0\t0\t0", "Gid:\t0\t0\t0\t0", groups));
    ASSERT_TRUE(ids.ok()) << groups << ": " << ids.status();
    EXPECT_THAT(ids->groups, IsEmpty());
  }
}

TEST(ParseProcStatusTest, GroupsWithoutTrailingSpace) {
  auto ids = ParseProcStatus(Status("Uid:\t0\t0\t0\t0", "Gid:\t0\t0\t0\t0", "Groups:\t1 2"));
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_THAT(ids->groups, ElementsAre(1, 2));
}

TEST(ParseProcStatusTest, LargestId) {
  auto ids = ParseProcStatus(Status("Uid:\t4294967294\t0\t0\t0", "Gid:\t0\t0\t0\t0", "Groups:\t4294967294 "));
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(ids->real_uid, 4294967294u);
}

TEST(ParseProcStatusTest, ThisProcess) {
  auto text = ReadFile("/proc/self/status");
  ASSERT_TRUE(text.ok()) << text.status();
  auto ids = ParseProcStatus(*text);
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(ids->real_uid, getuid());
  EXPECT_EQ(ids->real_gid, getgid());
}

struct Refusal {
  std::string uid, gid, groups;
  std::string message;
};

class ParseProcStatusRefusalTest : public ::testing::TestWithParam<Refusal> {};

TEST_P(ParseProcStatusRefusalTest, Refuses) {
  const Refusal& r = GetParam();
  EXPECT_THAT(ParseProcStatus(Status(r.uid, r.gid, r.groups)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(r.message)));
}

const char kUid[] = "Uid:\t1\t1\t1\t1";
const char kGid[] = "Gid:\t1\t1\t1\t1";
const char kGroups[] = "Groups:\t1 ";

INSTANTIATE_TEST_SUITE_P(
    Lines, ParseProcStatusRefusalTest,
    ::testing::Values(
        Refusal{"Uid:\t1\t1\t1", kGid, kGroups, "\"Uid:\" line: 3 tab-separated fields, want 4"},
        Refusal{"Uid:\t1\t1\t1\t1\t1", kGid, kGroups, "\"Uid:\" line: 5 tab-separated fields, want 4"},
        Refusal{"Uid: 1\t1\t1\t1", kGid, kGroups, "\"Uid:\" line: no tab after the colon"},
        Refusal{"Uid:", kGid, kGroups, "\"Uid:\" line: no tab after the colon"},
        Refusal{"Uid:\t-1\t1\t1\t1", kGid, kGroups, "\"Uid:\" line: field 1 is not an id below 2^32-1"},
        Refusal{"Uid:\t01\t1\t1\t1", kGid, kGroups, "\"Uid:\" line: field 1 is not an id below 2^32-1"},
        Refusal{"Uid:\t4294967295\t1\t1\t1", kGid, kGroups, "field 1 is not an id below 2^32-1"},
        Refusal{"Uid:\t99999999999999999999999\t1\t1\t1", kGid, kGroups, "field 1 is not an id below 2^32-1"},
        Refusal{"Uid:\t1\t1\t1\t", kGid, kGroups, "\"Uid:\" line: field 4 is not an id"},
        Refusal{"Uid:\t1\t1\t1\t1 ", kGid, kGroups, "\"Uid:\" line: field 4 is not an id"},
        Refusal{"Uid:\t+1\t1\t1\t1", kGid, kGroups, "field 1 is not an id"},
        Refusal{"Uid:\t1\t1 \t1\t1", kGid, kGroups, "field 2 is not an id"},
        Refusal{kUid, "Gid:\tx\t1\t1\t1", kGroups, "\"Gid:\" line: field 1 is not an id"},
        Refusal{kUid, "Gid:\t1\t1\t1", kGroups, "\"Gid:\" line: 3 tab-separated fields, want 4"},
        Refusal{kUid, kGid, "Groups:\t1  2 ", "\"Groups:\" line: group 2 is not an id"},
        Refusal{kUid, kGid, "Groups:\t 1 ", "\"Groups:\" line: group 1 is not an id"},
        Refusal{kUid, kGid, "Groups:\t1\t2 ", "\"Groups:\" line: group 1 is not an id"},
        Refusal{kUid, kGid, "Groups:\t1 4294967295 ", "\"Groups:\" line: group 2 is not an id below 2^32-1"},
        Refusal{kUid, kGid, "Groups:\t1  ", "\"Groups:\" line: group 2 is not an id"},
        Refusal{kUid, kGid, "Groups: 1", "\"Groups:\" line: no tab after the colon"},
        // A second line could only be injected (the kernel escapes newlines in the name): refused,
        // whichever comes first.
        Refusal{absl::StrCat(kUid, "\nUid:\t0\t0\t0\t0"), kGid, kGroups, "\"Uid:\" line: appears more than once"},
        Refusal{kUid, absl::StrCat("Gid:\t0\t0\t0\t0\n", kGid), kGroups, "\"Gid:\" line: appears more than once"},
        Refusal{kUid, kGid, absl::StrCat(kGroups, "\nGroups:\t0 "), "\"Groups:\" line: appears more than once"},
        Refusal{"Uidx:\t1\t1\t1\t1", kGid, kGroups, "no \"Uid:\" line"},
        Refusal{kUid, "gid:\t1\t1\t1\t1", kGroups, "no \"Gid:\" line"},
        Refusal{kUid, kGid, "", "no \"Groups:\" line"}));

TEST(ParseProcStatusTest, EmptyInput) {
  EXPECT_THAT(ParseProcStatus(""), StatusIs(absl::StatusCode::kInvalidArgument, "no \"Uid:\" line"));
}

TEST(ParseProcStatusTest, TooManyGroups) {
  std::string groups = "Groups:\t";
  for (size_t i = 0; i <= kMaxSupplementaryGroups; ++i) absl::StrAppend(&groups, i, " ");
  EXPECT_THAT(ParseProcStatus(Status(kUid, kGid, groups)),
              StatusIs(absl::StatusCode::kInvalidArgument, "\"Groups:\" line: more than 65536 groups"));
  groups = "Groups:\t";
  for (size_t i = 0; i < kMaxSupplementaryGroups; ++i) absl::StrAppend(&groups, i, " ");
  auto ids = ParseProcStatus(Status(kUid, kGid, groups));
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(ids->groups.size(), kMaxSupplementaryGroups);
}

TEST(ParseProcStatStartTimeTest, CountsFieldsFromTheLastParenthesis) {
  // A command name may hold spaces and parentheses: "a) 1 2 (b".
  std::string stat = "42 (a) 1 2 (b) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 5000 100 ";
  stat += "18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 1 1 1 1 1 1 1 0\n";
  auto start = ParseProcStatStartTime(stat);
  ASSERT_TRUE(start.ok()) << start.status();
  EXPECT_EQ(*start, 123456u);
}

TEST(ParseProcStatStartTimeTest, ThisProcess) {
  auto text = ReadFile("/proc/self/stat");
  ASSERT_TRUE(text.ok()) << text.status();
  auto start = ParseProcStatStartTime(*text);
  ASSERT_TRUE(start.ok()) << start.status();
  EXPECT_GT(*start, 0u);
}

TEST(ParseProcStatStartTimeTest, Refusals) {
  EXPECT_THAT(ParseProcStatStartTime(""),
              StatusIs(absl::StatusCode::kInvalidArgument, "no command name in parentheses"));
  EXPECT_THAT(ParseProcStatStartTime("42 x) S 1"),
              StatusIs(absl::StatusCode::kInvalidArgument, "no command name in parentheses"));
  EXPECT_THAT(ParseProcStatStartTime("42 (x)S 1"),
              StatusIs(absl::StatusCode::kInvalidArgument, "no space after the command name"));
  EXPECT_THAT(ParseProcStatStartTime("42 (x) S 1 2 3"),
              StatusIs(absl::StatusCode::kInvalidArgument, "only 6 fields, want at least 22"));
  EXPECT_THAT(ParseProcStatStartTime("42 (x) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 -5 1"),
              StatusIs(absl::StatusCode::kInvalidArgument, "field 22 (starttime) is not a decimal number"));
  EXPECT_THAT(ParseProcStatStartTime("42 (x) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 99999999999999999999 1"),
              StatusIs(absl::StatusCode::kInvalidArgument, "field 22 (starttime) is not a decimal number"));
}

}  // namespace
}  // namespace meshid::workload
