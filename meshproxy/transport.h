// Byte streams the sidecar's connections are made of: plain TCP, or TLS driven by hand over
// memory BIOs (so the first bytes read while detecting TLS can be fed to the handshake, and a
// half-close can send close_notify without reading). Coroutines on one worker's io_context.
//
// Concurrency: at most one ReadSome and one Write/ShutdownSend may be outstanding at a time
// (the TCP relay reads and writes a transport from two coroutines on the same thread). The
// read path never writes to the socket: TLS records it produces (a KeyUpdate answer) leave
// with the next Write.
#pragma once

#include <openssl/ssl.h>

// Boost 1.74's awaitable.hpp uses std::exchange without including <utility>.
// clang-format off
#include <utility>
// clang-format on
#include <boost/asio.hpp>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/openssl_ptr.h"

namespace meshid::meshproxy {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using ErrorCode = boost::system::error_code;
template <typename T>
using Task = asio::awaitable<T>;

class Transport {
 public:
  virtual ~Transport() = default;
  // Reads at least one byte; 0 with `ec` set (asio::error::eof on an orderly close).
  virtual Task<size_t> ReadSome(char* data, size_t size, ErrorCode& ec) = 0;
  // Writes everything or sets `ec`.
  virtual Task<void> Write(absl::string_view data, ErrorCode& ec) = 0;
  // No more data from us: TLS close_notify, then a TCP half-close. Reading continues.
  virtual Task<void> ShutdownSend(ErrorCode& ec) = 0;
  // Abortive close; outstanding operations finish with operation_aborted.
  virtual void Close() = 0;
  virtual tcp::socket& socket() = 0;
};

class PlainTransport final : public Transport {
 public:
  explicit PlainTransport(tcp::socket socket) : socket_(std::move(socket)) {}
  Task<size_t> ReadSome(char* data, size_t size, ErrorCode& ec) override;
  Task<void> Write(absl::string_view data, ErrorCode& ec) override;
  Task<void> ShutdownSend(ErrorCode& ec) override;
  void Close() override;
  tcp::socket& socket() override { return socket_; }

 private:
  tcp::socket socket_;
};

class TlsTransport final : public Transport {
 public:
  // Takes a reference on `ctx`; the connection keeps its context (and so its certificate)
  // for its whole life. Internal (naming what OpenSSL refused) when the session cannot be set up.
  static absl::StatusOr<std::unique_ptr<TlsTransport>> Create(tcp::socket socket, SSL_CTX* ctx, bool server);

  // Client side: SNI and ALPN to offer, before Handshake().
  absl::Status SetClientHello(const std::string& sni, absl::string_view alpn_wire);
  // Runs the handshake. `initial` holds bytes already read from the socket (the peeked
  // ClientHello). On failure `ec` is set and `error` says why (OpenSSL's reason).
  Task<void> Handshake(absl::string_view initial, ErrorCode& ec, std::string& error);
  SSL* ssl() const { return ssl_.get(); }

  Task<size_t> ReadSome(char* data, size_t size, ErrorCode& ec) override;
  Task<void> Write(absl::string_view data, ErrorCode& ec) override;
  Task<void> ShutdownSend(ErrorCode& ec) override;
  void Close() override;
  tcp::socket& socket() override { return socket_; }

 private:
  TlsTransport(tcp::socket socket, SslPtr ssl, BIO* rbio, BIO* wbio)
      : socket_(std::move(socket)), ssl_(std::move(ssl)), rbio_(rbio), wbio_(wbio) {}
  Task<void> Flush(ErrorCode& ec);
  // Reads from the socket into the read BIO.
  Task<void> Fill(ErrorCode& ec);
  // Hands socket bytes to OpenSSL; false (and `ec` set) if the memory BIO refused them.
  bool FeedReadBio(absl::string_view bytes, ErrorCode& ec);

  tcp::socket socket_;
  SslPtr ssl_;
  BIO* rbio_;        // owned by ssl_
  BIO* wbio_;        // owned by ssl_
  std::string in_;   // socket bytes on their way to the read BIO
  std::string out_;  // records on their way to the socket
  bool sent_close_notify_ = false;
};

}  // namespace meshid::meshproxy
