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

absl::StatusOr<std::unique_ptr<TlsTransport>> TlsTransport::Create(tcp::socket socket, SSL_CTX* ctx, bool server) {
  SslPtr ssl(SSL_new(ctx));  // takes its own reference on ctx
  if (!ssl) return OpenSslError("creating a TLS session");
  BioPtr rbio(BIO_new(BIO_s_mem()));
  BioPtr wbio(BIO_new(BIO_s_mem()));
  if (!rbio || !wbio) return OpenSslError("creating the TLS session's buffers");
  // An empty memory BIO means "retry later", not end of file. (A control call that cannot fail
  // on a memory BIO.)
  BIO_set_mem_eof_return(rbio.get(), -1);
  SSL_set_bio(ssl.get(), rbio.get(), wbio.get());  // cannot fail; the session owns both now
  BIO* read_bio = rbio.release();
  BIO* write_bio = wbio.release();
  SSL_set_options(ssl.get(), SSL_OP_NO_RENEGOTIATION);  // returns the new options, not a status
  if (server) {
    SSL_set_accept_state(ssl.get());
  } else {
    SSL_set_connect_state(ssl.get());
  }
  return std::unique_ptr<TlsTransport>(new TlsTransport(std::move(socket), std::move(ssl), read_bio, write_bio));
}

absl::Status TlsTransport::SetClientHello(const std::string& sni, absl::string_view alpn_wire) {
  if (!sni.empty() && SSL_set_tlsext_host_name(ssl_.get(), sni.c_str()) != 1) {
    return OpenSslError(absl::StrCat("setting the SNI \"", sni, "\""));
  }
  // SSL_set_alpn_protos returns 0 on success.
  if (!alpn_wire.empty() && SSL_set_alpn_protos(ssl_.get(), reinterpret_cast<const unsigned char*>(alpn_wire.data()),
                                                static_cast<unsigned>(alpn_wire.size())) != 0) {
    return OpenSslError("setting the ALPN protocols");
  }
  return absl::OkStatus();
}

bool TlsTransport::FeedReadBio(absl::string_view bytes, ErrorCode& ec) {
  if (bytes.empty() ||
      BIO_write(rbio_, bytes.data(), static_cast<int>(bytes.size())) == static_cast<int>(bytes.size())) {
    return true;
  }
  DrainOpenSslErrors();
  ec = ProtocolError();
  return false;
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
  if (!ec && n > 0) FeedReadBio(absl::string_view(in_.data(), n), ec);
}

Task<void> TlsTransport::Handshake(absl::string_view initial, ErrorCode& ec, std::string& error) {
  if (!FeedReadBio(initial, ec)) {
    error = "cannot buffer the ClientHello";
    co_return;
  }
  while (true) {
    ERR_clear_error();
    const int r = SSL_do_handshake(ssl_.get());
    const int err = r == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl_.get(), r);
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
    const long verify = SSL_get_verify_result(ssl_.get());
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
    const int r = SSL_read_ex(ssl_.get(), data, size, &n);
    if (r == 1) co_return n;
    const int err = SSL_get_error(ssl_.get(), r);
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
    if (SSL_write_ex(ssl_.get(), data.data(), step, &written) != 1) {
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
    // Queues close_notify. Its result is not ours to act on: 0 (we do not wait for the peer's
    // close_notify) is the expected answer, and a failure leaves only the TCP half-close.
    SSL_shutdown(ssl_.get());
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
