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

// Where a client flag says the server is, as a gRPC channel target.
struct ServerTarget {
  std::string target;
  // The name to verify in the servers' certificates when the target does not say it (a list:
  // its first host); empty: gRPC's own (the host of a single address).
  std::string tls_name;
};

// One "host:port" (a DNS name may resolve to several addresses, which gRPC tries in turn), or a
// comma-separated list of IP addresses with ports, "10.0.0.1:15012,10.0.0.2:15012" or
// "[fd00::1]:15012,[fd00::2]:15012", for replicas without a common name: the channel connects to
// the first that answers and moves to another when it fails. InvalidArgument saying which item
// is wrong: not host:port, a port of 0, a name in a list, IPv4 and IPv6 mixed.
absl::StatusOr<ServerTarget> ParseServerTarget(absl::string_view text);

}  // namespace meshid
