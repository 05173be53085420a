// Connection handling: inbound (mTLS termination, policy, forwarding to the app), outbound
// (Host-routed HTTP and per-upstream TCP, originated over mTLS), the HTTP/1.1 exchange loop
// they share and the TCP relay.
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "meshproxy/proxy_internal.h"
#include "rbac/match.h"

namespace meshid::meshproxy {

using SteadyClock = std::chrono::steady_clock;
using http::BodyFraming;
using http::BodyRelay;
using http::HttpError;
using http::HttpHeader;
using http::HttpLimits;
using http::HttpRequestHead;
using http::HttpResponseHead;
using http::IsHopByHop;
using http::LocalReply;
using http::ParseStatus;
using http::RequestHeadParser;
using http::ResponseHeadParser;

static SteadyClock::duration ToChrono(absl::Duration d) { return absl::ToChronoNanoseconds(d); }

// One accepted connection: its transports and a watchdog for the idle timeout and for the one
// bounded wait at a time (protocol detection, connect).
struct Conn {
  explicit Conn(const asio::any_io_executor& ex) : timer(ex) {}

  void Touch() { last_activity = SteadyClock::now(); }
  // Runs `on_expiry` (on this worker) if ClearDeadline() is not called within `d`.
  void SetDeadline(SteadyClock::duration d, std::function<void()> on_expiry) {
    deadline = SteadyClock::now() + d;
    on_deadline = std::move(on_expiry);
    timer.cancel();  // re-arm the watchdog
  }
  void ClearDeadline() {
    deadline = SteadyClock::time_point::max();
    on_deadline = nullptr;
  }
  void CloseAll() {
    if (down) down->Close();
    if (up) up->Close();
  }

  asio::steady_timer timer;
  SteadyClock::time_point last_activity = SteadyClock::now();
  SteadyClock::time_point deadline = SteadyClock::time_point::max();
  std::function<void()> on_deadline;
  bool done = false;
  std::unique_ptr<Transport> down;
  std::unique_ptr<Transport> up;
  int up_index = -1;  // outbound: which upstream `up` leads to
  // The verified peer certificates of `down` (an inbound mTLS caller) and of `up` (an upstream
  // proxy), for closing connections whose peer a new CRL revokes.
  X509Ptr down_peer;
  X509Ptr up_peer;
};

namespace {

constexpr size_t kReadChunk = 16 * 1024;
constexpr absl::string_view kRbacDenied = "RBAC: access denied";
constexpr absl::string_view kConnectFailure =
    "upstream connect error or disconnect/reset before headers. reset reason: connection failure";
constexpr absl::string_view kConnectionTermination =
    "upstream connect error or disconnect/reset before headers. reset reason: connection termination";

auto Redirect(ErrorCode& ec) { return asio::redirect_error(asio::use_awaitable, ec); }

Task<void> Watchdog(std::shared_ptr<Conn> c, SteadyClock::duration idle) {
  while (!c->done) {
    c->timer.expires_at(std::min(c->last_activity + idle, c->deadline));
    ErrorCode ec;
    co_await c->timer.async_wait(Redirect(ec));
    if (c->done) break;
    const auto now = SteadyClock::now();
    if (c->on_deadline && now >= c->deadline) {
      auto expired = std::move(c->on_deadline);
      c->ClearDeadline();
      expired();
      continue;
    }
    if (now >= c->last_activity + idle) {
      c->CloseAll();
      break;
    }
  }
}

// Ends the connection's life: stops the watchdog, leaves the registry.
struct ConnScope {
  std::shared_ptr<Conn> c;
  ConnRegistry& reg;
  ~ConnScope() {
    c->done = true;
    c->timer.cancel();
    c->CloseAll();
    reg.Remove(c.get());
  }
};

struct ActiveGauge {
  Gauge* g;
  explicit ActiveGauge(Gauge* gauge) : g(gauge) { g->Add(1); }
  ~ActiveGauge() { g->Add(-1); }
};

std::shared_ptr<Conn> StartConn(ProxyCore& core, ConnRegistry& reg, const asio::any_io_executor& ex) {
  auto c = std::make_shared<Conn>(ex);
  reg.Add(c.get());
  asio::co_spawn(ex, Watchdog(c, ToChrono(core.options.idle_timeout)), asio::detached);
  return c;
}

// A read buffer of its own for each concurrent reader (growing a string by a whole chunk per
// read would zero-fill it every time).
using Scratch = std::unique_ptr<char[]>;
Scratch NewScratch() { return Scratch(new char[kReadChunk]); }

// Reads into `buf` (appending) through `scratch`, with the activity stamp updated.
Task<size_t> ReadInto(Conn& c, Transport& t, char* scratch, std::string& buf, ErrorCode& ec) {
  size_t n = co_await t.ReadSome(scratch, kReadChunk, ec);
  buf.append(scratch, n);
  if (n > 0) c.Touch();
  co_return n;
}

std::string Endpoint(const tcp::socket& s, bool local) {
  ErrorCode ec;
  auto ep = local ? s.local_endpoint(ec) : s.remote_endpoint(ec);
  return ec ? std::string() : ep.address().to_string();
}

void SetNoDelay(tcp::socket& s) {
  ErrorCode ignored;
  s.set_option(tcp::no_delay(true), ignored);
}

// True when the kept-alive connection is still usable: not closed by the peer and nothing
// unexpected waiting to be read.
bool Reusable(Transport& t) {
  char b;
  const ssize_t n = ::recv(t.socket().native_handle(), &b, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

// The Istio message of an authentication failure: the reason without the parenthesised detail
// ("Origin authentication failed.", "Jwt is expired").
std::string AuthnMessage(const std::string& reason) {
  const size_t paren = reason.find(" (");
  return paren == std::string::npos ? reason : reason.substr(0, paren);
}

// ---- TCP relay ----

Task<void> Pump(std::shared_ptr<Conn> c, Transport* from, Transport* to) {
  std::string buf;
  Scratch scratch = NewScratch();
  while (true) {
    ErrorCode ec;
    buf.clear();
    co_await ReadInto(*c, *from, scratch.get(), buf, ec);
    if (ec) {
      if (ec == asio::error::eof) {
        ErrorCode ignored;
        co_await to->ShutdownSend(ignored);
      } else {
        c->CloseAll();
      }
      co_return;
    }
    co_await to->Write(buf, ec);
    if (ec) {
      c->CloseAll();
      co_return;
    }
  }
}

// Relays both directions until both have ended; `to_up`/`to_down` are bytes already read.
Task<void> Relay(std::shared_ptr<Conn> c, std::string to_up, std::string to_down) {
  ErrorCode ec;
  if (!to_up.empty()) co_await c->up->Write(to_up, ec);
  if (!ec && !to_down.empty()) co_await c->down->Write(to_down, ec);
  if (ec) co_return;
  auto ex = co_await asio::this_coro::executor;
  // The second direction runs beside this one; `finished` wakes us when it ends.
  auto finished = std::make_shared<asio::steady_timer>(ex, SteadyClock::time_point::max());
  auto other_done = std::make_shared<bool>(false);
  asio::co_spawn(
      ex,
      [](std::shared_ptr<Conn> c, std::shared_ptr<asio::steady_timer> t, std::shared_ptr<bool> d) -> Task<void> {
        co_await Pump(c, c->up.get(), c->down.get());
        *d = true;
        t->cancel();
      }(c, finished, other_done),
      asio::detached);
  co_await Pump(c, c->down.get(), c->up.get());
  while (!*other_done) {
    ErrorCode wait_ec;
    co_await finished->async_wait(Redirect(wait_ec));
  }
}

// ---- connecting ----

Task<bool> ConnectTcp(Conn& c, tcp::socket& socket, const tcp::endpoint& ep, absl::Duration timeout, ErrorCode& ec) {
  c.SetDeadline(ToChrono(timeout), [&socket] {
    ErrorCode ignored;
    socket.close(ignored);
  });
  co_await socket.async_connect(ep, Redirect(ec));
  c.ClearDeadline();
  if (ec) co_return false;
  SetNoDelay(socket);
  co_return true;
}

std::string AlpnWire(absl::string_view proto) {
  return absl::StrCat(std::string(1, static_cast<char>(proto.size())), proto);
}

// Opens an mTLS connection to upstream `index` and checks its identity. On failure returns
// nullptr and sets `error` (Envoy's transport failure wording).
Task<std::unique_ptr<TlsTransport>> ConnectUpstream(ProxyCore& core, Conn& c, size_t index, bool http,
                                                    std::string& error) {
  const Upstream& u = core.options.upstreams[index];
  auto tls = core.tls();
  auto ex = co_await asio::this_coro::executor;
  tcp::socket socket(ex);
  ErrorCode ec;
  if (!co_await ConnectTcp(c, socket, core.upstream_endpoints[index], core.options.connect_timeout, ec)) {
    core.stats.upstream_connect_failures->Increment();
    error = absl::StrCat(kConnectFailure, ", transport failure reason: ", ec.message());
    co_return nullptr;
  }
  absl::StatusOr<std::unique_ptr<TlsTransport>> created =
      TlsTransport::Create(std::move(socket), tls->client(), /*server=*/false);
  // Istio's SNI and ALPN for mesh traffic.
  absl::Status hello = created.ok()
                           ? (*created)->SetClientHello(absl::StrCat("outbound_.", u.address.port, "_._.", u.fqdn),
                                                        AlpnWire(http ? "istio-http/1.1" : "istio"))
                           : created.status();
  if (!hello.ok()) {
    core.stats.tls_handshake_failures[kOutbound]->Increment();
    error = absl::StrCat(kConnectFailure, ", transport failure reason: TLS error: ", hello.message());
    co_return nullptr;
  }
  std::unique_ptr<TlsTransport> t = *std::move(created);
  std::string why;
  TlsTransport* raw = t.get();
  c.SetDeadline(ToChrono(core.options.connect_timeout), [raw] { raw->Close(); });
  co_await t->Handshake("", ec, why);
  c.ClearDeadline();
  if (ec) {
    core.stats.tls_handshake_failures[kOutbound]->Increment();
    if (SSL_get_verify_result(t->ssl()) == X509_V_ERR_CERT_REVOKED) core.stats.revoked_peers_refused->Increment();
    error = absl::StrCat(kConnectFailure, ", transport failure reason: TLS error: ", why);
    co_return nullptr;
  }
  const std::string expected = ExpectedUpstreamIdentity(u, tls->cert().spiffe_id);
  const std::string actual = PeerSpiffeId(t->ssl());
  if (actual != expected) {
    core.stats.upstream_identity_mismatch->Increment();
    error = absl::StrCat(kConnectFailure, ", transport failure reason: TLS error: peer identity \"", actual,
                         "\" is not the expected \"", expected, "\"");
    co_return nullptr;
  }
  c.up_peer.reset(SSL_get1_peer_certificate(t->ssl()));
  co_return t;
}

// ---- HTTP/1.1 exchange loop ----

struct Route {
  int status = 0;  // non-zero: answer locally with this status and `body`
  std::string body;
  std::vector<HttpHeader> add_headers;  // appended to the forwarded request
  std::string target;                   // the forwarded request target
  int upstream = -1;                    // outbound: upstream index
};

class HttpSession {
 public:
  HttpSession(ProxyCore& core, std::shared_ptr<Conn> conn, ListenerKind kind, std::string initial)
      : core_(core), c_(std::move(conn)), kind_(kind), buf_(std::move(initial)) {}
  virtual ~HttpSession() = default;

  Task<void> Run();

 protected:
  virtual Route Decide(const HttpRequestHead& req) = 0;
  // Makes c_->up a connection for `route`; false with a local reply in status/body.
  virtual Task<bool> EnsureUpstream(const Route& route, int& status, std::string& body) = 0;
  // Fields the caller may not pass on (inbound: x-forwarded-client-cert).
  virtual bool Strip(absl::string_view name) const { return false; }

  ProxyCore& core_;
  std::shared_ptr<Conn> c_;

 private:
  Task<void> Reply(int status, absl::string_view body, bool close, ErrorCode& ec);
  std::string SerializeRequest(const HttpRequestHead& req, const Route& route) const;
  std::string SerializeResponse(const HttpResponseHead& resp, bool chunked, bool close) const;
  enum class Forwarded { kOk, kUpstreamFailed, kEnd };
  // Forwards the request and its body. kUpstreamFailed: writing to the upstream failed;
  // kEnd: the session is over (the caller was answered, or is gone).
  Task<Forwarded> ForwardRequest(const HttpRequestHead& req, const Route& route);

  const ListenerKind kind_;
  std::string buf_;                 // bytes from downstream not yet consumed
  std::string rbuf_;                // bytes from upstream not yet consumed
  Scratch scratch_ = NewScratch();  // reads are sequential within an exchange
};

Task<void> HttpSession::Reply(int status, absl::string_view body, bool close, ErrorCode& ec) {
  core_.stats.Response(kind_, status).Increment();
  co_await c_->down->Write(LocalReply(status, body, close), ec);
}

std::string HttpSession::SerializeRequest(const HttpRequestHead& req, const Route& route) const {
  std::string out = absl::StrCat(req.method, " ", route.target, " HTTP/1.1\r\nhost: ", req.host, "\r\n");
  for (const auto& h : req.headers) {
    if (h.name == "host" || IsHopByHop(h.name, req.connection_tokens) || Strip(h.name)) continue;
    if (h.name == "expect") continue;  // answered here (Envoy's default)
    absl::StrAppend(&out, h.name, ": ", h.value, "\r\n");
  }
  for (const auto& h : route.add_headers) absl::StrAppend(&out, h.name, ": ", h.value, "\r\n");
  if (req.framing == BodyFraming::kChunked) out.append("transfer-encoding: chunked\r\n");
  if (req.websocket_upgrade) out.append("connection: upgrade\r\nupgrade: websocket\r\n");
  out.append("\r\n");
  return out;
}

std::string HttpSession::SerializeResponse(const HttpResponseHead& resp, bool chunked, bool close) const {
  std::string out = absl::StrCat("HTTP/1.1 ", resp.status, " ", resp.reason, "\r\n");
  for (const auto& h : resp.headers) {
    if (IsHopByHop(h.name, resp.connection_tokens)) continue;
    if (chunked && h.name == "content-length") continue;
    absl::StrAppend(&out, h.name, ": ", h.value, "\r\n");
  }
  if (chunked) out.append("transfer-encoding: chunked\r\n");
  if (resp.status == 101) out.append("connection: upgrade\r\nupgrade: websocket\r\n");
  if (close) out.append("connection: close\r\n");
  out.append("\r\n");
  return out;
}

Task<HttpSession::Forwarded> HttpSession::ForwardRequest(const HttpRequestHead& req, const Route& route) {
  std::string out = SerializeRequest(req, route);
  BodyRelay body(req.framing, req.content_length, req.framing == BodyFraming::kChunked, core_.options.limits);
  ErrorCode ec;
  while (true) {
    size_t used = 0;
    HttpError err;
    const ParseStatus st = body.Feed(buf_, used, out, err);
    buf_.erase(0, used);
    if (st == ParseStatus::kError) {
      // The app has a partial request: drop that connection; the caller gets the parser's answer.
      c_->up->Close();
      c_->up.reset();
      core_.stats.bad_requests[kind_]->Increment();
      ErrorCode ignored;
      co_await Reply(err.status, err.message, true, ignored);
      co_return Forwarded::kEnd;
    }
    if (!out.empty()) {
      co_await c_->up->Write(out, ec);
      out.clear();
      if (ec) co_return Forwarded::kUpstreamFailed;
    }
    if (st == ParseStatus::kDone) co_return Forwarded::kOk;
    co_await ReadInto(*c_, *c_->down, scratch_.get(), buf_, ec);
    if (ec) co_return Forwarded::kEnd;  // the caller left mid-body
  }
}

Task<void> HttpSession::Run() {
  RequestHeadParser parser(core_.options.limits);
  ResponseHeadParser rparser(core_.options.limits);
  ErrorCode ec;
  while (true) {
    // 1. The request head.
    HttpRequestHead req;
    size_t used = 0;
    HttpError err;
    while (true) {
      const ParseStatus st = parser.Parse(buf_, req, used, err);
      if (st == ParseStatus::kDone) break;
      if (st == ParseStatus::kError) {
        core_.stats.bad_requests[kind_]->Increment();
        core_.logger->debug("refusing a malformed request ({}): {}", err.status, err.message);
        co_await Reply(err.status, err.message, true, ec);
        co_return;
      }
      co_await ReadInto(*c_, *c_->down, scratch_.get(), buf_, ec);
      if (ec) co_return;  // closed between requests (or mid-head: nothing to answer)
    }
    parser.Reset();
    buf_.erase(0, used);
    const bool has_body = req.framing != BodyFraming::kNone;

    // 2. The decision.
    Route route = Decide(req);
    if (route.status != 0) {
      const bool close = !req.keep_alive || has_body;  // an unread body ends the connection
      co_await Reply(route.status, route.body, close, ec);
      if (close || ec) co_return;
      continue;
    }

    // 3. Forward, once more on a fresh connection if a kept-alive one turns out dead without
    // answering (idempotent requests without a body only).
    const bool retriable = !has_body && (req.method == "GET" || req.method == "HEAD" || req.method == "OPTIONS");
    HttpResponseHead resp;
    bool got_head = false;
    for (int attempt = 0; attempt < 2 && !got_head; ++attempt) {
      const bool reused = c_->up != nullptr;
      int status = 0;
      std::string body;
      if (!co_await EnsureUpstream(route, status, body)) {
        co_await Reply(status, body, !req.keep_alive || has_body, ec);
        if (!req.keep_alive || has_body || ec) co_return;
        break;
      }
      if (req.expect_continue && attempt == 0) {
        co_await c_->down->Write("HTTP/1.1 100 Continue\r\n\r\n", ec);
        if (ec) co_return;
      }
      const Forwarded forwarded = co_await ForwardRequest(req, route);
      if (forwarded == Forwarded::kEnd) co_return;
      if (forwarded == Forwarded::kUpstreamFailed) {
        c_->up->Close();
        c_->up.reset();
        if (reused && retriable && attempt == 0) continue;
        co_await Reply(503, kConnectionTermination, true, ec);
        co_return;
      }
      // 4. The response head (1xx interim responses are passed on).
      rbuf_.clear();
      rparser.Reset();
      while (true) {
        size_t rused = 0;
        HttpError rerr;
        const ParseStatus st = rparser.Parse(rbuf_, req.method, resp, rused, rerr);
        if (st == ParseStatus::kError) {
          core_.logger->warn("malformed response from upstream: {}", rerr.message);
          c_->up->Close();
          c_->up.reset();
          co_await Reply(502, "upstream sent an invalid response", true, ec);
          co_return;
        }
        if (st == ParseStatus::kDone) {
          rbuf_.erase(0, rused);
          rparser.Reset();
          if (resp.status >= 100 && resp.status < 200 && resp.status != 101) {
            co_await c_->down->Write(SerializeResponse(resp, false, false), ec);
            if (ec) co_return;
            continue;
          }
          got_head = true;
          break;
        }
        co_await ReadInto(*c_, *c_->up, scratch_.get(), rbuf_, ec);
        if (ec) break;
      }
      if (got_head) break;
      c_->up->Close();
      c_->up.reset();
      if (reused && retriable && rbuf_.empty() && attempt == 0) continue;
      co_await Reply(503, kConnectionTermination, true, ec);
      co_return;
    }
    if (!got_head) continue;  // answered locally, connection kept

    // 5. The response.
    if (resp.status == 101) {
      if (!req.websocket_upgrade) {
        co_await Reply(502, "upstream switched protocols without an upgrade request", true, ec);
        co_return;
      }
      core_.stats.Response(kind_, 101).Increment();
      co_await c_->down->Write(SerializeResponse(resp, false, false), ec);
      if (ec) co_return;
      co_await Relay(c_, std::move(buf_), std::move(rbuf_));
      co_return;
    }
    const bool chunked_out = resp.framing == BodyFraming::kChunked || resp.framing == BodyFraming::kUntilClose;
    const bool close_down = !req.keep_alive;
    std::string out = SerializeResponse(resp, chunked_out, close_down);
    HttpLimits response_limits = core_.options.limits;
    response_limits.max_body_bytes = 0;  // responses are not limited
    BodyRelay body(resp.framing, resp.content_length, chunked_out, response_limits);
    core_.stats.Response(kind_, resp.status).Increment();
    bool body_ok = true;
    while (true) {
      size_t rused = 0;
      HttpError rerr;
      const ParseStatus st = body.Feed(rbuf_, rused, out, rerr);
      rbuf_.erase(0, rused);
      if (st == ParseStatus::kError) {
        core_.logger->warn("malformed response body from upstream: {}", rerr.message);
        body_ok = false;
        break;
      }
      if (!out.empty()) {
        co_await c_->down->Write(out, ec);
        out.clear();
        if (ec) co_return;
      }
      if (st == ParseStatus::kDone) break;
      co_await ReadInto(*c_, *c_->up, scratch_.get(), rbuf_, ec);
      if (ec) {
        if (ec == asio::error::eof && resp.framing == BodyFraming::kUntilClose) {
          body.FinishAtClose(out);
          co_await c_->down->Write(out, ec);
          if (ec) co_return;
          break;
        }
        body_ok = false;
        break;
      }
    }
    if (!body_ok) co_return;  // a truncated response: the caller must see the connection end
    if (!resp.keep_alive || !rbuf_.empty()) {
      c_->up->Close();
      c_->up.reset();
    }
    if (close_down) {
      co_await c_->down->ShutdownSend(ec);
      co_return;
    }
  }
}

// ---- inbound ----

class InboundHttp final : public HttpSession {
 public:
  struct Peer {
    bool mtls = false;
    std::string spiffe_id;
    std::string cert_hash;
    std::string sni;
    std::string source_ip;
    std::string destination_ip;
  };
  InboundHttp(ProxyCore& core, std::shared_ptr<Conn> conn, std::string initial, size_t port_index, Peer peer,
              std::shared_ptr<const TlsContexts> tls)
      : HttpSession(core, std::move(conn), kInbound, std::move(initial)),
        port_index_(port_index),
        peer_(std::move(peer)),
        tls_(std::move(tls)) {}

 protected:
  bool Strip(absl::string_view name) const override { return name == "x-forwarded-client-cert"; }

  Route Decide(const HttpRequestHead& req) override {
    Route r;
    // Envoy normalises the path (Istio's normalize_path + merge_slashes) and forwards the
    // normalised form, so the app sees what the policy judged.
    if (req.target != "*") {
      const rbac::SplitTarget split = rbac::SplitRequestTarget(req.target);
      auto path = rbac::NormalizePath(split.path);
      if (!path.ok()) {
        core_.stats.bad_requests[kInbound]->Increment();
        r.status = 400;
        r.body = "Bad Request";
        return r;
      }
      r.target = split.query.empty() ? *path : absl::StrCat(*path, "?", split.query);
    } else {
      r.target = "*";
    }
    auto policy = core_.policy();
    authz::RequestInput in;
    in.protocol = rbac::Protocol::kHttp;
    in.destination_service = core_.service_fqdn;
    in.destination_namespace = core_.options.namespace_;
    in.destination_labels = core_.options.labels;
    in.destination_ip = peer_.destination_ip;
    in.destination_port = core_.options.inbound[port_index_].app.port;
    in.destination_principal = tls_->cert().spiffe_id;
    in.source_principal = peer_.spiffe_id;
    in.source_ip = peer_.source_ip;
    in.mtls = peer_.mtls;
    in.sni = peer_.sni;
    in.method = req.method;
    in.path = req.target;
    in.host = req.host;
    in.headers.reserve(req.headers.size());
    for (const auto& h : req.headers) {
      if (!Strip(h.name)) in.headers.emplace_back(h.name, h.value);
    }
    auto decision = policy->engine->Check(in);
    if (!decision.ok()) {
      core_.stats.policy_errors->Increment();
      core_.logger->error("policy evaluation failed, denying {} {}: {}", req.method, req.target,
                          decision.status().message());
      r.status = 403;
      r.body = std::string(kRbacDenied);
      return r;
    }
    if (decision->shadow && !decision->shadow->allowed) core_.stats.shadow_denied->Increment();
    if (!decision->allowed) {
      if (decision->status == 401) {
        core_.stats.authn_failed->Increment();
        r.status = 401;
        r.body = AuthnMessage(decision->reason);
      } else {
        core_.stats.rbac_denied_http->Increment();
        r.status = 403;
        r.body = std::string(kRbacDenied);
      }
      core_.logger->debug("denied {} {} from \"{}\" ({}): {}", req.method, req.target, peer_.spiffe_id, r.status,
                          decision->reason);
      return r;
    }
    core_.stats.rbac_allowed_http->Increment();
    if (peer_.mtls) {
      // Envoy's XFCC as Istio configures it (SANITIZE_SET with hash, subject and URI).
      std::string xfcc = absl::StrCat("By=", tls_->cert().spiffe_id, ";Hash=", peer_.cert_hash, ";Subject=\"\"");
      if (!peer_.spiffe_id.empty()) absl::StrAppend(&xfcc, ";URI=", peer_.spiffe_id);
      r.add_headers.push_back({"x-forwarded-client-cert", std::move(xfcc)});
    }
    return r;
  }

  Task<bool> EnsureUpstream(const Route&, int& status, std::string& body) override {
    if (c_->up != nullptr && Reusable(*c_->up)) co_return true;
    c_->up.reset();
    auto ex = co_await asio::this_coro::executor;
    tcp::socket socket(ex);
    ErrorCode ec;
    if (!co_await ConnectTcp(*c_, socket, core_.app_endpoints[port_index_], core_.options.connect_timeout, ec)) {
      core_.stats.app_connect_failures->Increment();
      core_.logger->warn("cannot connect to the app at {}: {}", core_.options.inbound[port_index_].app.ToString(),
                         ec.message());
      status = 503;
      body = std::string(kConnectFailure);
      co_return false;
    }
    c_->up = std::make_unique<PlainTransport>(std::move(socket));
    co_return true;
  }

 private:
  const size_t port_index_;
  const Peer peer_;
  const std::shared_ptr<const TlsContexts> tls_;  // the connection's certificate: our identity
};

// An HTTP/1.x request line starts with an upper-case method and a space.
enum class Sniff { kHttp, kTcp, kNeedMore };
Sniff SniffProtocol(absl::string_view data) {
  for (size_t i = 0; i < data.size() && i < 16; ++i) {
    const char c = data[i];
    if (c == ' ') return i >= 3 ? Sniff::kHttp : Sniff::kTcp;
    if (c < 'A' || c > 'Z') return Sniff::kTcp;
  }
  return data.size() >= 16 ? Sniff::kTcp : Sniff::kNeedMore;
}

// Reads into `buf` until `done(buf)`, or the deadline passes (returns with `timed_out`).
template <typename Done>
Task<void> ReadUntil(ProxyCore& core, Conn& c, Transport& t, char* scratch, std::string& buf, Done done,
                     bool& timed_out, ErrorCode& ec) {
  timed_out = false;
  Transport* raw = &t;
  bool* flag = &timed_out;
  c.SetDeadline(ToChrono(core.options.protocol_detection_timeout), [raw, flag] {
    *flag = true;
    ErrorCode ignored;
    raw->socket().cancel(ignored);
  });
  while (!done(buf)) {
    co_await ReadInto(c, t, scratch, buf, ec);
    if (ec) break;
  }
  c.ClearDeadline();
  if (timed_out) ec.clear();
}

Task<void> InboundTcp(ProxyCore& core, std::shared_ptr<Conn> c, std::string initial, size_t port_index,
                      const InboundHttp::Peer& peer, const std::shared_ptr<const TlsContexts>& tls) {
  auto policy = core.policy();
  authz::RequestInput in;
  in.protocol = rbac::Protocol::kTcp;
  in.destination_service = core.service_fqdn;
  in.destination_namespace = core.options.namespace_;
  in.destination_labels = core.options.labels;
  in.destination_ip = peer.destination_ip;
  in.destination_port = core.options.inbound[port_index].app.port;
  in.destination_principal = tls->cert().spiffe_id;
  in.source_principal = peer.spiffe_id;
  in.source_ip = peer.source_ip;
  in.mtls = peer.mtls;
  in.sni = peer.sni;
  auto decision = policy->engine->Check(in);
  if (!decision.ok()) {
    core.stats.policy_errors->Increment();
    core.logger->error("policy evaluation failed, closing a TCP connection: {}", decision.status().message());
    co_return;
  }
  if (decision->shadow && !decision->shadow->allowed) core.stats.shadow_denied->Increment();
  if (!decision->allowed) {
    core.stats.rbac_denied_tcp->Increment();
    core.logger->debug("denied a TCP connection from \"{}\": {}", peer.spiffe_id, decision->reason);
    co_return;  // Envoy's network RBAC filter closes the connection
  }
  core.stats.rbac_allowed_tcp->Increment();
  auto ex = co_await asio::this_coro::executor;
  tcp::socket socket(ex);
  ErrorCode ec;
  if (!co_await ConnectTcp(*c, socket, core.app_endpoints[port_index], core.options.connect_timeout, ec)) {
    core.stats.app_connect_failures->Increment();
    core.logger->warn("cannot connect to the app at {}: {}", core.options.inbound[port_index].app.ToString(),
                      ec.message());
    co_return;
  }
  c->up = std::make_unique<PlainTransport>(std::move(socket));
  co_await Relay(c, std::move(initial), "");
}

// ---- outbound ----

class OutboundHttp final : public HttpSession {
 public:
  OutboundHttp(ProxyCore& core, std::shared_ptr<Conn> conn) : HttpSession(core, std::move(conn), kOutbound, "") {}

 protected:
  Route Decide(const HttpRequestHead& req) override {
    Route r;
    r.target = req.target;
    const auto& ups = core_.options.upstreams;
    for (size_t i = 0; i < ups.size(); ++i) {
      if (HostMatchesUpstream(req.host, ups[i])) {
        r.upstream = static_cast<int>(i);
        return r;
      }
    }
    r.status = 404;
    r.body = absl::StrCat("no upstream for host \"", req.host, "\"");
    return r;
  }

  Task<bool> EnsureUpstream(const Route& route, int& status, std::string& body) override {
    if (c_->up != nullptr && c_->up_index == route.upstream && Reusable(*c_->up)) co_return true;
    if (c_->up != nullptr) c_->up->Close();
    c_->up.reset();
    std::string error;
    auto t = co_await ConnectUpstream(core_, *c_, static_cast<size_t>(route.upstream), true, error);
    if (t == nullptr) {
      core_.logger->warn("upstream {}: {}", core_.options.upstreams[route.upstream].name, error);
      status = 503;
      body = std::move(error);
      co_return false;
    }
    c_->up = std::move(t);
    c_->up_index = route.upstream;
    co_return true;
  }
};

}  // namespace

void ConnRegistry::CloseAll() {
  const std::vector<Conn*> all(conns_.begin(), conns_.end());
  for (Conn* c : all) c->CloseAll();
}

size_t ConnRegistry::CloseRevoked(const RevocationIndex& revoked) {
  size_t closed = 0;
  const std::vector<Conn*> all(conns_.begin(), conns_.end());
  for (Conn* c : all) {
    if (c->down_peer != nullptr && revoked.IsRevoked(c->down_peer.get())) {
      c->CloseAll();
      ++closed;
    } else if (c->up != nullptr && c->up_peer != nullptr && revoked.IsRevoked(c->up_peer.get())) {
      c->up->Close();
      c->up_peer.reset();
      ++closed;
    }
  }
  return closed;
}

Task<void> ServeInbound(ProxyCore& core, ConnRegistry& reg, tcp::socket socket, size_t port_index) {
  core.stats.cx_total[kInbound]->Increment();
  ActiveGauge active(core.stats.cx_active[kInbound]);
  auto policy = core.policy();
  auto tls = core.tls();
  if (policy == nullptr || tls == nullptr || core.stopping) co_return;  // not ready, or shutting down
  SetNoDelay(socket);
  const PortPolicy port = policy->ports[port_index];
  auto ex = co_await asio::this_coro::executor;
  auto c = StartConn(core, reg, ex);
  ConnScope scope{c, reg};
  InboundHttp::Peer peer;
  peer.source_ip = Endpoint(socket, false);
  peer.destination_ip = Endpoint(socket, true);
  c->down = std::make_unique<PlainTransport>(std::move(socket));

  // The first byte tells a TLS ClientHello (0x16) from plaintext. Under PERMISSIVE a TCP peer
  // that waits for the server to speak first is plaintext once the detection timeout passes;
  // under STRICT it must start a handshake.
  std::string initial;
  ErrorCode ec;
  bool timed_out = false;
  Scratch scratch = NewScratch();
  if (port.protocol == PortProtocol::kHttp || port.mode == authz::PeerMode::kStrict) {
    co_await ReadInto(*c, *c->down, scratch.get(), initial, ec);
  } else {
    co_await ReadUntil(
        core, *c, *c->down, scratch.get(), initial, [](const std::string& b) { return !b.empty(); }, timed_out, ec);
  }
  if (ec) co_return;
  const bool is_tls = !initial.empty() && initial[0] == 0x16;
  if (!is_tls && port.mode == authz::PeerMode::kStrict) {
    core.stats.strict_plaintext_refused->Increment();
    co_return;  // Envoy: no filter chain matches plaintext on a STRICT port
  }
  if (is_tls) {
    absl::StatusOr<std::unique_ptr<TlsTransport>> created =
        TlsTransport::Create(std::move(c->down->socket()), tls->server(), /*server=*/true);
    c->down = nullptr;
    if (!created.ok()) {
      core.stats.tls_handshake_failures[kInbound]->Increment();
      core.logger->debug("inbound TLS handshake from {} failed: {}", peer.source_ip, created.status().message());
      co_return;
    }
    std::unique_ptr<TlsTransport> t = *std::move(created);
    std::string why;
    TlsTransport* raw = t.get();
    c->SetDeadline(ToChrono(core.options.connect_timeout), [raw] { raw->Close(); });
    co_await t->Handshake(initial, ec, why);
    c->ClearDeadline();
    if (ec) {
      core.stats.tls_handshake_failures[kInbound]->Increment();
      if (SSL_get_verify_result(t->ssl()) == X509_V_ERR_CERT_REVOKED) core.stats.revoked_peers_refused->Increment();
      core.logger->debug("inbound TLS handshake from {} failed: {}", peer.source_ip, why);
      t->Close();
      co_return;
    }
    peer.mtls = true;
    c->down_peer.reset(SSL_get1_peer_certificate(t->ssl()));
    peer.spiffe_id = PeerSpiffeId(t->ssl());
    peer.cert_hash = PeerCertificateHash(t->ssl());
    if (const char* sni = SSL_get_servername(t->ssl(), TLSEXT_NAMETYPE_host_name)) peer.sni = sni;
    initial.clear();
    c->down = std::move(t);
  }

  PortProtocol protocol = port.protocol;
  if (protocol == PortProtocol::kDetect) {
    co_await ReadUntil(
        core, *c, *c->down, scratch.get(), initial,
        [](const std::string& b) { return SniffProtocol(b) != Sniff::kNeedMore; }, timed_out, ec);
    if (ec) co_return;
    protocol = SniffProtocol(initial) == Sniff::kHttp ? PortProtocol::kHttp : PortProtocol::kTcp;
  }
  if (protocol == PortProtocol::kHttp) {
    InboundHttp session(core, c, std::move(initial), port_index, std::move(peer), tls);
    co_await session.Run();
  } else {
    co_await InboundTcp(core, c, std::move(initial), port_index, peer, tls);
  }
}

Task<void> ServeOutbound(ProxyCore& core, ConnRegistry& reg, tcp::socket socket) {
  core.stats.cx_total[kOutbound]->Increment();
  ActiveGauge active(core.stats.cx_active[kOutbound]);
  if (core.tls() == nullptr || core.stopping) co_return;  // no certificate yet, or shutting down
  SetNoDelay(socket);
  auto ex = co_await asio::this_coro::executor;
  auto c = StartConn(core, reg, ex);
  ConnScope scope{c, reg};
  c->down = std::make_unique<PlainTransport>(std::move(socket));
  OutboundHttp session(core, c);
  co_await session.Run();
}

Task<void> ServeUpstreamTcp(ProxyCore& core, ConnRegistry& reg, tcp::socket socket, size_t upstream_index) {
  core.stats.cx_total[kOutbound]->Increment();
  ActiveGauge active(core.stats.cx_active[kOutbound]);
  if (core.tls() == nullptr || core.stopping) co_return;
  SetNoDelay(socket);
  auto ex = co_await asio::this_coro::executor;
  auto c = StartConn(core, reg, ex);
  ConnScope scope{c, reg};
  c->down = std::make_unique<PlainTransport>(std::move(socket));
  std::string error;
  auto t = co_await ConnectUpstream(core, *c, upstream_index, false, error);
  if (t == nullptr) {
    core.logger->warn("upstream {}: {}", core.options.upstreams[upstream_index].name, error);
    co_return;
  }
  c->up = std::move(t);
  co_await Relay(c, "", "");
}

}  // namespace meshid::meshproxy
