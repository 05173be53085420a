#include "tests/support/dependencies.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace meshid::testing {

bool AllTestsRequired() {
  const char* value = std::getenv("MESHID_REQUIRE_ALL_TESTS");
  return value != nullptr && absl::string_view(value) == "1";
}

std::string MissingDependencyMessage(absl::string_view what) {
  return absl::StrCat("missing dependency: ", what, "; ",
                      AllTestsRequired() ? "MESHID_REQUIRE_ALL_TESTS=1, so this test fails instead of skipping"
                                         : "test skipped (MESHID_REQUIRE_ALL_TESTS=1 would fail it)");
}

}  // namespace meshid::testing
