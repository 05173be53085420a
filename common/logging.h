// Loggers are spdlog loggers passed into components (never looked up globally).
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace meshid {

using LoggerPtr = std::shared_ptr<spdlog::logger>;

// A logger writing to stderr with a timestamped format. `level` is one of trace, debug, info,
// warn, error, off.
absl::StatusOr<LoggerPtr> MakeStderrLogger(const std::string& name, const std::string& level = "info");
// A logger that drops everything (level off: messages are not even formatted), for tests,
// benchmarks and tools. Components take a LoggerPtr that is never null; this is what to pass
// when nothing should be logged.
LoggerPtr MakeNullLogger(const std::string& name = "null");

}  // namespace meshid

// Debian's Abseil has its own string_view type; teach fmt (and so spdlog) to print it and
// absl::Status.
template <>
struct fmt::formatter<absl::string_view> : fmt::formatter<fmt::string_view> {
  template <typename Context>
  auto format(absl::string_view s, Context& ctx) const {
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(s.data(), s.size()), ctx);
  }
};
template <>
struct fmt::formatter<absl::Status> : fmt::formatter<fmt::string_view> {
  template <typename Context>
  auto format(const absl::Status& s, Context& ctx) const {
    std::string text = s.ToString();
    return fmt::formatter<fmt::string_view>::format(fmt::string_view(text), ctx);
  }
};
