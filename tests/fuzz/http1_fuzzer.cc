// The sidecar's HTTP/1.1 request parser and body relay on arbitrary bytes (what any caller can
// send to an inbound or outbound listener), plus the response parser (what an app can send).
// Checks, beyond not crashing:
//  * parsing the bytes whole and in arbitrary pieces gives the same outcome (the resumable
//    scan never changes a verdict);
//  * a chunked body re-framed by the relay decodes to exactly the bytes it carried, and its
//    re-framing is stable (what the next hop parses is what we accepted).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "http/http1.h"

namespace {

using meshid::http::BodyFraming;
using meshid::http::BodyRelay;
using meshid::http::HttpError;
using meshid::http::HttpLimits;
using meshid::http::HttpRequestHead;
using meshid::http::HttpResponseHead;
using meshid::http::ParseStatus;
using meshid::http::RequestHeadParser;
using meshid::http::ResponseHeadParser;

// Aborts (a finding) naming the broken property's line.
#define Check(ok)                                             \
  do {                                                        \
    if (!(ok)) {                                              \
      std::fprintf(stderr, "http1_fuzzer.cc:%d\n", __LINE__); \
      std::abort();                                           \
    }                                                         \
  } while (0)

// Relays `in` as a body of `framing`, feeding `step` bytes at a time; returns the output and
// the verdict.
ParseStatus RelayBody(BodyFraming framing, uint64_t length, absl::string_view in, size_t step, const HttpLimits& limits,
                      std::string& out, size_t& consumed) {
  BodyRelay relay(framing, length, framing == BodyFraming::kChunked, limits);
  consumed = 0;
  ParseStatus st = relay.done() ? ParseStatus::kDone : ParseStatus::kNeedMore;
  while (st == ParseStatus::kNeedMore && consumed < in.size()) {
    size_t used = 0;
    HttpError err;
    const size_t n = std::min(step, in.size() - consumed);
    st = relay.Feed(in.substr(consumed, n), used, out, err);
    Check(used <= n);
    if (st == ParseStatus::kNeedMore) Check(used == n);
    consumed += used;
  }
  return st;
}

// The decoded payload of a canonical chunked body (our own output).
std::string Decode(absl::string_view chunked) {
  std::string data;
  size_t pos = 0;
  while (true) {
    const size_t eol = chunked.find("\r\n", pos);
    Check(eol != absl::string_view::npos);
    const size_t n = std::strtoull(std::string(chunked.substr(pos, eol - pos)).c_str(), nullptr, 16);
    pos = eol + 2;
    if (n == 0) {
      Check(chunked.substr(pos) == "\r\n");
      return data;
    }
    Check(n <= chunked.size() - pos);
    data.append(chunked.data() + pos, n);
    pos += n;
    Check(chunked.substr(pos, 2) == "\r\n");
    pos += 2;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const size_t step = 1 + data[0] % 64;  // how the bytes arrive
  HttpLimits limits;
  limits.max_head_bytes = 256 + data[1] * 16;
  limits.max_headers = 20;
  limits.max_body_bytes = data[1] % 2 ? 0 : 4096;
  const absl::string_view in(reinterpret_cast<const char*>(data) + 2, size - 2);

  // Requests: whole versus piecewise.
  RequestHeadParser whole_parser(limits);
  HttpRequestHead whole;
  size_t whole_used = 0;
  HttpError whole_err;
  const ParseStatus whole_st = whole_parser.Parse(in, whole, whole_used, whole_err);

  RequestHeadParser parser(limits);
  HttpRequestHead head;
  size_t used = 0;
  HttpError err;
  ParseStatus st = ParseStatus::kNeedMore;
  for (size_t end = std::min(step, in.size());; end = std::min(end + step, in.size())) {
    st = parser.Parse(in.substr(0, end), head, used, err);
    if (st != ParseStatus::kNeedMore || end == in.size()) break;
  }
  Check(st == whole_st);
  if (st == ParseStatus::kError) Check(err.status == whole_err.status);
  if (st == ParseStatus::kDone) {
    Check(used == whole_used && used <= in.size());
    Check(head.method == whole.method && head.target == whole.target && head.host == whole.host);
    Check(!head.method.empty() && !head.host.empty() && !head.target.empty());
    Check(head.target[0] == '/' || head.target == "*");
    std::string out;
    size_t consumed = 0;
    const ParseStatus body_st =
        RelayBody(head.framing, head.content_length, in.substr(used), step, limits, out, consumed);
    if (head.framing == BodyFraming::kChunked && body_st == ParseStatus::kDone) {
      // Our framing parses back, unchanged, to the same payload.
      std::string again;
      size_t again_used = 0;
      Check(RelayBody(BodyFraming::kChunked, 0, out, out.size() + 1, HttpLimits{}, again, again_used) ==
            ParseStatus::kDone);
      Check(again_used == out.size());
      Check(Decode(again) == Decode(out));
    }
    if (head.framing == BodyFraming::kLength && body_st == ParseStatus::kDone) {
      Check(out.size() == head.content_length);
    }
  }

  // Responses from an app.
  ResponseHeadParser rparser(limits);
  HttpResponseHead resp;
  size_t rused = 0;
  HttpError rerr;
  if (rparser.Parse(in, data[1] % 3 == 0 ? "HEAD" : "GET", resp, rused, rerr) == ParseStatus::kDone) {
    Check(resp.status >= 100 && resp.status <= 599 && rused <= in.size());
    std::string out;
    size_t consumed = 0;
    BodyRelay relay(resp.framing, resp.content_length, resp.framing != BodyFraming::kLength, HttpLimits{});
    HttpError body_err;
    (void)relay.Feed(in.substr(rused), consumed, out, body_err);
  } else if (rparser.Parse(in, "GET", resp, rused, rerr) == ParseStatus::kError) {
    Check(rerr.status == 502);
  }
  return 0;
}
