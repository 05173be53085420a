#include "meshproxy/transport.h"

#include <openssl/err.h>

#include "absl/strings/str_cat.h"
#include "common/openssl_ptr.h"

namespace meshid::meshproxy {
namespace {

constexpr size_t kSocketReadBytes = 16 * 1024;

auto Redirect(ErrorCode& ec) { return asio::redirect_error(asio::use_awaitable, ec); }

ErrorCode ProtocolError() { return asio::error::make_error_code(asio::error::connection_aborted); }

}  // namespace

// ---- plain TCP ----

Task<size_t> PlainTransport::ReadSome(char* data, size_t size, ErrorCode& ec) {
  size_t n = co_await socket_.async_read_some(asio::buffer(data, size), Redirect(ec));
  co_return n;
}

Task<void> PlainTransport::Write(absl::string_view data, ErrorCode& ec) {
  co_await asio::async_write(socket_, asio::buffer(data.data(), data.size()), Redirect(ec));
}

Task<void> PlainTransport::ShutdownSend(ErrorCode& ec) {
  socket_.shutdown(tcp::socket::shutdown_send, ec);
  co_return;
}

void PlainTransport::Close() {
  ErrorCode ignored;
  socket_.close(ignored);
}

// ---- TLS over memory BIOs ----

TlsTransport::TlsTransport(tcp::socket socket, SSL_CTX* ctx, bool server) : socket_(std::move(socket)) {
  ssl_ = SSL_new(ctx);  // takes its own reference on ctx
  if (ssl_ == nullptr) return;
  rbio_ = BIO_new(BIO_s_mem());
  wbio_ = BIO_new(BIO_s_mem());
  if (rbio_ == nullptr || wbio_ == nullptr) {
    BIO_free(rbio_);
    BIO_free(wbio_);
    rbio_ = wbio_ = nullptr;
    SSL_free(ssl_);
    ssl_ = nullptr;
    return;
  }
  // An empty memory BIO means "retry later", not end of file.
  BIO_set_mem_eof_return(rbio_, -1);
  SSL_set_bio(ssl_, rbio_, wbio_);
  SSL_set_options(ssl_, SSL_OP_NO_RENEGOTIATION);
  if (server) {
    SSL_set_accept_state(ssl_);
  } else {
    SSL_set_connect_state(ssl_);
  }
}

TlsTransport::~TlsTransport() {
  if (ssl_ != nullptr) SSL_free(ssl_);
}

void TlsTransport::SetClientHello(const std::string& sni, absl::string_view alpn_wire) {
  if (ssl_ == nullptr) return;
  if (!sni.empty()) SSL_set_tlsext_host_name(ssl_, sni.c_str());
  if (!alpn_wire.empty()) {
    SSL_set_alpn_protos(ssl_, reinterpret_cast<const unsigned char*>(alpn_wire.data()),
                        static_cast<unsigned>(alpn_wire.size()));
  }
}

Task<void> TlsTransport::Flush(ErrorCode& ec) {
  while (!ec && BIO_ctrl_pending(wbio_) > 0) {
    const size_t pending = BIO_ctrl_pending(wbio_);
    out_.resize(pending);
    const int n = BIO_read(wbio_, out_.data(), static_cast<int>(pending));
    if (n <= 0) break;
    co_await asio::async_write(socket_, asio::buffer(out_.data(), static_cast<size_t>(n)), Redirect(ec));
  }
}

Task<void> TlsTransport::Fill(ErrorCode& ec) {
  if (in_.empty()) in_.resize(kSocketReadBytes);
  size_t n = co_await socket_.async_read_some(asio::buffer(in_.data(), in_.size()), Redirect(ec));
  if (!ec && n > 0) BIO_write(rbio_, in_.data(), static_cast<int>(n));
}

Task<void> TlsTransport::Handshake(absl::string_view initial, ErrorCode& ec, std::string& error) {
  if (ssl_ == nullptr) {
    ec = ProtocolError();
    error = "cannot create a TLS session: " + DrainOpenSslErrors();
    co_return;
  }
  if (!initial.empty()) BIO_write(rbio_, initial.data(), static_cast<int>(initial.size()));
  while (true) {
    ERR_clear_error();
    const int r = SSL_do_handshake(ssl_);
    const int err = r == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl_, r);
    // Whatever the outcome, send what OpenSSL produced (our flight, or the alert).
    ErrorCode flush_ec;
    co_await Flush(flush_ec);
    if (r == 1) {
      if (flush_ec) {
        ec = flush_ec;
        error = flush_ec.message();
      }
      co_return;
    }
    if (err == SSL_ERROR_WANT_READ) {
      if (flush_ec) {
        ec = flush_ec;
        error = flush_ec.message();
        co_return;
      }
      co_await Fill(ec);
      if (ec) {
        error = ec == asio::error::eof ? "connection closed during the handshake" : ec.message();
        co_return;
      }
      continue;
    }
    ec = ProtocolError();
    const long verify = SSL_get_verify_result(ssl_);
    error = verify != X509_V_OK ? X509_verify_cert_error_string(verify) : DrainOpenSslErrors();
    if (error.empty()) error = absl::StrCat("TLS handshake failed (SSL error ", err, ")");
    DrainOpenSslErrors();
    co_return;
  }
}

Task<size_t> TlsTransport::ReadSome(char* data, size_t size, ErrorCode& ec) {
  while (true) {
    size_t n = 0;
    ERR_clear_error();
    const int r = SSL_read_ex(ssl_, data, size, &n);
    if (r == 1) co_return n;
    const int err = SSL_get_error(ssl_, r);
    if (err == SSL_ERROR_WANT_READ) {
      co_await Fill(ec);
      if (ec) co_return 0;
      continue;
    }
    DrainOpenSslErrors();
    ec = err == SSL_ERROR_ZERO_RETURN ? asio::error::make_error_code(asio::error::eof) : ProtocolError();
    co_return 0;
  }
}

Task<void> TlsTransport::Write(absl::string_view data, ErrorCode& ec) {
  if (sent_close_notify_) {
    ec = asio::error::make_error_code(asio::error::shut_down);
    co_return;
  }
  while (!data.empty()) {
    // A memory BIO takes everything; write in record-sized steps to bound our copy.
    const size_t step = std::min<size_t>(data.size(), 64 * 1024);
    size_t written = 0;
    ERR_clear_error();
    if (SSL_write_ex(ssl_, data.data(), step, &written) != 1) {
      DrainOpenSslErrors();
      ec = ProtocolError();
      co_return;
    }
    data.remove_prefix(written);
    co_await Flush(ec);
    if (ec) co_return;
  }
}

Task<void> TlsTransport::ShutdownSend(ErrorCode& ec) {
  if (!sent_close_notify_) {
    sent_close_notify_ = true;
    ERR_clear_error();
    SSL_shutdown(ssl_);  // queues close_notify; we do not wait for the peer's
    DrainOpenSslErrors();
    co_await Flush(ec);
  }
  if (!ec) socket_.shutdown(tcp::socket::shutdown_send, ec);
}

void TlsTransport::Close() {
  ErrorCode ignored;
  socket_.close(ignored);
}

}  // namespace meshid::meshproxy
