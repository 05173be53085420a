// HTTP/1.1 message heads and bodies as the sidecar reads them from untrusted peers: a strict,
// incremental parser (RFC 9112) that refuses everything request smuggling is made of, and a
// body relay that streams a body to the next hop without buffering it whole.
//
// Strictness (each refusal names the status to answer):
//  * bare LF, CR not followed by LF, obs-fold (a line starting with SP/HTAB), whitespace
//    between a field name and its colon, control characters in names or values → 400;
//  * Content-Length together with Transfer-Encoding, more than one Content-Length (even equal
//    values), a non-numeric Content-Length → 400; a Transfer-Encoding whose last coding is not
//    `chunked` or that names `chunked` twice → 400, other codings before `chunked` → 501;
//  * a request head larger than HttpLimits::max_head_bytes or with more than max_headers
//    fields → 431; a body larger than max_body_bytes → 413;
//  * HTTP/1.0 → 426 (Envoy without accept_http_10), other versions → 400 (505 for HTTP/2+);
//    a missing, repeated or malformed Host → 400; `Expect` other than 100-continue → 417;
//  * chunk sizes of more than 16 hex digits, anything but a hex size, `;ext` or CRLF on a size
//    line, a chunk not followed by CRLF → 400.
// Header names are lower-cased (Envoy writes them lower-case on HTTP/1.1 too).
//
// No I/O and no allocation beyond the parsed strings; safe to call from any thread (each
// object is used by one connection at a time).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace meshid::http {

struct HttpLimits {
  size_t max_head_bytes = 60 * 1024;  // start line + fields (Envoy's max_request_headers_kb: 60)
  size_t max_headers = 100;           // Envoy's max_headers_count
  uint64_t max_body_bytes = 0;        // 0 = unlimited
};

struct HttpHeader {
  std::string name;   // lower-case
  std::string value;  // without surrounding whitespace
};

enum class BodyFraming { kNone, kLength, kChunked, kUntilClose };

// A refusal: the status to answer and a short reason for logs (and the response body).
struct HttpError {
  int status = 400;
  std::string message;
};

enum class ParseStatus { kNeedMore, kDone, kError };

struct HttpRequestHead {
  std::string method;
  std::string target;  // origin-form (absolute-form is rewritten to it), or "*" for OPTIONS
  std::string host;    // the Host header (or the authority of an absolute-form target)
  std::vector<HttpHeader> headers;
  std::vector<std::string> connection_tokens;  // lower-case tokens of Connection
  BodyFraming framing = BodyFraming::kNone;
  uint64_t content_length = 0;
  bool keep_alive = true;
  bool expect_continue = false;
  bool websocket_upgrade = false;  // Connection: upgrade + Upgrade: websocket

  // The first field named `lower_name`, or nullptr.
  const std::string* Find(absl::string_view lower_name) const;
};

struct HttpResponseHead {
  int status = 0;
  int minor_version = 1;
  std::string reason;
  std::vector<HttpHeader> headers;
  std::vector<std::string> connection_tokens;
  BodyFraming framing = BodyFraming::kNone;
  uint64_t content_length = 0;
  bool keep_alive = true;

  const std::string* Find(absl::string_view lower_name) const;
};

// True for fields a proxy must not forward: Connection and the fields it names (except Host
// and Content-Length), Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade.
// The sender re-adds the framing and upgrade fields it uses.
bool IsHopByHop(absl::string_view lower_name, const std::vector<std::string>& connection_tokens);

// Incremental request-head parser for one connection. Feed it the connection's buffered
// bytes (all of them, from the start of the message) each time more arrive; it resumes its
// scan where it stopped. After kDone, `consumed` bytes belong to the head; call Reset() before
// the next message.
class RequestHeadParser {
 public:
  explicit RequestHeadParser(const HttpLimits& limits) : limits_(limits) {}
  ParseStatus Parse(absl::string_view data, HttpRequestHead& out, size_t& consumed, HttpError& error);
  void Reset() { scanned_ = 0; }

 private:
  const HttpLimits limits_;
  size_t scanned_ = 0;
};

// The same for responses from the app or an upstream proxy, with the same strictness; every
// refusal is a 502 for the caller. `request_method` decides whether a body follows (HEAD:
// never).
class ResponseHeadParser {
 public:
  explicit ResponseHeadParser(const HttpLimits& limits) : limits_(limits) {}
  ParseStatus Parse(absl::string_view data, absl::string_view request_method, HttpResponseHead& out, size_t& consumed,
                    HttpError& error);
  void Reset() { scanned_ = 0; }

 private:
  ParseStatus ParseImpl(absl::string_view data, absl::string_view request_method, HttpResponseHead& out,
                        size_t& consumed, HttpError& error);
  const HttpLimits limits_;
  size_t scanned_ = 0;
};

// Streams one body from its wire framing to the next hop's. Chunked input is decoded and
// re-framed canonically (chunk extensions and trailers are dropped, as Envoy does by default),
// so what the next hop parses is exactly what this parser accepted. `chunked_output` selects
// the outgoing framing for kChunked and kUntilClose input (kLength input is copied as is).
class BodyRelay {
 public:
  BodyRelay(BodyFraming framing, uint64_t content_length, bool chunked_output, const HttpLimits& limits);

  // Consumes the front of `in` that belongs to the body and appends the bytes to send on to
  // `out`. kNeedMore: all of `in` was consumed and more is expected; kDone: the body is
  // complete after `consumed` bytes (the rest of `in` is the next message); kError: malformed.
  ParseStatus Feed(absl::string_view in, size_t& consumed, std::string& out, HttpError& error);
  // For kUntilClose input: the peer closed, the body is complete; appends the final framing.
  void FinishAtClose(std::string& out);
  bool done() const { return state_ == State::kDone; }
  uint64_t body_bytes() const { return total_; }

 private:
  enum class State { kLength, kUntilClose, kSize, kExt, kSizeLf, kData, kDataCr, kDataLf, kTrailer, kTrailerLf, kDone };
  ParseStatus AddBodyBytes(uint64_t n, HttpError& error);

  const bool chunked_output_;
  const uint64_t max_body_;
  State state_;
  uint64_t remaining_ = 0;  // bytes left in the body (kLength) or current chunk (kData)
  uint64_t total_ = 0;
  int size_digits_ = 0;
  size_t line_bytes_ = 0;  // chunk extension or trailer bytes so far
  size_t trailer_bytes_ = 0;
  bool trailer_line_empty_ = true;
};

// Canonical reason phrases for the statuses the proxy answers itself.
absl::string_view ReasonPhrase(int status);

// Serializes the response the proxy answers itself (Envoy's local reply): status line,
// content-length, content-type text/plain, `extra` fields, and `connection: close` when
// `close`.
std::string LocalReply(int status, absl::string_view body, bool close, const std::vector<HttpHeader>& extra = {});

}  // namespace meshid::http
