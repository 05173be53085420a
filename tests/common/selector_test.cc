#include "common/selector.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/status_matchers.h"

namespace meshid {
namespace {

using ::meshid::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(ParseSelector, AcceptsEveryKindInItsCanonicalForm) {
  for (const char* text : {
           "unix:uid:0",
           "unix:uid:1000",
           "unix:uid:4294967294",
           "unix:gid:65534",
           "unix:user:www-data",
           "unix:user:svc.web_1",
           "unix:user:HOST01$",
           "unix:group:docker",
           "unix:path:/",
           "unix:path:/usr/bin/envoy",
           "unix:path:/opt/app v2/bin/server:8080",  // spaces and colons are path characters
           "unix:path:/usr/lib/..so/.hidden",
           "unix:sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
       }) {
    auto parsed = ParseSelector(text);
    ASSERT_TRUE(parsed.ok()) << text << ": " << parsed.status();
    EXPECT_EQ(*parsed, text);
  }
  std::string longest_name(256, 'a');
  EXPECT_EQ(*ParseSelector("unix:user:" + longest_name), "unix:user:" + longest_name);
}

TEST(ParseSelector, LowerCasesHexAndRewritesNothingElse) {
  EXPECT_EQ(*ParseSelector("unix:sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"),
            "unix:sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(*ParseSelector("unix:user:Admin"), "unix:user:Admin");
  EXPECT_EQ(*ParseSelector("unix:path:/Usr/Bin/X"), "unix:path:/Usr/Bin/X");
}

struct Refusal {
  std::string text;
  std::string message;
};

TEST(ParseSelector, RefusesWithWhatIsWrong) {
  const std::string forms = "accepted: unix:uid:<N>, unix:user:<name>, unix:gid:<N>, unix:group:<name>";
  for (const Refusal& r : std::vector<Refusal>{
           {"", "not of the form <type>:<key>:<value>; " + forms},
           {"uid", "not of the form <type>:<key>:<value>"},
           {"k8s:ns:default", "selector \"k8s:ns:default\": unknown type \"k8s\"; " + forms},
           {"Unix:uid:0", "unknown type \"Unix\""},
           {":uid:0", "unknown type \"\""},
           {"unix:pid:42", "unknown key \"pid\"; " + forms},
           {"unix:UID:0", "unknown key \"UID\""},
           {"unix:", "unknown key \"\""},
           {"unix:uid", "the uid is empty; " + forms},
           {"unix:uid:", "the uid is empty"},
           {"unix:path:", "the path is empty"},
           {"unix:sha256:", "the sha256 is empty"},
           {"unix:uid:abc", "uid must be a decimal number from 0 to 4294967294 without leading zeros"},
           {"unix:uid:-1", "uid must be a decimal number"},
           {"unix:uid:+1", "uid must be a decimal number"},
           {"unix:uid: 1", "uid must be a decimal number"},
           {"unix:uid:1.0", "uid must be a decimal number"},
           {"unix:uid:007", "without leading zeros"},
           {"unix:uid:00", "without leading zeros"},
           {"unix:uid:4294967295", "from 0 to 4294967294"},  // (uid_t)-1
           {"unix:gid:4294967296", "gid must be a decimal number from 0 to 4294967294"},
           {"unix:gid:99999999999999999999999", "gid must be a decimal number"},
           {"unix:user:root:x", "user must be a name of characters [A-Za-z0-9._-] (a trailing \"$\" allowed)"},
           {"unix:user:a b", "user must be a name of characters"},
           {"unix:user:$", "user must be a name of characters"},
           {"unix:user:a$b", "user must be a name of characters"},
           {"unix:user:a$$", "user must be a name of characters"},
           {"unix:group:wheel/x", "group must be a name of characters"},
           {"unix:group:caf\xc3\xa9", "group must be a name of characters"},
           {"unix:user:" + std::string(257, 'a'), "user name is longer than 256 bytes"},
           {"unix:path:usr/bin/envoy", "path must be absolute (start with \"/\")"},
           {"unix:path:./envoy", "path must be absolute"},
           {std::string("unix:path:/usr/bin/\0x", 21), "path must not contain NUL"},
           {"unix:path://usr/bin", "path must be normal: no \"//\", \"/./\" or \"/../\""},
           {"unix:path:/usr//bin", "path must be normal"},
           {"unix:path:/usr/./bin", "path must be normal"},
           {"unix:path:/usr/../bin", "path must be normal"},
           {"unix:path:/usr/bin/..", "path must be normal"},
           {"unix:path:/usr/bin/.", "path must be normal"},
           {"unix:sha256:abc", "sha256 must be 64 hex digits"},
           {"unix:sha256:" + std::string(63, 'a') + "g", "sha256 must be 64 hex digits"},
           {"unix:sha256:" + std::string(65, 'a'), "sha256 must be 64 hex digits"},
           {"unix:path:/" + std::string(kMaxSelectorLength, 'a'), "selector is longer than 1024 bytes"},
       }) {
    EXPECT_THAT(ParseSelector(r.text), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(r.message))) << r.text;
  }
}

TEST(ParseSelector, MessagesAreOneShortPrintableLine) {
  auto s = ParseSelector("unix:user:a\nb");
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument, AllOf(HasSubstr("a\\nb"), Not(HasSubstr("\n")))));
  s = ParseSelector("unix:path:x" + std::string(900, 'y'));
  ASSERT_FALSE(s.ok());
  EXPECT_LT(s.status().message().size(), 200u);
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("yyy...\": path must be absolute"));
  // At exactly the limit, the selector is judged on its content.
  std::string at_limit = "unix:path:/" + std::string(kMaxSelectorLength - 11, 'a');
  ASSERT_EQ(at_limit.size(), kMaxSelectorLength);
  EXPECT_EQ(*ParseSelector(at_limit), at_limit);
}

TEST(ParseSelectors, CanonicalSortedAndUnique) {
  std::vector<std::string> in = {"unix:uid:1000", "unix:sha256:" + std::string(64, 'A'), "unix:gid:0", "unix:uid:1000",
                                 "unix:sha256:" + std::string(64, 'a')};
  EXPECT_THAT(*ParseSelectors(in), ElementsAre("unix:gid:0", "unix:sha256:" + std::string(64, 'a'), "unix:uid:1000"));
  EXPECT_THAT(*ParseSelectors({}), ElementsAre());
}

TEST(ParseSelectors, AnErrorNamesTheIndex) {
  std::vector<std::string> in = {"unix:uid:1", "unix:gid:2", "unix:gid:x"};
  EXPECT_THAT(ParseSelectors(in), StatusIs(absl::StatusCode::kInvalidArgument,
                                           AllOf(::testing::StartsWith("selectors[2]: selector \"unix:gid:x\": "),
                                                 HasSubstr("gid must be a decimal number"))));
}

TEST(SelectorsMatch, EveryRequiredSelectorMustBePresent) {
  const absl::flat_hash_set<std::string> workload = {"unix:uid:1000", "unix:gid:1000", "unix:gid:27",
                                                     "unix:path:/usr/bin/envoy"};
  const std::vector<std::string> one = {"unix:uid:1000"};
  const std::vector<std::string> two = {"unix:gid:27", "unix:uid:1000"};
  const std::vector<std::string> other = {"unix:gid:27", "unix:uid:0"};
  EXPECT_TRUE(SelectorsMatch(one, workload));
  EXPECT_TRUE(SelectorsMatch(two, workload));
  EXPECT_FALSE(SelectorsMatch(other, workload));
  EXPECT_FALSE(SelectorsMatch({}, workload)) << "an entry without selectors matches nothing";
  EXPECT_FALSE(SelectorsMatch({}, {}));
  EXPECT_FALSE(SelectorsMatch(one, {}));
}

}  // namespace
}  // namespace meshid
