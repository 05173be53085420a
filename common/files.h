// Small file helpers with clear errors.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace meshid {

// Reads a whole file (refusing anything above `max_bytes`). NotFound if it does not exist.
absl::StatusOr<std::string> ReadFile(const std::string& path, size_t max_bytes = 16 << 20);

// A trust bundle kept in two files: `path` (required; its errors name it) followed by
// `optional_path` when that is set and exists. The agent's roots are its --ca-root file plus
// the bundle its server last pushed (trustbundle/receiver.h), which a CA rotation adds the new
// root to before anything is signed under it.
absl::StatusOr<std::string> ReadTrustBundleFiles(const std::string& path, const std::string& optional_path,
                                                 size_t max_bytes = 1 << 20);

// Writes through a temporary file in the same directory, fsyncs and renames, so readers see
// either the old or the new content. `mode` applies from creation (0600 for keys).
absl::Status WriteFileAtomic(const std::string& path, absl::string_view content, int mode = 0644);

// Creates the directory (and parents) with `mode` if missing.
absl::Status EnsureDirectory(const std::string& path, int mode = 0700);

}  // namespace meshid
