#include "common/http_status_server.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/net.h"

namespace meshid {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

using Handlers = std::map<std::string, HttpHandler>;

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, const Handlers& handlers) : stream_(std::move(socket)), handlers_(handlers) {}

  void Start() {
    stream_.expires_after(std::chrono::seconds(10));
    parser_.body_limit(4096);
    parser_.header_limit(8192);
    http::async_read(stream_, buffer_, parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
  }

 private:
  void OnRead(beast::error_code ec) {
    if (ec) return;  // timeout, reset or malformed request: drop the connection
    const auto& request = parser_.get();
    HttpReply reply;
    if (request.method() != http::verb::get && request.method() != http::verb::head) {
      reply = {405, "text/plain; charset=utf-8", "method not allowed\n"};
    } else {
      std::string target(request.target());
      std::string path = target.substr(0, target.find('?'));
      auto it = handlers_.find(path);
      reply = it == handlers_.end() ? HttpReply{404, "text/plain; charset=utf-8", "not found\n"} : it->second(target);
    }
    response_.result(static_cast<unsigned>(reply.status));
    response_.version(11);
    response_.set(http::field::content_type, reply.content_type);
    response_.set(http::field::connection, "close");
    response_.keep_alive(false);
    if (request.method() != http::verb::head) response_.body() = std::move(reply.body);
    response_.prepare_payload();
    http::async_write(stream_, response_, [self = shared_from_this()](beast::error_code, size_t) {
      beast::error_code ignored;
      self->stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    });
  }

  beast::tcp_stream stream_;
  const Handlers& handlers_;
  beast::flat_buffer buffer_;
  http::request_parser<http::string_body> parser_;
  http::response<http::string_body> response_;
};

class ServerImpl final : public HttpStatusServer {
 public:
  ServerImpl(Handlers handlers) : handlers_(std::move(handlers)), acceptor_(io_) {}

  absl::Status Bind(const HostPort& hp) {
    beast::error_code ec;
    auto address = asio::ip::make_address(hp.host == "localhost" ? "127.0.0.1" : hp.host, ec);
    if (ec)
      return absl::InvalidArgumentError(absl::StrCat("monitoring address \"", hp.host, "\" is not an IP address"));
    tcp::endpoint endpoint(address, hp.port);
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return absl::UnavailableError(absl::StrCat("cannot listen on ", hp.ToString(), ": ", ec.message()));
    port_ = acceptor_.local_endpoint().port();
    Accept();
    thread_ = std::thread([this] { io_.run(); });
    return absl::OkStatus();
  }

  ~ServerImpl() override {
    io_.stop();
    if (thread_.joinable()) thread_.join();
  }

  uint16_t port() const override { return port_; }

 private:
  void Accept() {
    acceptor_.async_accept([this](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted) return;
      if (!ec) std::make_shared<Session>(std::move(socket), handlers_)->Start();
      Accept();
    });
  }

  Handlers handlers_;
  asio::io_context io_{1};
  tcp::acceptor acceptor_;
  std::thread thread_;
  uint16_t port_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<HttpStatusServer>> HttpStatusServer::Create(
    const std::string& address, std::map<std::string, HttpHandler> handlers) {
  auto hp = ParseHostPort(address);
  if (!hp.ok()) return hp.status();
  auto server = std::make_unique<ServerImpl>(std::move(handlers));
  if (absl::Status s = server->Bind(*hp); !s.ok()) return s;
  return server;
}

}  // namespace meshid
