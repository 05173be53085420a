#include "sql/store_url.h"

#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/percent.h"
#include "sql/store.h"

namespace meshid {

std::string DefaultStoreUrl(const std::string& data_dir) {
  std::string dir = data_dir.empty() ? "." : data_dir;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return absl::StrCat("sqlite://", dir == "/" ? "" : dir, "/meshid.db");
}

std::string StoreUrlFromFlags(const std::string& data_dir, const std::string& datastore) {
  return datastore.empty() ? DefaultStoreUrl(data_dir) : datastore;
}

namespace sql {
namespace {

absl::Status Bad(absl::string_view what) { return absl::InvalidArgumentError(absl::StrCat("datastore URL: ", what)); }

bool HasControlCharacters(absl::string_view s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return true;
  }
  return false;
}

// Percent-decodes `in`; `field` names the URL part in the error.
absl::StatusOr<std::string> PercentDecode(absl::string_view in, absl::string_view field) {
  std::optional<std::string> out = meshid::PercentDecode(in);
  if (!out.has_value()) return Bad(absl::StrCat("bad percent-escape in the ", field));
  if (out->find('\0') != std::string::npos) return Bad(absl::StrCat("NUL byte in the ", field));
  return *std::move(out);
}

bool ValidHostName(absl::string_view host) {
  for (char c : host) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_') return false;
  }
  return !host.empty() && host.size() <= 253;
}

bool ValidIpv6(absl::string_view host) {
  if (host.size() < 2 || host.find(':') == absl::string_view::npos) return false;
  for (char c : host) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.') return false;
  }
  return true;
}

const std::set<std::string, std::less<>>& PassThroughParams() {
  static const auto* params = new std::set<std::string, std::less<>>{
      "sslmode",          "sslrootcert",          "sslcert",    "sslkey",          "connect_timeout",
      "application_name", "target_session_attrs", "keepalives", "keepalives_idle", "keepalives_interval",
      "keepalives_count"};
  return *params;
}

absl::StatusOr<StoreUrl> ParsePostgres(absl::string_view rest) {
  StoreUrl url;
  url.kind = StoreUrl::Kind::kPostgres;
  absl::string_view query;
  if (size_t q = rest.find('?'); q != absl::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  size_t slash = rest.find('/');
  if (slash == absl::string_view::npos)
    return Bad("postgresql URL needs a database: postgresql://user@host:port/database");
  absl::string_view authority = rest.substr(0, slash);
  absl::string_view database = rest.substr(slash + 1);

  size_t at = authority.rfind('@');
  if (at == absl::string_view::npos)
    return Bad("postgresql URL needs a user: postgresql://user[:password]@host:port/database");
  absl::string_view userinfo = authority.substr(0, at);
  absl::string_view hostport = authority.substr(at + 1);
  absl::string_view user = userinfo;
  if (size_t colon = userinfo.find(':'); colon != absl::string_view::npos) {
    user = userinfo.substr(0, colon);
    auto password = PercentDecode(userinfo.substr(colon + 1), "password");  // errors never echo it
    if (!password.ok()) return password.status();
    url.password = *std::move(password);
  }
  auto decoded_user = PercentDecode(user, "user name");
  if (!decoded_user.ok()) return decoded_user.status();
  url.user = *std::move(decoded_user);
  if (url.user.empty()) return Bad("postgresql URL has an empty user name");

  absl::string_view port;
  if (absl::StartsWith(hostport, "[")) {
    size_t close = hostport.find(']');
    if (close == absl::string_view::npos) return Bad("unterminated [IPv6 address] in the host");
    url.host = std::string(hostport.substr(1, close - 1));
    if (!ValidIpv6(url.host)) return Bad("the host is not a valid [IPv6 address]");
    absl::string_view after = hostport.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return Bad("unexpected characters after the [IPv6 address]");
      port = after.substr(1);
      if (port.empty()) return Bad("empty port after ':'");
    }
  } else {
    absl::string_view host = hostport;
    if (size_t colon = hostport.find(':'); colon != absl::string_view::npos) {
      host = hostport.substr(0, colon);
      port = hostport.substr(colon + 1);
      if (port.empty()) return Bad("empty port after ':'");
    }
    if (host.empty()) return Bad("postgresql URL needs a host: postgresql://user@host:port/database");
    if (!ValidHostName(host)) return Bad("the host has characters that are not allowed in a host name");
    url.host = std::string(host);
  }
  if (!port.empty()) {
    int value = 0;
    if (port.size() > 5 || !absl::SimpleAtoi(port, &value) || value < 1 || value > 65535 ||
        !absl::ascii_isdigit(static_cast<unsigned char>(port[0]))) {
      return Bad("the port must be a number from 1 to 65535");
    }
    url.port = value;
  }

  auto decoded_db = PercentDecode(database, "database name");
  if (!decoded_db.ok()) return decoded_db.status();
  url.database = *std::move(decoded_db);
  if (url.database.empty()) return Bad("postgresql URL needs a database name after the '/'");
  if (url.database.find('/') != std::string::npos) return Bad("the database name contains '/'");

  if (!query.empty()) {
    for (absl::string_view pair : absl::StrSplit(query, '&')) {
      size_t eq = pair.find('=');
      if (eq == absl::string_view::npos || eq == 0)
        return Bad("query parameters are name=value pairs separated by '&'");
      std::string name(pair.substr(0, eq));
      auto value = PercentDecode(pair.substr(eq + 1), "parameter " + name);
      if (!value.ok()) return value.status();
      if (name == "pool_size") {
        if (!absl::SimpleAtoi(*value, &url.pool_size) || url.pool_size < 1 || url.pool_size > 100) {
          return Bad("pool_size must be a number from 1 to 100");
        }
        continue;
      }
      if (!PassThroughParams().contains(name)) {
        return Bad(
            absl::StrCat("unknown parameter '", name.substr(0, 64), "' (known: sslmode, sslrootcert, sslcert, ",
                         "sslkey, connect_timeout, application_name, target_session_attrs, keepalives*, pool_size)"));
      }
      if (!url.params.emplace(name, *std::move(value)).second)
        return Bad(absl::StrCat("parameter '", name, "' given twice"));
    }
  }
  return url;
}

std::string QuoteConninfo(absl::string_view value) {
  std::string out = "'";
  for (char c : value) {
    if (c == '\'' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('\'');
  return out;
}

}  // namespace

absl::StatusOr<StoreUrl> ParseStoreUrl(absl::string_view text) {
  if (text.empty()) return Bad("empty (use sqlite://<path> or postgresql://user@host:port/database)");
  if (HasControlCharacters(text)) return Bad("contains control characters");
  size_t sep = text.find("://");
  if (sep == absl::string_view::npos) {
    return Bad("not a URL (use sqlite://<path> or postgresql://user@host:port/database)");
  }
  std::string scheme = absl::AsciiStrToLower(text.substr(0, sep));
  absl::string_view rest = text.substr(sep + 3);
  if (rest.find('#') != absl::string_view::npos) return Bad("a fragment ('#') is not allowed");
  if (scheme == "sqlite") {
    StoreUrl url;
    url.kind = StoreUrl::Kind::kSqlite;
    if (rest.empty()) return Bad("sqlite URL needs a file path: sqlite://<relative path> or sqlite:///<absolute path>");
    if (rest.find('?') != absl::string_view::npos) return Bad("sqlite URLs take no parameters ('?')");
    if (rest.back() == '/') return Bad("sqlite URL names a directory; it needs a file path");
    url.path = std::string(rest);
    return url;
  }
  if (scheme == "postgresql" || scheme == "postgres") return ParsePostgres(rest);
  if (scheme.size() > 32) scheme = scheme.substr(0, 32) + "...";
  return Bad(absl::StrCat("unsupported scheme '", scheme, "' (use sqlite:// or postgresql://)"));
}

std::string StoreUrl::Redacted() const {
  if (kind == Kind::kSqlite) return "sqlite://" + path;
  std::string host_part = host.find(':') != std::string::npos ? absl::StrCat("[", host, "]") : host;
  return absl::StrCat("postgresql://", user, password.empty() ? "" : ":***", "@", host_part, ":", port, "/", database);
}

std::string StoreUrl::PostgresConninfo() const {
  std::string out = absl::StrCat("host=", QuoteConninfo(host), " port=", port, " dbname=", QuoteConninfo(database),
                                 " user=", QuoteConninfo(user));
  if (!password.empty()) absl::StrAppend(&out, " password=", QuoteConninfo(password));
  std::map<std::string, std::string> all = params;
  all.emplace("connect_timeout", "5");
  all.emplace("application_name", "meshid");
  all.emplace("options", "-c client_min_messages=warning -c synchronous_commit=on");
  for (const auto& [name, value] : all) absl::StrAppend(&out, " ", name, "=", QuoteConninfo(value));
  return out;
}

}  // namespace sql
}  // namespace meshid
