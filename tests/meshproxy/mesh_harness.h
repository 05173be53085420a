// A small mesh on loopback for the sidecar's end-to-end tests: `meshid proxy` processes next to
// the server and agent of tests/support/processes.h, an HTTP echo app (Boost.Beast, so the app
// side is parsed by an HTTP implementation other than the proxy's) and a TCP echo app, and a
// blocking HTTP/TLS client with timeouts. Certificates come from tests/support/certs.h.
#pragma once

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/openssl_ptr.h"
#include "http/http1.h"
#include "tests/support/certs.h"
#include "tests/support/poll.h"
#include "tests/support/processes.h"
#include "tests/support/temp_dir.h"

namespace meshid::testing {

// ---- a blocking client with timeouts (plain or TLS) ----

struct HttpResult {
  int status = 0;                              // 0: no response (connection refused, closed, reset, TLS failure)
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  std::string error;
  bool ok() const { return status != 0; }
};

class Client {
 public:
  struct Options {
    bool tls = false;
    std::optional<CertFiles> cert;  // client certificate (TLS only)
    std::string sni;
    int timeout_ms = 10000;
  };

  // Connects (and handshakes); nullptr with `error` set on failure.
  static std::unique_ptr<Client> Dial(int port, const Options& o, std::string* error) {
    auto c = std::unique_ptr<Client>(new Client());
    c->fd_ = socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{o.timeout_ms / 1000, (o.timeout_ms % 1000) * 1000};
    setsockopt(c->fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(c->fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      if (error) *error = absl::StrCat("connect: ", strerror(errno));
      return nullptr;
    }
    if (!o.tls) return c;
    c->ctx_.reset(SSL_CTX_new(TLS_client_method()));
    if (c->ctx_ == nullptr) {
      if (error) *error = absl::StrCat("SSL_CTX_new: ", DrainOpenSslErrors());
      return nullptr;
    }
    SSL_CTX_set_verify(c->ctx_.get(), SSL_VERIFY_NONE, nullptr);  // like curl -k: the server is not checked here
    if (o.cert && (SSL_CTX_use_certificate_chain_file(c->ctx_.get(), o.cert->cert.c_str()) != 1 ||
                   SSL_CTX_use_PrivateKey_file(c->ctx_.get(), o.cert->key.c_str(), SSL_FILETYPE_PEM) != 1)) {
      if (error) *error = absl::StrCat("client certificate ", o.cert->cert, ": ", DrainOpenSslErrors());
      return nullptr;
    }
    c->ssl_.reset(SSL_new(c->ctx_.get()));
    if (c->ssl_ == nullptr || SSL_set_fd(c->ssl_.get(), c->fd_) != 1 ||
        (!o.sni.empty() && SSL_set_tlsext_host_name(c->ssl_.get(), o.sni.c_str()) != 1)) {
      if (error) *error = absl::StrCat("TLS setup: ", DrainOpenSslErrors());
      return nullptr;
    }
    if (SSL_connect(c->ssl_.get()) != 1) {
      if (error) *error = absl::StrCat("TLS handshake: ", DrainOpenSslErrors());
      return nullptr;
    }
    return c;
  }
  ~Client() {
    ssl_.reset();  // before the socket it uses
    if (fd_ >= 0) close(fd_);
  }

  SSL* ssl() const { return ssl_.get(); }

  bool Write(const std::string& data) {
    size_t off = 0;
    while (off < data.size()) {
      const int n = ssl_ ? SSL_write(ssl_.get(), data.data() + off, static_cast<int>(data.size() - off))
                         : static_cast<int>(send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL));
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }

  // Some bytes; "" when the peer closed, reset or timed out (then `Closed()` tells which).
  std::string ReadSome() {
    char buf[16384];
    int n = 0;
    if (ssl_) {
      // TLS 1.3 delivers the server's verdict on our certificate after the handshake: a
      // refusal shows up here as an alert.
      n = SSL_read(ssl_.get(), buf, sizeof(buf));
      ERR_clear_error();
    } else {
      n = static_cast<int>(recv(fd_, buf, sizeof(buf), 0));
    }
    if (n <= 0) {
      closed_ = !(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
      return "";
    }
    return std::string(buf, static_cast<size_t>(n));
  }
  bool Closed() const { return closed_; }

  // Reads one response (after `pending` bytes already read). Decodes chunked bodies.
  HttpResult ReadResponse(const std::string& method = "GET") {
    HttpResult r;
    http::ResponseHeadParser parser(http::HttpLimits{});
    http::HttpResponseHead head;
    while (true) {
      size_t used = 0;
      http::HttpError err;
      const auto st = parser.Parse(pending_, method, head, used, err);
      if (st == http::ParseStatus::kError) {
        r.error = "malformed response: " + err.message;
        return r;
      }
      if (st == http::ParseStatus::kDone) {
        pending_.erase(0, used);
        if (head.status >= 100 && head.status < 200 && head.status != 101) {
          parser.Reset();
          continue;  // interim response
        }
        break;
      }
      std::string more = ReadSome();
      if (more.empty()) {
        r.error = pending_.empty() ? "connection closed without a response" : "truncated response head";
        return r;
      }
      pending_ += more;
    }
    for (const auto& h : head.headers) r.headers[h.name] = h.value;
    http::BodyRelay body(head.framing, head.content_length, /*chunked_output=*/false, http::HttpLimits{});
    while (true) {
      size_t used = 0;
      http::HttpError err;
      const auto st = body.Feed(pending_, used, r.body, err);
      pending_.erase(0, used);
      if (st == http::ParseStatus::kDone) break;
      if (st == http::ParseStatus::kError) {
        r.error = "malformed response body: " + err.message;
        return r;
      }
      std::string more = ReadSome();
      if (more.empty()) {
        if (head.framing == http::BodyFraming::kUntilClose && closed_) break;
        r.error = "truncated response body";
        return r;
      }
      pending_ += more;
    }
    r.status = head.status;
    return r;
  }

 private:
  Client() = default;
  using SslCtxPtr = std::unique_ptr<SSL_CTX, OpenSslDeleter<SSL_CTX_free>>;
  using SslPtr = std::unique_ptr<SSL, OpenSslDeleter<SSL_free>>;

  int fd_ = -1;
  SslCtxPtr ctx_;
  SslPtr ssl_;
  bool closed_ = false;
  std::string pending_;
};

inline std::string RequestText(const std::string& method, const std::string& path, const std::string& host,
                               const std::vector<std::pair<std::string, std::string>>& headers = {},
                               const std::string& body = "") {
  std::string out = absl::StrCat(method, " ", path, " HTTP/1.1\r\nhost: ", host, "\r\n");
  for (const auto& [k, v] : headers) absl::StrAppend(&out, k, ": ", v, "\r\n");
  if (!body.empty() || method == "POST" || method == "PUT")
    absl::StrAppend(&out, "content-length: ", body.size(), "\r\n");
  return out + "\r\n" + body;
}

// One request on a new connection.
inline HttpResult Request(int port, const Client::Options& options, const std::string& method, const std::string& path,
                          const std::string& host = "reviews",
                          const std::vector<std::pair<std::string, std::string>>& headers = {},
                          const std::string& body = "") {
  std::string error;
  auto c = Client::Dial(port, options, &error);
  if (!c) return HttpResult{0, {}, "", error};
  if (!c->Write(RequestText(method, path, host, headers, body))) return HttpResult{0, {}, "", "write failed"};
  return c->ReadResponse(method);
}

// ---- apps ----

// An HTTP/1.1 echo app (Boost.Beast, a thread per connection). The response body describes the
// request: "method=…\npath=…\nxfcc=…\nauthorization=…\nbody_bytes=N\nbody_sum=S\n".
// GET /status/NNN answers NNN; GET /big/N answers N bytes, chunked.
class EchoApp {
 public:
  EchoApp() : acceptor_(io_, {boost::asio::ip::make_address("127.0.0.1"), 0}) {
    port_ = acceptor_.local_endpoint().port();
    thread_ = std::thread([this] { AcceptLoop(); });
  }
  ~EchoApp() {
    stopping_ = true;
    boost::system::error_code ec;
    acceptor_.close(ec);
    // Wake the acceptor with a connection of our own.
    boost::asio::ip::tcp::socket s(io_);
    s.connect({boost::asio::ip::make_address("127.0.0.1"), port_}, ec);
    thread_.join();
    absl::MutexLock lock(&mu_);
    for (auto& [fd, _] : open_) ::shutdown(fd, SHUT_RDWR);
    mu_.Await(absl::Condition(
        +[](std::map<int, bool>* open) { return open->empty(); }, &open_));
  }
  uint16_t port() const { return port_; }
  int requests() const { return requests_.load(); }

 private:
  void AcceptLoop() {
    while (!stopping_) {
      boost::system::error_code ec;
      boost::asio::ip::tcp::socket s(io_);
      acceptor_.accept(s, ec);
      if (ec || stopping_) break;
      const int fd = s.native_handle();
      {
        absl::MutexLock lock(&mu_);
        open_[fd] = true;
      }
      std::thread([this, sock = std::make_shared<boost::asio::ip::tcp::socket>(std::move(s)), fd]() mutable {
        Serve(*sock);
        sock.reset();  // closed before the destructor may return
        absl::MutexLock lock(&mu_);
        open_.erase(fd);
      }).detach();
    }
  }

  void Serve(boost::asio::ip::tcp::socket& s) {
    namespace http = boost::beast::http;
    boost::beast::flat_buffer buffer;
    while (true) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(std::uint64_t{1} << 40);  // boost::none misreads Content-Length: 0 in Boost 1.74
      boost::system::error_code ec;
      http::read(s, buffer, parser, ec);
      if (ec) return;
      auto& req = parser.get();
      ++requests_;
      http::response<http::string_body> res;
      res.version(11);
      res.result(http::status::ok);
      res.set(http::field::content_type, "text/plain");
      const std::string target(req.target());
      uint64_t sum = 0;
      for (unsigned char c : req.body()) sum += c;
      int code = 0;
      if (absl::StartsWith(target, "/status/") && absl::SimpleAtoi(target.substr(8), &code)) {
        res.result(static_cast<unsigned>(code));
      }
      size_t big = 0;
      if (absl::StartsWith(target, "/big/") && absl::SimpleAtoi(target.substr(5), &big)) {
        res.body() = std::string(big, 'x');
        res.chunked(true);
      } else {
        auto field = [&](const char* name) {
          auto it = req.find(name);
          return it == req.end() ? std::string("-") : std::string(it->value());
        };
        res.body() = absl::StrCat(
            "method=", std::string(req.method_string()), "\npath=", target, "\nxfcc=", field("x-forwarded-client-cert"),
            "\nauthorization=", field("authorization"), "\nbody_bytes=", req.body().size(), "\nbody_sum=", sum, "\n");
        res.prepare_payload();
      }
      res.keep_alive(req.keep_alive());
      http::write(s, res, ec);
      if (ec || !req.keep_alive()) return;
    }
  }

  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> requests_{0};
  std::thread thread_;
  absl::Mutex mu_;
  std::map<int, bool> open_ ABSL_GUARDED_BY(mu_);
};

// A TCP app that echoes every byte back.
class TcpEchoApp {
 public:
  TcpEchoApp() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    listen(fd_, 64);
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] {
      while (true) {
        const int c = accept(fd_, nullptr, nullptr);
        if (c < 0) return;
        absl::MutexLock lock(&mu_);
        conns_.push_back(c);
        threads_.emplace_back([c] {
          char buf[16384];
          while (true) {
            const ssize_t n = recv(c, buf, sizeof(buf), 0);
            if (n <= 0) break;
            if (send(c, buf, static_cast<size_t>(n), MSG_NOSIGNAL) != n) break;
          }
          ::shutdown(c, SHUT_WR);
        });
      }
    });
  }
  ~TcpEchoApp() {
    ::shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
    absl::MutexLock lock(&mu_);
    for (int c : conns_) ::shutdown(c, SHUT_RDWR);
    for (auto& t : threads_) t.join();
    for (int c : conns_) close(c);
  }
  uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
  absl::Mutex mu_;
  std::vector<int> conns_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
};

// ---- meshid processes ----

// The files of a test certificate; a certificate that could not be made or written fails the
// test (and the paths are then empty).
inline CertFiles WriteCert(const std::string& dir, const std::string& name, const absl::StatusOr<CertAndKeyPem>& pem) {
  if (!pem.ok()) {
    ADD_FAILURE() << "certificate " << name << ": " << pem.status();
    return {};
  }
  auto files = WriteCertFiles(dir, name, *pem);
  if (!files.ok()) {
    ADD_FAILURE() << "certificate " << name << ": " << files.status();
    return {};
  }
  return *std::move(files);
}

// How the mesh's agents run: short-lived certificates renewed without jitter.
inline AgentProcessOptions MeshAgentOptions(const std::string& dir, const std::string& secret_ttl = "1h") {
  AgentProcessOptions options;
  options.dir = dir;
  options.service_account = "agent";
  options.extra_args = {"--secret-ttl", secret_ttl, "--grace-ratio-jitter", "0"};
  return options;
}

// A plain HTTP GET with our client (for the admin endpoint).
inline HttpResult AdminGet(int port, const std::string& path) {
  return Request(port, Client::Options{}, "GET", path, "127.0.0.1");
}

// `meshid proxy`, waiting until its admin endpoint says LIVE.
class ProxyProcess {
 public:
  ProxyProcess(const std::string& log, std::vector<std::string> args, bool wait_ready = true) {
    std::vector<std::string> argv = {MeshidBinary(), "proxy", "--admin-addr", "127.0.0.1:0", "--workers", "2"};
    argv.insert(argv.end(), args.begin(), args.end());
    proc_ = std::make_unique<Subprocess>(argv, log);
    auto admin = proc_->WaitForLog(R"(admin on port (\d+))");
    if (!admin) return;
    admin_port_ = std::stoi(*admin);
    const std::string log_text = proc_->Log();
    std::smatch m;
    std::regex inbound(R"(inbound listening on 127\.0\.0\.1:(\d+))");
    for (auto it = std::sregex_iterator(log_text.begin(), log_text.end(), inbound); it != std::sregex_iterator();
         ++it) {
      inbound_ports_.push_back(std::stoi((*it)[1]));
    }
    if (std::regex_search(log_text, m, std::regex(R"(outbound listening on 127\.0\.0\.1:(\d+))"))) {
      outbound_port_ = std::stoi(m[1]);
    }
    std::regex tcp(R"(outbound tcp listening on 127\.0\.0\.1:(\d+))");
    for (auto it = std::sregex_iterator(log_text.begin(), log_text.end(), tcp); it != std::sregex_iterator(); ++it) {
      tcp_ports_.push_back(std::stoi((*it)[1]));
    }
    ok_ = !wait_ready || WaitReady();
  }
  ~ProxyProcess() { Stop(); }
  void Stop() {
    if (!proc_) return;
    proc_->Kill(SIGTERM);
    exit_code_ = proc_->Wait();
    proc_.reset();
  }
  std::optional<int> exit_code() const { return exit_code_; }

  bool WaitReady() {
    for (int i = 0; i < 1500; ++i) {
      if (AdminGet(admin_port_, "/ready").status == 200) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }
  bool ok() const { return ok_; }
  int inbound(size_t i = 0) const { return i < inbound_ports_.size() ? inbound_ports_[i] : 0; }
  int outbound() const { return outbound_port_; }
  int tcp(size_t i = 0) const { return i < tcp_ports_.size() ? tcp_ports_[i] : 0; }
  int admin() const { return admin_port_; }
  std::string Log() const { return proc_ ? proc_->Log() : ""; }

  // A Prometheus sample (`name` with its labels as rendered), -1 if absent.
  double Metric(const std::string& series) const {
    const HttpResult r = AdminGet(admin_port_, "/stats");
    for (absl::string_view line : absl::StrSplit(r.body, '\n')) {
      if (absl::StartsWith(line, series + " ")) {
        double v = -1;
        if (absl::SimpleAtod(line.substr(series.size() + 1), &v)) return v;
      }
    }
    return -1;
  }
  nlohmann::json Json(const std::string& path) const {
    return nlohmann::json::parse(AdminGet(admin_port_, path).body, nullptr, false);
  }

 private:
  std::unique_ptr<Subprocess> proc_;
  int admin_port_ = 0;
  std::vector<int> inbound_ports_;
  int outbound_port_ = 0;
  std::vector<int> tcp_ports_;
  bool ok_ = false;
  std::optional<int> exit_code_;
};

}  // namespace meshid::testing
