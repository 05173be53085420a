#include "common/logging.h"

#include <spdlog/sinks/null_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace meshid {

absl::StatusOr<LoggerPtr> MakeStderrLogger(const std::string& name, const std::string& level) {
  auto parsed = spdlog::level::from_str(level);
  if (parsed == spdlog::level::off && level != "off") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown log level \"", level, "\" (trace, debug, info, warn, error, off)"));
  }
  auto logger = std::make_shared<spdlog::logger>(name, std::make_shared<spdlog::sinks::stderr_sink_mt>());
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %n %v", spdlog::pattern_time_type::utc);
  logger->set_level(parsed);
  logger->flush_on(spdlog::level::info);
  return logger;
}

LoggerPtr MakeNullLogger(const std::string& name) {
  auto logger = std::make_shared<spdlog::logger>(name, std::make_shared<spdlog::sinks::null_sink_mt>());
  logger->set_level(spdlog::level::off);  // nothing is even formatted
  return logger;
}

}  // namespace meshid
