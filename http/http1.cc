#include "http/http1.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace meshid::http {
namespace {

constexpr size_t kMaxChunkExtensionBytes = 4096;
constexpr size_t kMaxTrailerBytes = 16 * 1024;
constexpr int kMaxLeadingEmptyLines = 4;

// RFC 9110 tchar.
bool IsTokenChar(unsigned char c) {
  if (absl::ascii_isalnum(c)) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
      return true;
    default:
      return false;
  }
}

bool IsToken(absl::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    if (!IsTokenChar(c)) return false;
  }
  return true;
}

// field-value characters: VCHAR, obs-text, SP, HTAB.
bool IsFieldValueChar(unsigned char c) { return c == '\t' || c == ' ' || (c >= 0x21 && c != 0x7f); }

HttpError Error(int status, std::string message) { return HttpError{status, std::move(message)}; }

// Scans `data` from `scanned` for the end of a head (CRLFCRLF). Refuses bare LF and CR not
// followed by LF as soon as they are seen. Leading empty lines (CRLF) are skipped: `start` is
// where the start line begins.
struct HeadScan {
  ParseStatus status = ParseStatus::kNeedMore;
  size_t start = 0;  // first byte of the start line
  size_t end = 0;    // one past the final CRLFCRLF
};

HeadScan ScanHead(absl::string_view data, size_t& scanned, size_t max_head_bytes, int too_large_status,
                  HttpError& error) {
  HeadScan r;
  size_t start = 0;
  int empty_lines = 0;
  while (start + 1 < data.size() && data[start] == '\r' && data[start + 1] == '\n' &&
         empty_lines < kMaxLeadingEmptyLines) {
    start += 2;
    ++empty_lines;
  }
  if (start < data.size() && data[start] == '\n') {
    error = Error(400, "bare LF in message head");
    r.status = ParseStatus::kError;
    return r;
  }
  if (start == data.size() || (data.size() - start == 1 && data[start] == '\r')) return r;  // only empty lines yet
  r.start = start;
  size_t i = std::max(scanned, start);
  const size_t limit = std::min(data.size(), start + max_head_bytes);
  for (; i < limit; ++i) {
    const char c = data[i];
    if (c == '\n') {
      if (i == start || data[i - 1] != '\r') {
        error = Error(400, "bare LF in message head");
        r.status = ParseStatus::kError;
        return r;
      }
      // CRLF CRLF: the head ends here.
      if (i >= start + 3 && data[i - 2] == '\n' && data[i - 3] == '\r') {
        r.status = ParseStatus::kDone;
        r.end = i + 1;
        scanned = r.end;
        return r;
      }
    } else if (i > start && data[i - 1] == '\r') {
      error = Error(400, "CR not followed by LF in message head");
      r.status = ParseStatus::kError;
      return r;
    }
  }
  // A CR at the end may still be followed by LF: rescan it next time.
  scanned = i > start && data[i - 1] == '\r' ? i - 1 : i;
  if (data.size() - start >= max_head_bytes) {
    error = Error(too_large_status, "message head too large");
    r.status = ParseStatus::kError;
  }
  return r;
}

// Splits the head (without the final CRLF) into lines; validates each field line and appends
// it to `headers`. `lines[0]` is the start line.
bool ParseFieldLines(absl::string_view head, size_t max_headers, int too_many_status, absl::string_view* start_line,
                     std::vector<HttpHeader>& headers, HttpError& error) {
  bool first = true;
  size_t pos = 0;
  while (pos < head.size()) {
    size_t eol = head.find("\r\n", pos);
    if (eol == absl::string_view::npos) eol = head.size();
    absl::string_view line = head.substr(pos, eol - pos);
    pos = eol + 2;
    if (first) {
      *start_line = line;
      first = false;
      continue;
    }
    if (line.empty()) break;  // the final empty line
    if (line[0] == ' ' || line[0] == '\t') {
      error = Error(400, "obsolete line folding in header field");
      return false;
    }
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos) {
      error = Error(400, "header field without a colon");
      return false;
    }
    absl::string_view name = line.substr(0, colon);
    if (!IsToken(name)) {
      error = Error(400, name.empty() ? "empty header field name"
                                      : (absl::StrContains(name, ' ') || absl::StrContains(name, '\t')
                                             ? "whitespace in or after a header field name"
                                             : "invalid character in header field name"));
      return false;
    }
    absl::string_view value = line.substr(colon + 1);
    for (unsigned char c : value) {
      if (!IsFieldValueChar(c)) {
        error = Error(400, "invalid character in header field value");
        return false;
      }
    }
    value = absl::StripAsciiWhitespace(value);
    if (headers.size() >= max_headers) {
      error = Error(too_many_status, "too many header fields");
      return false;
    }
    headers.push_back(HttpHeader{absl::AsciiStrToLower(name), std::string(value)});
  }
  return true;
}

// Comma-separated list elements, OWS trimmed, lower-cased; empty elements refused.
bool SplitList(absl::string_view value, std::vector<std::string>& out) {
  for (absl::string_view part : absl::StrSplit(value, ',')) {
    part = absl::StripAsciiWhitespace(part);
    if (part.empty()) return false;
    out.push_back(absl::AsciiStrToLower(part));
  }
  return true;
}

bool ParseContentLength(absl::string_view v, uint64_t& out) {
  if (v.empty() || v.size() > 19) return false;
  for (char c : v) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return absl::SimpleAtoi(v, &out);
}

// Host = uri-host [ ":" port ]; refuses characters no authority has (and userinfo).
bool ValidHost(absl::string_view host) {
  if (host.empty() || host.size() > 1024) return false;
  for (unsigned char c : host) {
    if (absl::ascii_isalnum(c)) continue;
    if (!absl::StrContains("-._~!$&'()*+,;=:%[]", static_cast<char>(c))) return false;
  }
  return true;
}

// Framing fields common to requests and responses. Returns false with `error` set.
struct Framing {
  BodyFraming framing = BodyFraming::kNone;
  uint64_t content_length = 0;
  std::vector<std::string> connection_tokens;
};

bool ParseFraming(const std::vector<HttpHeader>& headers, bool is_request, Framing& f, HttpError& error) {
  int cl_count = 0;
  std::vector<std::string> te;
  bool has_te = false;
  for (const auto& h : headers) {
    if (h.name == "content-length") {
      ++cl_count;
      uint64_t n = 0;
      if (!ParseContentLength(h.value, n)) {
        error = Error(400, "invalid Content-Length");
        return false;
      }
      if (cl_count > 1 && (is_request || n != f.content_length)) {
        error = Error(400, "more than one Content-Length");
        return false;
      }
      f.content_length = n;
    } else if (h.name == "transfer-encoding") {
      has_te = true;
      if (!SplitList(h.value, te)) {
        error = Error(400, "invalid Transfer-Encoding");
        return false;
      }
    } else if (h.name == "connection") {
      if (!SplitList(h.value, f.connection_tokens)) {
        error = Error(400, "invalid Connection");
        return false;
      }
    }
  }
  if (has_te) {
    const auto chunked = std::count(te.begin(), te.end(), "chunked");
    if (!is_request) {
      // RFC 9112 6.3: Transfer-Encoding overrides Content-Length; chunked last or read to close.
      f.framing =
          !te.empty() && te.back() == "chunked" && chunked == 1 ? BodyFraming::kChunked : BodyFraming::kUntilClose;
      f.content_length = 0;
      return true;
    }
    if (cl_count > 0) {
      error = Error(400, "both Content-Length and Transfer-Encoding");
      return false;
    }
    if (te.empty() || te.back() != "chunked" || chunked != 1) {
      error = chunked == 0 ? Error(501, "unsupported Transfer-Encoding")
                           : Error(400, "Transfer-Encoding must end with a single chunked");
      return false;
    }
    for (const auto& coding : te) {
      if (!IsToken(coding)) {
        error = Error(400, "invalid Transfer-Encoding");
        return false;
      }
    }
    if (te.size() > 1) {
      error = Error(501, "unsupported Transfer-Encoding");
      return false;
    }
    f.framing = BodyFraming::kChunked;
    return true;
  }
  if (cl_count > 0) {
    f.framing = f.content_length > 0 ? BodyFraming::kLength : BodyFraming::kNone;
  } else {
    f.framing = is_request ? BodyFraming::kNone : BodyFraming::kUntilClose;
  }
  return true;
}

bool HasToken(const std::vector<std::string>& tokens, absl::string_view t) {
  return std::find(tokens.begin(), tokens.end(), t) != tokens.end();
}

const std::string* FindHeader(const std::vector<HttpHeader>& headers, absl::string_view name) {
  for (const auto& h : headers) {
    if (h.name == name) return &h.value;
  }
  return nullptr;
}

}  // namespace

const std::string* HttpRequestHead::Find(absl::string_view lower_name) const { return FindHeader(headers, lower_name); }
const std::string* HttpResponseHead::Find(absl::string_view lower_name) const {
  return FindHeader(headers, lower_name);
}

bool IsHopByHop(absl::string_view n, const std::vector<std::string>& connection_tokens) {
  if (n == "connection" || n == "keep-alive" || n == "proxy-connection" || n == "te" || n == "trailer" ||
      n == "transfer-encoding" || n == "upgrade") {
    return true;
  }
  for (const auto& t : connection_tokens) {
    // Connection cannot make end-to-end framing or routing fields disappear.
    if (t == n && n != "content-length" && n != "host") return true;
  }
  return false;
}

ParseStatus RequestHeadParser::Parse(absl::string_view data, HttpRequestHead& out, size_t& consumed, HttpError& error) {
  HeadScan scan = ScanHead(data, scanned_, limits_.max_head_bytes, 431, error);
  if (scan.status != ParseStatus::kDone) return scan.status;
  out = HttpRequestHead();
  absl::string_view head = data.substr(scan.start, scan.end - scan.start - 2);  // keep one CRLF per line
  absl::string_view start_line;
  if (!ParseFieldLines(head, limits_.max_headers, 431, &start_line, out.headers, error)) return ParseStatus::kError;

  // request-line = method SP request-target SP HTTP-version
  const size_t sp1 = start_line.find(' ');
  const size_t sp2 = sp1 == absl::string_view::npos ? sp1 : start_line.find(' ', sp1 + 1);
  if (sp2 == absl::string_view::npos || start_line.find(' ', sp2 + 1) != absl::string_view::npos) {
    error = Error(400, "malformed request line");
    return ParseStatus::kError;
  }
  absl::string_view method = start_line.substr(0, sp1);
  absl::string_view target = start_line.substr(sp1 + 1, sp2 - sp1 - 1);
  absl::string_view version = start_line.substr(sp2 + 1);
  if (!IsToken(method)) {
    error = Error(400, "invalid method");
    return ParseStatus::kError;
  }
  if (version != "HTTP/1.1") {
    if (version == "HTTP/1.0") {
      error = Error(426, "HTTP/1.0 is not supported");
    } else if (version.size() == 8 && absl::StartsWith(version, "HTTP/") && absl::ascii_isdigit(version[5]) &&
               version[6] == '.' && absl::ascii_isdigit(version[7]) && version[5] >= '2') {
      error = Error(505, "HTTP version not supported");
    } else {
      error = Error(400, "invalid HTTP version");
    }
    return ParseStatus::kError;
  }
  if (target.empty()) {
    error = Error(400, "empty request target");
    return ParseStatus::kError;
  }
  for (unsigned char c : target) {
    if (c <= 0x20 || c >= 0x7f || c == '#') {
      error = Error(400, "invalid character in request target");
      return ParseStatus::kError;
    }
  }
  out.method = std::string(method);
  if (out.method == "CONNECT") {
    error = Error(405, "CONNECT is not supported");
    return ParseStatus::kError;
  }

  int host_count = 0;
  for (const auto& h : out.headers) {
    if (h.name == "host") {
      ++host_count;
      out.host = h.value;
    }
  }
  if (host_count != 1 || !ValidHost(out.host)) {
    error = Error(400, host_count == 0 ? "missing Host" : (host_count > 1 ? "more than one Host" : "invalid Host"));
    return ParseStatus::kError;
  }
  if (target[0] == '/') {
    out.target = std::string(target);
  } else if (target == "*") {
    if (out.method != "OPTIONS") {
      error = Error(400, "asterisk-form target is only for OPTIONS");
      return ParseStatus::kError;
    }
    out.target = "*";
  } else {
    // absolute-form: the authority replaces Host (RFC 9112 3.2.2).
    absl::string_view rest = target;
    if (!absl::ConsumePrefix(&rest, "http://") && !absl::ConsumePrefix(&rest, "https://")) {
      error = Error(400, "invalid request target");
      return ParseStatus::kError;
    }
    const size_t slash = rest.find_first_of("/?");
    absl::string_view authority = rest.substr(0, slash);
    if (!ValidHost(authority) || absl::StrContains(authority, '@')) {
      error = Error(400, "invalid authority in request target");
      return ParseStatus::kError;
    }
    out.host = std::string(authority);
    std::string path(slash == absl::string_view::npos ? "/" : rest.substr(slash));
    if (path[0] == '?') path.insert(0, "/");
    out.target = std::move(path);
  }

  Framing f;
  if (!ParseFraming(out.headers, true, f, error)) return ParseStatus::kError;
  out.framing = f.framing;
  out.content_length = f.content_length;
  out.connection_tokens = std::move(f.connection_tokens);
  if (limits_.max_body_bytes > 0 && out.content_length > limits_.max_body_bytes) {
    error = Error(413, "request body too large");
    return ParseStatus::kError;
  }
  out.keep_alive = !HasToken(out.connection_tokens, "close");
  if (const std::string* expect = out.Find("expect")) {
    if (!absl::EqualsIgnoreCase(*expect, "100-continue")) {
      error = Error(417, "unsupported Expect");
      return ParseStatus::kError;
    }
    out.expect_continue = true;
  }
  if (const std::string* upgrade = out.Find("upgrade")) {
    out.websocket_upgrade = HasToken(out.connection_tokens, "upgrade") && absl::EqualsIgnoreCase(*upgrade, "websocket");
  }
  consumed = scan.end;
  return ParseStatus::kDone;
}

ParseStatus ResponseHeadParser::Parse(absl::string_view data, absl::string_view request_method, HttpResponseHead& out,
                                      size_t& consumed, HttpError& error) {
  const ParseStatus st = ParseImpl(data, request_method, out, consumed, error);
  if (st == ParseStatus::kError) error.status = 502;  // whatever is wrong, the caller gets a bad gateway
  return st;
}

ParseStatus ResponseHeadParser::ParseImpl(absl::string_view data, absl::string_view request_method,
                                          HttpResponseHead& out, size_t& consumed, HttpError& error) {
  HeadScan scan = ScanHead(data, scanned_, limits_.max_head_bytes, 502, error);
  if (scan.status != ParseStatus::kDone) return scan.status;
  out = HttpResponseHead();
  absl::string_view head = data.substr(scan.start, scan.end - scan.start - 2);
  absl::string_view status_line;
  if (!ParseFieldLines(head, limits_.max_headers, 502, &status_line, out.headers, error)) return ParseStatus::kError;
  // status-line = HTTP-version SP status-code SP [ reason-phrase ]
  if (status_line.size() < 12 || !absl::StartsWith(status_line, "HTTP/1.") ||
      (status_line[7] != '0' && status_line[7] != '1') || status_line[8] != ' ' ||
      (status_line.size() > 12 && status_line[12] != ' ')) {
    error = Error(502, "malformed status line");
    return ParseStatus::kError;
  }
  out.minor_version = status_line[7] - '0';
  int status = 0;
  for (int i = 9; i < 12; ++i) {
    if (!absl::ascii_isdigit(status_line[i])) {
      error = Error(502, "malformed status code");
      return ParseStatus::kError;
    }
    status = status * 10 + (status_line[i] - '0');
  }
  if (status < 100 || status > 599) {
    error = Error(502, "status code out of range");
    return ParseStatus::kError;
  }
  out.status = status;
  if (status_line.size() > 13) out.reason = std::string(status_line.substr(13));
  for (unsigned char c : out.reason) {
    if (!IsFieldValueChar(c)) {
      error = Error(502, "invalid reason phrase");
      return ParseStatus::kError;
    }
  }
  Framing f;
  if (!ParseFraming(out.headers, false, f, error)) return ParseStatus::kError;
  out.connection_tokens = std::move(f.connection_tokens);
  out.keep_alive = out.minor_version == 1 ? !HasToken(out.connection_tokens, "close")
                                          : HasToken(out.connection_tokens, "keep-alive");
  if (request_method == "HEAD" || (status >= 100 && status < 200) || status == 204 || status == 304) {
    out.framing = BodyFraming::kNone;
  } else {
    out.framing = f.framing;
    out.content_length = f.content_length;
    if (out.framing == BodyFraming::kUntilClose) out.keep_alive = false;
  }
  consumed = scan.end;
  return ParseStatus::kDone;
}

BodyRelay::BodyRelay(BodyFraming framing, uint64_t content_length, bool chunked_output, const HttpLimits& limits)
    : chunked_output_(chunked_output), max_body_(limits.max_body_bytes) {
  switch (framing) {
    case BodyFraming::kNone:
      state_ = State::kDone;
      break;
    case BodyFraming::kLength:
      state_ = content_length == 0 ? State::kDone : State::kLength;
      remaining_ = content_length;
      break;
    case BodyFraming::kChunked:
      state_ = State::kSize;
      break;
    case BodyFraming::kUntilClose:
      state_ = State::kUntilClose;
      break;
  }
}

ParseStatus BodyRelay::AddBodyBytes(uint64_t n, HttpError& error) {
  total_ += n;
  if (max_body_ > 0 && total_ > max_body_) {
    error = Error(413, "request body too large");
    return ParseStatus::kError;
  }
  return ParseStatus::kNeedMore;
}

void BodyRelay::FinishAtClose(std::string& out) {
  if (state_ != State::kUntilClose) return;
  if (chunked_output_) out.append("0\r\n\r\n");
  state_ = State::kDone;
}

ParseStatus BodyRelay::Feed(absl::string_view in, size_t& consumed, std::string& out, HttpError& error) {
  consumed = 0;
  if (state_ == State::kDone) return ParseStatus::kDone;
  if (state_ == State::kLength) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, in.size()));
    out.append(in.data(), n);
    consumed = n;
    remaining_ -= n;
    total_ += n;
    if (remaining_ == 0) {
      state_ = State::kDone;
      return ParseStatus::kDone;
    }
    return ParseStatus::kNeedMore;
  }
  // Chunked output: all data of this call goes out as one chunk.
  const size_t frame_at = out.size();
  size_t data_bytes = 0;
  auto emit = [&](absl::string_view d) {
    if (data_bytes == 0 && chunked_output_) out.append(18, ' ');  // room for "<hex>\r\n"
    out.append(d.data(), d.size());
    data_bytes += d.size();
  };
  auto finish_frame = [&](bool last) {
    if (chunked_output_ && data_bytes > 0) {
      std::string size_line = absl::StrCat(absl::Hex(data_bytes), "\r\n");
      // Move the data left over the unused part of the reserved room.
      const size_t room = 18;
      out.replace(frame_at, room, size_line);
      out.append("\r\n");
    }
    if (chunked_output_ && last) out.append("0\r\n\r\n");
  };

  if (state_ == State::kUntilClose) {
    if (ParseStatus s = AddBodyBytes(in.size(), error); s == ParseStatus::kError) return s;
    emit(in);
    consumed = in.size();
    finish_frame(false);
    return ParseStatus::kNeedMore;
  }

  size_t i = 0;
  while (i < in.size()) {
    const unsigned char c = static_cast<unsigned char>(in[i]);
    switch (state_) {
      case State::kSize:
        if (absl::ascii_isxdigit(c)) {
          if (++size_digits_ > 16) {
            error = Error(400, "chunk size too long");
            return ParseStatus::kError;
          }
          remaining_ =
              remaining_ * 16 + static_cast<uint64_t>(absl::ascii_isdigit(c) ? c - '0' : (c | 0x20) - 'a' + 10);
          ++i;
        } else if (size_digits_ > 0 && c == ';') {
          state_ = State::kExt;
          line_bytes_ = 0;
          ++i;
        } else if (size_digits_ > 0 && c == '\r') {
          state_ = State::kSizeLf;
          ++i;
        } else {
          error = Error(400, "invalid chunk size");
          return ParseStatus::kError;
        }
        break;
      case State::kExt:
        if (c == '\r') {
          state_ = State::kSizeLf;
        } else if ((c < 0x20 && c != '\t') || c == 0x7f || ++line_bytes_ > kMaxChunkExtensionBytes) {
          error = Error(400, "invalid chunk extension");
          return ParseStatus::kError;
        }
        ++i;
        break;
      case State::kSizeLf:
        if (c != '\n') {
          error = Error(400, "chunk size line not ended by CRLF");
          return ParseStatus::kError;
        }
        ++i;
        size_digits_ = 0;
        if (remaining_ == 0) {
          state_ = State::kTrailer;
          trailer_line_empty_ = true;
        } else {
          if (ParseStatus s = AddBodyBytes(remaining_, error); s == ParseStatus::kError) return s;
          total_ -= remaining_;  // counted again as the data arrives
          state_ = State::kData;
        }
        break;
      case State::kData: {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, in.size() - i));
        emit(in.substr(i, n));
        total_ += n;
        remaining_ -= n;
        i += n;
        if (remaining_ == 0) state_ = State::kDataCr;
        break;
      }
      case State::kDataCr:
        if (c != '\r') {
          error = Error(400, "chunk data not followed by CRLF");
          return ParseStatus::kError;
        }
        state_ = State::kDataLf;
        ++i;
        break;
      case State::kDataLf:
        if (c != '\n') {
          error = Error(400, "chunk data not followed by CRLF");
          return ParseStatus::kError;
        }
        state_ = State::kSize;
        ++i;
        break;
      case State::kTrailer:
        // Trailer fields are read and dropped; each line must be a valid field line.
        if (c == '\r') {
          state_ = State::kTrailerLf;
        } else if (c == '\n') {
          error = Error(400, "bare LF in chunked trailer");
          return ParseStatus::kError;
        } else {
          if (trailer_line_empty_ && (c == ' ' || c == '\t')) {
            error = Error(400, "obsolete line folding in trailer");
            return ParseStatus::kError;
          }
          if (!IsFieldValueChar(c) || ++trailer_bytes_ > kMaxTrailerBytes) {
            error = Error(400, "invalid chunked trailer");
            return ParseStatus::kError;
          }
          trailer_line_empty_ = false;
        }
        ++i;
        break;
      case State::kTrailerLf:
        if (c != '\n') {
          error = Error(400, "CR not followed by LF in chunked trailer");
          return ParseStatus::kError;
        }
        ++i;
        if (trailer_line_empty_) {
          state_ = State::kDone;
          consumed = i;
          finish_frame(true);
          return ParseStatus::kDone;
        }
        trailer_line_empty_ = true;
        state_ = State::kTrailer;
        break;
      case State::kLength:
      case State::kUntilClose:
      case State::kDone:
        break;
    }
  }
  consumed = i;
  finish_frame(false);
  return ParseStatus::kNeedMore;
}

absl::string_view ReasonPhrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Payload Too Large";
    case 417:
      return "Expectation Failed";
    case 426:
      return "Upgrade Required";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

std::string LocalReply(int status, absl::string_view body, bool close, const std::vector<HttpHeader>& extra) {
  std::string out = absl::StrCat("HTTP/1.1 ", status, " ", ReasonPhrase(status), "\r\ncontent-length: ", body.size(),
                                 "\r\ncontent-type: text/plain\r\n");
  for (const auto& h : extra) absl::StrAppend(&out, h.name, ": ", h.value, "\r\n");
  if (close) out.append("connection: close\r\n");
  out.append("server: meshid\r\n\r\n");
  out.append(body.data(), body.size());
  return out;
}

}  // namespace meshid::http
