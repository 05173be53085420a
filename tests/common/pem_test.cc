#include "common/pem.h"

#include <gtest/gtest.h>

namespace meshid {
namespace {

TEST(Pem, ParsesBlocksAndRoundTrips) {
  std::string pem = EncodePem("CERTIFICATE REQUEST", "hello") + EncodePem("X", std::string(100, 'a'));
  auto blocks = ParsePemBlocks(pem);
  ASSERT_TRUE(blocks.ok()) << blocks.status();
  ASSERT_EQ(blocks->size(), 2u);
  EXPECT_EQ((*blocks)[0].type, "CERTIFICATE REQUEST");
  EXPECT_EQ((*blocks)[0].der, "hello");
  EXPECT_EQ((*blocks)[1].der, std::string(100, 'a'));
}

TEST(Pem, AcceptsCrLfAndSurroundingWhitespace) {
  auto blocks = ParsePemBlocks("\r\n  \n-----BEGIN A-----\r\naGVsbG8=\r\n-----END A-----\r\n\n");
  ASSERT_TRUE(blocks.ok()) << blocks.status();
  EXPECT_EQ((*blocks)[0].der, "hello");
}

struct BadPem {
  const char* name;
  std::string text;
  const char* message;
};

TEST(Pem, RejectsMalformedInputWithReason) {
  const BadPem cases[] = {
      {"empty", "", "no BEGIN/END block"},
      {"garbage", "hello world", "unexpected text outside"},
      {"no end", "-----BEGIN A-----\naGVsbG8=\n", "has no END line"},
      {"mismatched", "-----BEGIN A-----\naGVsbG8=\n-----END B-----\n", "closed by END"},
      {"bad base64", "-----BEGIN A-----\naGVsbG8\n-----END A-----\n", "base64"},
      {"headers", "-----BEGIN A-----\nProc-Type: 4,ENCRYPTED\n\naGVsbG8=\n-----END A-----\n", "headers"},
      {"empty body", "-----BEGIN A-----\n-----END A-----\n", "is empty"},
      {"trailing text", "-----BEGIN A-----\naGVsbG8=\n-----END A-----\nextra", "unexpected text outside"},
      {"bad label", "-----BEGIN A-B\x01-----\naGVsbG8=\n-----END A-B\x01-----\n", "malformed label"},
      {"too big", std::string(2 << 20, 'a'), "more than the limit"},
  };
  for (const auto& c : cases) {
    auto blocks = ParsePemBlocks(c.text);
    ASSERT_FALSE(blocks.ok()) << c.name;
    EXPECT_NE(std::string(blocks.status().message()).find(c.message), std::string::npos)
        << c.name << ": " << blocks.status();
  }
}

TEST(Pem, ExplanatoryTextAllowedOnlyWhenAsked) {
  std::string text = "Certificate:\n  Data: ...\n" + EncodePem("CERTIFICATE", "x");
  EXPECT_FALSE(ParsePemBlocks(text).ok());
  PemParseOptions options;
  options.allow_text_outside_blocks = true;
  EXPECT_TRUE(ParsePemBlocks(text, options).ok());
}

TEST(Pem, LimitsBlockCount) {
  std::string text;
  for (int i = 0; i < 5; ++i) text += EncodePem("A", "x");
  PemParseOptions options;
  options.max_blocks = 4;
  EXPECT_FALSE(ParsePemBlocks(text, options).ok());
}

}  // namespace
}  // namespace meshid
