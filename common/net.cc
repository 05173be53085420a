#include "common/net.h"

#include <arpa/inet.h>

#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace meshid {

std::string HostPort::ToString() const {
  if (host.find(':') != std::string::npos) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

absl::StatusOr<HostPort> ParseHostPort(absl::string_view text) {
  HostPort out;
  absl::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == absl::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return absl::InvalidArgumentError(absl::StrCat("address \"", text, "\" is not [IPv6]:port"));
    }
    out.host = std::string(text.substr(1, close - 1));
    port_text = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("address \"", text, "\" has no :port"));
    }
    out.host = std::string(text.substr(0, colon));
    port_text = text.substr(colon + 1);
    if (out.host.find(':') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("address \"", text, "\": put IPv6 hosts in brackets"));
    }
  }
  if (out.host.empty()) out.host = "0.0.0.0";
  uint32_t port = 0;
  if (!absl::SimpleAtoi(port_text, &port) || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("address \"", text, "\" has an invalid port"));
  }
  out.port = static_cast<uint16_t>(port);
  return out;
}

absl::StatusOr<ServerTarget> ParseServerTarget(absl::string_view text) {
  std::vector<absl::string_view> items = absl::StrSplit(text, ',');
  std::vector<HostPort> servers;
  for (size_t i = 0; i < items.size(); ++i) {
    absl::string_view item = absl::StripAsciiWhitespace(items[i]);
    const std::string which = items.size() > 1 ? absl::StrCat("item ", i + 1, " of the list: ") : "";
    if (item.empty()) return absl::InvalidArgumentError(absl::StrCat(which, "an empty address"));
    absl::StatusOr<HostPort> parsed = ParseHostPort(item);
    if (!parsed.ok()) return absl::InvalidArgumentError(absl::StrCat(which, parsed.status().message()));
    HostPort server = *std::move(parsed);
    if (server.port == 0) return absl::InvalidArgumentError(absl::StrCat(which, "address \"", item, "\" has port 0"));
    servers.push_back(std::move(server));
  }
  if (servers.size() == 1) return ServerTarget{std::string(absl::StripAsciiWhitespace(text)), ""};
  // gRPC's ipv4: and ipv6: targets take a list of addresses of one family.
  in6_addr v6;
  in_addr v4;
  const bool first_is_v6 = inet_pton(AF_INET6, servers[0].host.c_str(), &v6) == 1;
  std::vector<std::string> parts;
  for (size_t i = 0; i < servers.size(); ++i) {
    const bool v6_host = inet_pton(AF_INET6, servers[i].host.c_str(), &v6) == 1;
    const bool v4_host = inet_pton(AF_INET, servers[i].host.c_str(), &v4) == 1;
    if (!v6_host && !v4_host) {
      return absl::InvalidArgumentError(
          absl::StrCat("item ", i + 1, " of the list: \"", servers[i].host,
                       "\" is not an IP address (a list holds addresses; replicas behind one name need only the "
                       "name, whose addresses gRPC tries in turn)"));
    }
    if (v6_host != first_is_v6) {
      return absl::InvalidArgumentError(
          absl::StrCat("item ", i + 1, " of the list: IPv4 and IPv6 addresses cannot be mixed in one list"));
    }
    parts.push_back(servers[i].ToString());
  }
  return ServerTarget{absl::StrCat(first_is_v6 ? "ipv6:" : "ipv4:", absl::StrJoin(parts, ",")), servers[0].host};
}

}  // namespace meshid
