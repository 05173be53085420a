#include "common/base64.h"

#include <gtest/gtest.h>

namespace meshid {
namespace {

TEST(Base64, RoundTripsEveryLengthModuloThree) {
  for (std::string s : {"", "f", "fo", "foo", "foob", "fooba", "foobar"}) {
    EXPECT_EQ(*Base64Decode(Base64Encode(s)), s);
    EXPECT_EQ(*Base64UrlDecode(Base64UrlEncode(s)), s);
  }
  EXPECT_EQ(Base64Encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(Base64Encode("fo"), "Zm8=");
  EXPECT_EQ(Base64UrlEncode("\xfb\xff"), "-_8");
}

TEST(Base64, RejectsMalformedInput) {
  EXPECT_FALSE(Base64Decode("Zm8").ok());       // missing padding
  EXPECT_FALSE(Base64Decode("Zm9=").ok());      // non-canonical trailing bits
  EXPECT_FALSE(Base64Decode("Z!8=").ok());      // bad character
  EXPECT_FALSE(Base64Decode("Zm==Zm8=").ok());  // padding in the middle
  EXPECT_FALSE(Base64UrlDecode("Zm8=").ok());   // padding not allowed in base64url
  EXPECT_FALSE(Base64UrlDecode("Z").ok());      // impossible length
  EXPECT_FALSE(Base64UrlDecode("+/8").ok());    // standard alphabet in base64url
}

}  // namespace
}  // namespace meshid
