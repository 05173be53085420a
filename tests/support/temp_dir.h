// Temporary directories for tests and benchmarks.
#pragma once

#include <string>

#include "absl/strings/string_view.h"

namespace meshid::testing {

// A new, empty directory <tmp>/<prefix>.XXXXXX, removed with everything in it when the object
// goes away. Mode 0755, so that processes a test runs as another user (nobody, postgres) can
// reach into it. A directory that cannot be created is a test failure (and path() is then
// empty). Not thread-safe; one owner.
class TempDir {
 public:
  enum class Cleanup {
    kAlways,
    // Left in place when the current test has failed, so that its logs can be read; the
    // failure output names the path.
    kUnlessTestFailed,
  };

  explicit TempDir(absl::string_view prefix = "meshid-test", Cleanup cleanup = Cleanup::kAlways);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path()/name.
  std::string File(absl::string_view name) const;
  // Writes `content` to path()/name and returns that path; a failed write is a test failure.
  std::string Write(absl::string_view name, absl::string_view content) const;

 private:
  std::string path_;
  Cleanup cleanup_;
};

// Writes `content` to `path` (replacing it) and returns `path`; a failed write is a test failure.
std::string WriteTestFile(const std::string& path, absl::string_view content);

}  // namespace meshid::testing
