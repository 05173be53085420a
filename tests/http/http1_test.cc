// The sidecar's HTTP/1.1 parser and body relay, byte by byte.
#include "http/http1.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace meshid::http {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

struct Parsed {
  ParseStatus status;
  HttpRequestHead head;
  size_t consumed = 0;
  HttpError error;
};

Parsed ParseRequest(const std::string& data, HttpLimits limits = {}) {
  RequestHeadParser parser(limits);
  Parsed p;
  p.status = parser.Parse(data, p.head, p.consumed, p.error);
  return p;
}

// Feeds the bytes one at a time, as the slowest client would send them.
Parsed ParseRequestBytewise(const std::string& data, HttpLimits limits = {}) {
  RequestHeadParser parser(limits);
  Parsed p;
  for (size_t i = 1; i <= data.size(); ++i) {
    p.status = parser.Parse(absl::string_view(data).substr(0, i), p.head, p.consumed, p.error);
    if (p.status != ParseStatus::kNeedMore) return p;
  }
  return p;
}

int RefusalStatus(const std::string& data, HttpLimits limits = {}) {
  Parsed whole = ParseRequest(data, limits);
  Parsed bytewise = ParseRequestBytewise(data, limits);
  EXPECT_EQ(whole.status, bytewise.status) << data;
  if (whole.status != ParseStatus::kError) return 0;
  EXPECT_EQ(whole.error.status, bytewise.error.status) << data;
  return whole.error.status;
}

TEST(HttpRequestHead, ParsesASimpleGet) {
  const std::string req =
      "GET /reviews/1?x=y HTTP/1.1\r\nHost: reviews:9080\r\nUser-Agent: curl/7.88\r\nX-Empty:\r\n\r\n";
  Parsed p = ParseRequestBytewise(req);
  ASSERT_EQ(p.status, ParseStatus::kDone) << p.error.message;
  EXPECT_EQ(p.consumed, req.size());
  EXPECT_EQ(p.head.method, "GET");
  EXPECT_EQ(p.head.target, "/reviews/1?x=y");
  EXPECT_EQ(p.head.host, "reviews:9080");
  EXPECT_EQ(p.head.framing, BodyFraming::kNone);
  EXPECT_TRUE(p.head.keep_alive);
  ASSERT_EQ(p.head.headers.size(), 3u);
  EXPECT_EQ(p.head.headers[1].name, "user-agent");  // lower-cased
  EXPECT_EQ(p.head.headers[1].value, "curl/7.88");
  EXPECT_EQ(p.head.headers[2].value, "");
  EXPECT_EQ(*p.head.Find("host"), "reviews:9080");
}

TEST(HttpRequestHead, StopsAtTheEndOfTheHeadLeavingPipelinedBytes) {
  const std::string first = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
  Parsed p = ParseRequest(first + "GET /b HTTP/1.1\r\nHost: h\r\n\r\n");
  ASSERT_EQ(p.status, ParseStatus::kDone);
  EXPECT_EQ(p.consumed, first.size());
  EXPECT_EQ(p.head.target, "/a");
}

TEST(HttpRequestHead, SkipsLeadingEmptyLines) {
  Parsed p = ParseRequest("\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n");
  ASSERT_EQ(p.status, ParseStatus::kDone);
  EXPECT_EQ(p.head.target, "/");
}

TEST(HttpRequestHead, Framing) {
  Parsed cl = ParseRequest("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\n\r\n");
  ASSERT_EQ(cl.status, ParseStatus::kDone);
  EXPECT_EQ(cl.head.framing, BodyFraming::kLength);
  EXPECT_EQ(cl.head.content_length, 12u);
  Parsed zero = ParseRequest("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(zero.head.framing, BodyFraming::kNone);
  Parsed chunked = ParseRequest("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n");
  ASSERT_EQ(chunked.status, ParseStatus::kDone);
  EXPECT_EQ(chunked.head.framing, BodyFraming::kChunked);
}

TEST(HttpRequestHead, ConnectionExpectAndUpgrade) {
  Parsed p = ParseRequest(
      "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade, X-Secret\r\nUpgrade: websocket\r\n"
      "Expect: 100-continue\r\nX-Secret: s\r\n\r\n");
  ASSERT_EQ(p.status, ParseStatus::kDone);
  EXPECT_TRUE(p.head.websocket_upgrade);
  EXPECT_TRUE(p.head.expect_continue);
  EXPECT_TRUE(p.head.keep_alive);
  EXPECT_THAT(p.head.connection_tokens, ElementsAre("keep-alive", "upgrade", "x-secret"));
  EXPECT_TRUE(IsHopByHop("x-secret", p.head.connection_tokens));
  EXPECT_TRUE(IsHopByHop("upgrade", p.head.connection_tokens));
  EXPECT_FALSE(IsHopByHop("x-other", p.head.connection_tokens));
  Parsed close = ParseRequest("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
  EXPECT_FALSE(close.head.keep_alive);
}

TEST(HttpRequestHead, ConnectionCannotHideHostOrContentLength) {
  EXPECT_FALSE(IsHopByHop("host", {"host"}));
  EXPECT_FALSE(IsHopByHop("content-length", {"content-length"}));
}

TEST(HttpRequestHead, AbsoluteFormBecomesOriginForm) {
  Parsed p = ParseRequest("GET http://Reviews:9080/a/b?q HTTP/1.1\r\nHost: other\r\n\r\n");
  ASSERT_EQ(p.status, ParseStatus::kDone);
  EXPECT_EQ(p.head.host, "Reviews:9080");
  EXPECT_EQ(p.head.target, "/a/b?q");
  Parsed bare = ParseRequest("GET http://reviews HTTP/1.1\r\nHost: reviews\r\n\r\n");
  EXPECT_EQ(bare.head.target, "/");
  EXPECT_EQ(RefusalStatus("GET http://user@reviews/ HTTP/1.1\r\nHost: reviews\r\n\r\n"), 400);
}

TEST(HttpRequestHead, AsteriskOnlyForOptions) {
  EXPECT_EQ(ParseRequest("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n").status, ParseStatus::kDone);
  EXPECT_EQ(RefusalStatus("GET * HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
}

// The malformed corpus: what each refusal answers.
struct Refusal {
  const char* name;
  std::string request;
  int status;
};

class HttpRefusals : public ::testing::TestWithParam<Refusal> {};

TEST_P(HttpRefusals, AnswersTheRightStatus) {
  EXPECT_EQ(RefusalStatus(GetParam().request), GetParam().status) << GetParam().request;
}

const std::string kHost = "Host: h\r\n";

INSTANTIATE_TEST_SUITE_P(
    Smuggling, HttpRefusals,
    ::testing::Values(
        Refusal{"ClAndTe", "POST / HTTP/1.1\r\n" + kHost + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
                400},
        Refusal{"TeAndCl", "POST / HTTP/1.1\r\n" + kHost + "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
                400},
        Refusal{"DuplicateClDifferent",
                "POST / HTTP/1.1\r\n" + kHost + "Content-Length: 4\r\nContent-Length: 5\r\n\r\n", 400},
        Refusal{"DuplicateClEqual", "POST / HTTP/1.1\r\n" + kHost + "Content-Length: 4\r\nContent-Length: 4\r\n\r\n",
                400},
        Refusal{"ClList", "POST / HTTP/1.1\r\n" + kHost + "Content-Length: 4, 4\r\n\r\n", 400},
        Refusal{"ClSign", "POST / HTTP/1.1\r\n" + kHost + "Content-Length: +4\r\n\r\n", 400},
        Refusal{"ClHex", "POST / HTTP/1.1\r\n" + kHost + "Content-Length: 0x4\r\n\r\n", 400},
        Refusal{"ClOverflow", "POST / HTTP/1.1\r\n" + kHost + "Content-Length: 99999999999999999999\r\n\r\n", 400},
        Refusal{"TeNotLast", "POST / HTTP/1.1\r\n" + kHost + "Transfer-Encoding: chunked, gzip\r\n\r\n", 400},
        Refusal{"TeTwice",
                "POST / HTTP/1.1\r\n" + kHost + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                400},
        Refusal{"TeGzipChunked", "POST / HTTP/1.1\r\n" + kHost + "Transfer-Encoding: gzip, chunked\r\n\r\n", 501},
        Refusal{"TeIdentity", "POST / HTTP/1.1\r\n" + kHost + "Transfer-Encoding: identity\r\n\r\n", 501},
        Refusal{"TeEmptyElement", "POST / HTTP/1.1\r\n" + kHost + "Transfer-Encoding: ,chunked\r\n\r\n", 400},
        Refusal{"TeSpaceBeforeColon", "POST / HTTP/1.1\r\n" + kHost + "Transfer-Encoding : chunked\r\n\r\n", 400},
        Refusal{"TeObsFold", "POST / HTTP/1.1\r\n" + kHost + "Transfer-Encoding:\r\n chunked\r\n\r\n", 400},
        Refusal{"ObsFold", "GET / HTTP/1.1\r\n" + kHost + "X-A: a\r\n\tb\r\n\r\n", 400},
        Refusal{"BareLfHeader", "GET / HTTP/1.1\r\n" + kHost + "X-A: a\n\r\n", 400},
        Refusal{"BareLfRequestLine", "GET / HTTP/1.1\nHost: h\r\n\r\n", 400},
        Refusal{"BareLfOnly", "GET / HTTP/1.1\nHost: h\n\n", 400},
        Refusal{"BareCr", "GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n", 400},
        Refusal{"NulInValue", std::string("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\0b\r\n\r\n", 37), 400},
        Refusal{"ControlInValue",
                "GET / HTTP/1.1\r\n" + kHost +
                    "X-A: a\x01"
                    "b\r\n\r\n",
                400},
        Refusal{"EmptyName", "GET / HTTP/1.1\r\n" + kHost + ": v\r\n\r\n", 400},
        Refusal{"NoColon", "GET / HTTP/1.1\r\n" + kHost + "X-A\r\n\r\n", 400},
        Refusal{"MissingHost", "GET / HTTP/1.1\r\n\r\n", 400},
        Refusal{"TwoHosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
        Refusal{"HostWithSlash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400},
        Refusal{"HostWithSpace", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
        Refusal{"Http10", "GET / HTTP/1.0\r\n\r\n", 426}, Refusal{"Http2Line", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505},
        Refusal{"Http09", "GET /\r\n\r\n", 400},
        Refusal{"LowercaseVersion", "GET / http/1.1\r\n" + kHost + "\r\n", 400},
        Refusal{"TwoSpaces", "GET  / HTTP/1.1\r\n" + kHost + "\r\n", 400},
        Refusal{"TrailingSpace", "GET / HTTP/1.1 \r\n" + kHost + "\r\n", 400},
        Refusal{"SpaceInTarget", "GET /a b HTTP/1.1\r\n" + kHost + "\r\n", 400},
        Refusal{"FragmentInTarget", "GET /a#b HTTP/1.1\r\n" + kHost + "\r\n", 400},
        Refusal{"RelativeTarget", "GET a HTTP/1.1\r\n" + kHost + "\r\n", 400},
        Refusal{"BadMethod", "G(T / HTTP/1.1\r\n" + kHost + "\r\n", 400},
        Refusal{"Connect", "CONNECT h:443 HTTP/1.1\r\n" + kHost + "\r\n", 405},
        Refusal{"ExpectOther", "GET / HTTP/1.1\r\n" + kHost + "Expect: 200-ok\r\n\r\n", 417}),
    [](const ::testing::TestParamInfo<Refusal>& i) { return i.param.name; });

TEST(HttpRequestHead, OversizedHeadIs431) {
  HttpLimits limits;
  limits.max_head_bytes = 1024;
  const std::string big = "GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + std::string(2000, 'a') + "\r\n\r\n";
  EXPECT_EQ(RefusalStatus(big, limits), 431);
  // Without the end in sight, the limit alone decides.
  EXPECT_EQ(RefusalStatus("GET / HTTP/1.1\r\nX: " + std::string(1100, 'a'), limits), 431);
  const std::string long_target = "GET /" + std::string(2000, 'a') + " HTTP/1.1\r\nHost: h\r\n\r\n";
  EXPECT_EQ(RefusalStatus(long_target, limits), 431);
}

TEST(HttpRequestHead, TooManyHeadersIs431) {
  std::string req = "GET / HTTP/1.1\r\nHost: h\r\n";
  for (int i = 0; i < 101; ++i) req += "X-" + std::to_string(i) + ": v\r\n";
  EXPECT_EQ(RefusalStatus(req + "\r\n"), 431);
}

TEST(HttpRequestHead, BodyLimitIs413) {
  HttpLimits limits;
  limits.max_body_bytes = 10;
  EXPECT_EQ(RefusalStatus("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n", limits), 413);
  EXPECT_EQ(RefusalStatus("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n", limits), 0);
}

// ---- responses ----

TEST(HttpResponseHead, FramingRules) {
  ResponseHeadParser parser(HttpLimits{});
  HttpResponseHead r;
  size_t used = 0;
  HttpError err;
  ASSERT_EQ(parser.Parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "GET", r, used, err), ParseStatus::kDone);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.reason, "OK");
  EXPECT_EQ(r.framing, BodyFraming::kLength);
  EXPECT_EQ(r.content_length, 5u);
  parser.Reset();
  ASSERT_EQ(parser.Parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "HEAD", r, used, err), ParseStatus::kDone);
  EXPECT_EQ(r.framing, BodyFraming::kNone);
  parser.Reset();
  ASSERT_EQ(parser.Parse("HTTP/1.1 204 No Content\r\n\r\n", "GET", r, used, err), ParseStatus::kDone);
  EXPECT_EQ(r.framing, BodyFraming::kNone);
  parser.Reset();
  ASSERT_EQ(parser.Parse("HTTP/1.1 200 OK\r\n\r\n", "GET", r, used, err), ParseStatus::kDone);
  EXPECT_EQ(r.framing, BodyFraming::kUntilClose);
  EXPECT_FALSE(r.keep_alive);
  parser.Reset();
  ASSERT_EQ(
      parser.Parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", "GET", r, used, err),
      ParseStatus::kDone);
  EXPECT_EQ(r.framing, BodyFraming::kChunked);  // Transfer-Encoding wins (RFC 9112 6.3)
  parser.Reset();
  ASSERT_EQ(parser.Parse("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", "GET", r, used, err), ParseStatus::kDone);
  EXPECT_FALSE(r.keep_alive);
  parser.Reset();
  ASSERT_EQ(parser.Parse("HTTP/1.1 100 Continue\r\n\r\n", "POST", r, used, err), ParseStatus::kDone);
  EXPECT_EQ(r.status, 100);
  EXPECT_EQ(r.framing, BodyFraming::kNone);
  parser.Reset();
  EXPECT_EQ(parser.Parse("HTTP/1.1 2000 OK\r\n\r\n", "GET", r, used, err), ParseStatus::kError);
  EXPECT_EQ(err.status, 502);
  parser.Reset();
  EXPECT_EQ(parser.Parse("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "GET", r, used, err),
            ParseStatus::kError);
}

// ---- bodies ----

struct Relayed {
  ParseStatus status;
  std::string out;
  size_t consumed = 0;
  HttpError error;
};

// Feeds `in` in pieces of `step` bytes; stops at kDone or kError.
Relayed Relay(BodyFraming framing, uint64_t length, const std::string& in, size_t step, HttpLimits limits = {}) {
  BodyRelay relay(framing, length, framing == BodyFraming::kChunked, limits);
  Relayed r{ParseStatus::kNeedMore, "", 0, {}};
  size_t pos = 0;
  while (pos < in.size()) {
    size_t used = 0;
    r.status = relay.Feed(absl::string_view(in).substr(pos, std::min(step, in.size() - pos)), used, r.out, r.error);
    pos += used;
    r.consumed = pos;
    if (r.status != ParseStatus::kNeedMore) return r;
  }
  return r;
}

TEST(BodyRelay, ContentLengthIsCopiedAndStopsAtTheEnd) {
  for (size_t step : {1, 3, 100}) {
    Relayed r = Relay(BodyFraming::kLength, 5, "helloGET /next", step);
    EXPECT_EQ(r.status, ParseStatus::kDone);
    EXPECT_EQ(r.out, "hello");
    EXPECT_EQ(r.consumed, 5u);
  }
}

TEST(BodyRelay, ChunkedIsReframedCanonically) {
  const std::string in = "5;ext=1\r\nhello\r\n0006\r\n world\r\n0\r\nTrailer: x\r\n\r\nGET /next";
  for (size_t step : {1, 2, 7, 1000}) {
    Relayed r = Relay(BodyFraming::kChunked, 0, in, step);
    ASSERT_EQ(r.status, ParseStatus::kDone) << step << " " << r.error.message;
    EXPECT_EQ(r.consumed, in.size() - std::string("GET /next").size());
    // Decode what we produced: it must be exactly "hello world" in valid chunks.
    Relayed again = Relay(BodyFraming::kChunked, 0, r.out, 1000);
    ASSERT_EQ(again.status, ParseStatus::kDone) << r.out;
    EXPECT_EQ(again.consumed, r.out.size());
    EXPECT_THAT(r.out, ::testing::Not(HasSubstr("ext")));
    EXPECT_THAT(r.out, ::testing::Not(HasSubstr("Trailer")));
  }
  Relayed whole = Relay(BodyFraming::kChunked, 0, in, 1000);
  EXPECT_EQ(whole.out, "b\r\nhello world\r\n0\r\n\r\n");
}

TEST(BodyRelay, BadChunking) {
  const std::vector<std::string> bad = {
      "x\r\n",                         // not hex
      "\r\n",                          // empty size
      "5 \r\nhello\r\n0\r\n\r\n",      // whitespace after the size
      " 5\r\nhello\r\n0\r\n\r\n",      // whitespace before the size
      "5\nhello\r\n0\r\n\r\n",         // bare LF after the size
      "5\r\nhelloX\r\n0\r\n\r\n",      // data longer than the size
      "5\r\nhello\n0\r\n\r\n",         // bare LF after the data
      "10000000000000000\r\n",         // 17 hex digits
      "-1\r\n",                        // negative
      "0x5\r\nhello\r\n0\r\n\r\n",     // 0x prefix
      "5;\x01\r\nhello\r\n0\r\n\r\n",  // control character in an extension
      "0\r\nX: a\nY: b\r\n\r\n",       // bare LF in the trailer
      "0\r\n folded\r\n\r\n",          // obs-fold in the trailer
  };
  for (const auto& b : bad) {
    Relayed r = Relay(BodyFraming::kChunked, 0, b, 1);
    EXPECT_EQ(r.status, ParseStatus::kError) << b;
    EXPECT_EQ(r.error.status, 400) << b;
  }
}

TEST(BodyRelay, ChunkedBodyLimitIs413BeforeTheDataArrives) {
  HttpLimits limits;
  limits.max_body_bytes = 8;
  Relayed r = Relay(BodyFraming::kChunked, 0, "5\r\nhello\r\n4\r\n", 1, limits);
  EXPECT_EQ(r.status, ParseStatus::kError);
  EXPECT_EQ(r.error.status, 413);
  Relayed huge = Relay(BodyFraming::kChunked, 0, "ffffffffffffffff\r\n", 1, limits);
  EXPECT_EQ(huge.error.status, 413);
  Relayed fits = Relay(BodyFraming::kChunked, 0, "5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n", 1, limits);
  EXPECT_EQ(fits.status, ParseStatus::kDone);
}

TEST(BodyRelay, UntilCloseIsChunkedForTheNextHop) {
  BodyRelay relay(BodyFraming::kUntilClose, 0, true, HttpLimits{});
  std::string out;
  size_t used = 0;
  HttpError err;
  EXPECT_EQ(relay.Feed("abc", used, out, err), ParseStatus::kNeedMore);
  EXPECT_EQ(used, 3u);
  relay.FinishAtClose(out);
  EXPECT_EQ(out, "3\r\nabc\r\n0\r\n\r\n");
  EXPECT_TRUE(relay.done());
}

TEST(LocalReply, EnvoyStyle) {
  std::string r = LocalReply(403, "RBAC: access denied", false);
  EXPECT_THAT(r, ::testing::StartsWith("HTTP/1.1 403 Forbidden\r\ncontent-length: 19\r\n"));
  EXPECT_THAT(r, ::testing::EndsWith("\r\n\r\nRBAC: access denied"));
  EXPECT_THAT(r, ::testing::Not(HasSubstr("connection: close")));
  EXPECT_THAT(LocalReply(400, "x", true), HasSubstr("connection: close\r\n"));
}

}  // namespace
}  // namespace meshid::http
