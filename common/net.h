// Address parsing shared by every listener and client flag.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace meshid {

struct HostPort {
  std::string host;  // without brackets for IPv6
  uint16_t port = 0;
  std::string ToString() const;  // re-adds brackets for IPv6
};

// "127.0.0.1:15012", "[::1]:15012", "localhost:0". Port 0 lets the OS choose.
absl::StatusOr<HostPort> ParseHostPort(absl::string_view text);

}  // namespace meshid
