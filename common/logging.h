// Loggers are spdlog loggers passed into components (never looked up globally).
#pragma once

#include <memory>
#include <string>

#include <spdlog/spdlog.h>

#include "absl/status/statusor.h"

namespace meshid {

using LoggerPtr = std::shared_ptr<spdlog::logger>;

// A logger writing to stderr with a timestamped format. `level` is one of trace, debug, info,
// warn, error, off.
absl::StatusOr<LoggerPtr> MakeStderrLogger(const std::string& name, const std::string& level = "info");
// A logger that drops everything, for tests and tools.
LoggerPtr MakeNullLogger(const std::string& name = "null");

}  // namespace meshid
