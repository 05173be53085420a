// Status matchers for tests (Debian's Abseil has no status_matchers.h).
#pragma once

#include <gmock/gmock.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace meshid::testing {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

// Matches an absl::Status or StatusOr whose code is `code` and whose message matches.
MATCHER_P2(StatusIs, code, message_matcher, "") {
  const absl::Status& s = GetStatus(arg);
  *result_listener << "status is " << s;
  return s.code() == code && ::testing::ExplainMatchResult(message_matcher, std::string(s.message()), result_listener);
}

// Matches an absl::Status or StatusOr whose code is `code`, whatever the message.
MATCHER_P(StatusIs, code, "") {
  const absl::Status& s = GetStatus(arg);
  *result_listener << "status is " << s;
  return s.code() == code;
}

// Matches an OK absl::StatusOr whose value matches `value_matcher` (a value or a matcher).
MATCHER_P(IsOkAndHolds, value_matcher, "") {
  if (!arg.ok()) {
    *result_listener << "status is " << arg.status();
    return false;
  }
  return ::testing::ExplainMatchResult(value_matcher, *arg, result_listener);
}

}  // namespace meshid::testing

#define EXPECT_OK(expr)                   \
  do {                                    \
    auto status_ = (expr);                \
    EXPECT_TRUE(status_.ok()) << status_; \
  } while (0)
#define ASSERT_OK(expr)                   \
  do {                                    \
    auto status_ = (expr);                \
    ASSERT_TRUE(status_.ok()) << status_; \
  } while (0)
