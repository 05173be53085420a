#include "nodeagent/token_source.h"

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/files.h"

namespace meshid {
namespace {

class FileTokenSource final : public TokenSource {
 public:
  explicit FileTokenSource(std::string path) : path_(std::move(path)) {}

  absl::StatusOr<SecretString> Token() override {
    auto content = ReadFile(path_, 64 << 10);
    if (!content.ok()) {
      return absl::UnauthenticatedError(absl::StrCat("reading token file ", path_, ": ", content.status().message()));
    }
    SecretString raw(std::move(*content));
    absl::string_view token = absl::StripAsciiWhitespace(raw.view());
    if (token.empty()) return absl::UnauthenticatedError(absl::StrCat("token file ", path_, " is empty"));
    return SecretString(std::string(token));
  }

 private:
  std::string path_;
};

}  // namespace

std::unique_ptr<TokenSource> MakeFileTokenSource(std::string path) {
  return std::make_unique<FileTokenSource>(std::move(path));
}

}  // namespace meshid
