#include "authz/jwks_fetcher.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <memory>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/files.h"

namespace meshid::authz {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

namespace {

struct Url {
  bool https = false;
  std::string host;
  std::string port;
  std::string target;
};

absl::StatusOr<Url> ParseUrl(const std::string& url) {
  Url u;
  absl::string_view rest(url);
  if (absl::ConsumePrefix(&rest, "https://")) {
    u.https = true;
  } else if (!absl::ConsumePrefix(&rest, "http://")) {
    return absl::InvalidArgumentError(absl::StrCat("\"", url, "\" is not an http:// or https:// URL"));
  }
  size_t slash = rest.find('/');
  absl::string_view authority = rest.substr(0, slash);
  u.target = slash == absl::string_view::npos ? "/" : std::string(rest.substr(slash));
  if (authority.empty() || absl::StrContains(authority, "@")) {
    return absl::InvalidArgumentError(absl::StrCat("\"", url, "\" has no usable host"));
  }
  if (authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == absl::string_view::npos)
      return absl::InvalidArgumentError(absl::StrCat("\"", url, "\": bad IPv6 host"));
    u.host = std::string(authority.substr(1, close - 1));
    absl::string_view after = authority.substr(close + 1);
    if (absl::ConsumePrefix(&after, ":")) u.port = std::string(after);
  } else {
    size_t colon = authority.rfind(':');
    u.host = std::string(authority.substr(0, colon));
    if (colon != absl::string_view::npos) u.port = std::string(authority.substr(colon + 1));
  }
  uint32_t port = 0;
  if (u.port.empty()) {
    u.port = u.https ? "443" : "80";
  } else if (!absl::SimpleAtoi(u.port, &port) || port == 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("\"", url, "\" has an invalid port"));
  }
  return u;
}

// One GET driven by asio callbacks on a private io_context, bounded by run_for(timeout).
class Fetch : public std::enable_shared_from_this<Fetch> {
 public:
  Fetch(asio::io_context& ioc, asio::ssl::context* tls, Url url, size_t max_bytes)
      : resolver_(ioc), url_(std::move(url)) {
    if (tls) {
      tls_stream_.emplace(ioc, *tls);
    } else {
      plain_stream_.emplace(ioc);
    }
    parser_.body_limit(max_bytes);
  }

  void Start() {
    if (tls_stream_) {
      if (!SSL_set_tlsext_host_name(tls_stream_->native_handle(), url_.host.c_str())) {
        return Fail("setting TLS SNI failed");
      }
      tls_stream_->set_verify_mode(asio::ssl::verify_peer);
      tls_stream_->set_verify_callback(asio::ssl::host_name_verification(url_.host));
    }
    resolver_.async_resolve(url_.host, url_.port, [self = shared_from_this()](beast::error_code ec, auto results) {
      if (ec) return self->Fail(absl::StrCat("resolving ", self->url_.host, ": ", ec.message()));
      self->Connect(results);
    });
  }

  const std::optional<absl::StatusOr<std::string>>& result() const { return result_; }

  // Aborts whatever is pending; the handlers then run with operation_aborted.
  void Cancel() {
    resolver_.cancel();
    beast::error_code ignored;
    Lowest().socket().close(ignored);
  }

 private:
  beast::tcp_stream& Lowest() { return tls_stream_ ? beast::get_lowest_layer(*tls_stream_) : *plain_stream_; }

  void Connect(const tcp::resolver::results_type& results) {
    Lowest().async_connect(results, [self = shared_from_this()](beast::error_code ec, const tcp::endpoint&) {
      if (ec) return self->Fail(absl::StrCat("connecting: ", ec.message()));
      if (self->tls_stream_) {
        self->tls_stream_->async_handshake(asio::ssl::stream_base::client, [self](beast::error_code ec2) {
          if (ec2) return self->Fail(absl::StrCat("TLS handshake: ", ec2.message()));
          self->Write();
        });
      } else {
        self->Write();
      }
    });
  }

  void Write() {
    request_ = http::request<http::empty_body>(http::verb::get, url_.target, 11);
    request_.set(http::field::host, url_.host);
    request_.set(http::field::user_agent, "meshid");
    request_.set(http::field::accept, "application/json");
    auto on_write = [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec) return self->Fail(absl::StrCat("sending request: ", ec.message()));
      self->Read();
    };
    if (tls_stream_) {
      http::async_write(*tls_stream_, request_, on_write);
    } else {
      http::async_write(*plain_stream_, request_, on_write);
    }
  }

  void Read() {
    auto on_read = [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec) return self->Fail(absl::StrCat("reading response: ", ec.message()));
      const auto& res = self->parser_.get();
      if (res.result() != http::status::ok) {
        return self->Fail(absl::StrCat("HTTP status ", res.result_int()));
      }
      self->result_ = res.body();
    };
    if (tls_stream_) {
      http::async_read(*tls_stream_, buffer_, parser_, on_read);
    } else {
      http::async_read(*plain_stream_, buffer_, parser_, on_read);
    }
  }

  void Fail(const std::string& what) {
    if (!result_) result_ = absl::UnavailableError(what);
  }

  tcp::resolver resolver_;
  Url url_;
  std::optional<beast::tcp_stream> plain_stream_;
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls_stream_;
  http::request<http::empty_body> request_;
  beast::flat_buffer buffer_;
  http::response_parser<http::string_body> parser_;
  std::optional<absl::StatusOr<std::string>> result_;
};

}  // namespace

absl::StatusOr<std::string> HttpGet(const std::string& url, absl::Duration timeout, size_t max_bytes) {
  auto parsed = ParseUrl(url);
  if (!parsed.ok()) return parsed.status();
  asio::io_context ioc;
  std::optional<asio::ssl::context> tls;
  if (parsed->https) {
    tls.emplace(asio::ssl::context::tls_client);
    tls->set_default_verify_paths();
  }
  auto fetch = std::make_shared<Fetch>(ioc, tls ? &*tls : nullptr, *parsed, max_bytes);
  fetch->Start();
  ioc.run_for(std::chrono::milliseconds(absl::ToInt64Milliseconds(timeout)));
  if (!fetch->result()) {
    // Let the aborted handlers finish before the streams and the io_context go away.
    fetch->Cancel();
    ioc.restart();
    ioc.run();
    return absl::DeadlineExceededError(absl::StrCat("GET ", url, ": no answer within ", absl::FormatDuration(timeout)));
  }
  const auto& r = *fetch->result();
  if (!r.ok()) return absl::Status(r.status().code(), absl::StrCat("GET ", url, ": ", r.status().message()));
  return *r;
}

absl::StatusOr<std::string> DefaultJwksFetcher::Fetch(const std::string& uri) const {
  absl::string_view rest(uri);
  if (absl::ConsumePrefix(&rest, "file://")) {
    if (rest.empty()) return absl::InvalidArgumentError("file:// URI without a path");
    return ReadFile(std::string(rest), 1 << 20);
  }
  return HttpGet(uri, timeout_);
}

}  // namespace meshid::authz
