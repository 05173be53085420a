#include "tests/support/temp_dir.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/files.h"

namespace meshid::testing {

TempDir::TempDir(absl::string_view prefix, Cleanup cleanup) : cleanup_(cleanup) {
  std::error_code ec;
  const std::filesystem::path base = std::filesystem::temp_directory_path(ec);
  std::string pattern = absl::StrCat(ec ? std::string("/tmp") : base.string(), "/", prefix, ".XXXXXX");
  if (mkdtemp(pattern.data()) == nullptr) {
    ADD_FAILURE() << "cannot create a temporary directory " << pattern << ": " << std::strerror(errno);
    return;
  }
  // mkdtemp makes it 0700; tests run processes as other users (nobody, postgres) inside.
  std::error_code ignored;
  std::filesystem::permissions(pattern, std::filesystem::perms(0755), ignored);
  path_ = std::move(pattern);
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  if (cleanup_ == Cleanup::kUnlessTestFailed && ::testing::Test::HasFailure()) {
    std::fprintf(stderr, "kept %s for inspection (the test failed)\n", path_.c_str());
    return;
  }
  // Tests make files and directories read-only; the owner may always remove them again.
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(path_, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_directory(ec)) {
      std::filesystem::permissions(it->path(), std::filesystem::perms::owner_all, std::filesystem::perm_options::add,
                                   ec);
    }
  }
  std::filesystem::permissions(path_, std::filesystem::perms::owner_all, std::filesystem::perm_options::add, ec);
  std::filesystem::remove_all(path_, ec);
}

std::string TempDir::File(absl::string_view name) const { return absl::StrCat(path_, "/", name); }

std::string TempDir::Write(absl::string_view name, absl::string_view content) const {
  return WriteTestFile(File(name), content);
}

std::string WriteTestFile(const std::string& path, absl::string_view content) {
  const absl::Status written = WriteFileAtomic(path, content);
  EXPECT_TRUE(written.ok()) << written;
  return path;
}

}  // namespace meshid::testing
