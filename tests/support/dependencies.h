// Tests that need something from outside the build (a PostgreSQL server, Node, Python grpcio)
// say so with MESHID_REQUIRE_DEPENDENCY. Without the dependency a developer's run skips the
// test, saying what is missing and how to get it; with MESHID_REQUIRE_ALL_TESTS=1 in the
// environment (scripts/test.sh, and so CI, sets it) the test fails instead, so that the suite
// cannot silently shrink. tests/support/run-with-dependencies.sh applies the same rule to the
// tests ctest runs as scripts.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "absl/strings/string_view.h"

namespace meshid::testing {

// True when MESHID_REQUIRE_ALL_TESTS=1: a missing dependency is then a failure, not a skip.
bool AllTestsRequired();

// "missing dependency: <what>; <consequence>", the line both outcomes print.
std::string MissingDependencyMessage(absl::string_view what);

}  // namespace meshid::testing

// Skips the current test (or, under MESHID_REQUIRE_ALL_TESTS=1, fails it) unless `available`.
// `what` names the dependency and how to provide it. Returns from the calling function (a
// test body or SetUp()), as GTEST_SKIP() does.
#define MESHID_REQUIRE_DEPENDENCY(available, what)                         \
  do {                                                                     \
    if (!(available)) {                                                    \
      if (::meshid::testing::AllTestsRequired()) {                         \
        GTEST_FAIL() << ::meshid::testing::MissingDependencyMessage(what); \
      }                                                                    \
      GTEST_SKIP() << ::meshid::testing::MissingDependencyMessage(what);   \
    }                                                                      \
  } while (0)
