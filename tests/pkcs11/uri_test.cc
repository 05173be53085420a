// RFC 7512 URIs as --ca-key takes them: every attribute that selects a token or a key, percent
// escapes, and each malformed or refused form named in the error.
#include "pkcs11/uri.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/status_matchers.h"

namespace meshid::pkcs11 {
namespace {

using ::meshid::testing::StatusIs;
using ::testing::HasSubstr;

TEST(UriTest, ReadsPathAndQueryAttributes) {
  auto uri = ParseUri(
      "pkcs11:token=meshid%20CA;manufacturer=SoftHSM%20project;model=SoftHSM%20v2;serial=3c44f66a3ab7952c;"
      "slot-description=SoftHSM%20slot;slot-manufacturer=SoftHSM;slot-id=18161599;object=ca;id=%01%a2;type=private"
      "?pin-source=file:/run/secrets/pin&module-path=/usr/lib/softhsm/libsofthsm2.so");
  ASSERT_TRUE(uri.ok()) << uri.status();
  EXPECT_EQ(uri->token, "meshid CA");
  EXPECT_EQ(uri->manufacturer, "SoftHSM project");
  EXPECT_EQ(uri->model, "SoftHSM v2");
  EXPECT_EQ(uri->serial, "3c44f66a3ab7952c");
  EXPECT_EQ(uri->slot_description, "SoftHSM slot");
  EXPECT_EQ(uri->slot_manufacturer, "SoftHSM");
  EXPECT_EQ(uri->slot_id, 18161599u);
  EXPECT_EQ(uri->object, "ca");
  EXPECT_EQ(uri->id, std::string("\x01\xa2", 2));
  EXPECT_EQ(uri->type, "private");
  EXPECT_EQ(uri->pin_source, "/run/secrets/pin");
  EXPECT_EQ(uri->module_path, "/usr/lib/softhsm/libsofthsm2.so");
}

TEST(UriTest, SchemeIsCaseInsensitiveAndAttributesMayBeAbsent) {
  auto uri = ParseUri("PKCS11:object=ca");
  ASSERT_TRUE(uri.ok()) << uri.status();
  EXPECT_EQ(uri->object, "ca");
  EXPECT_TRUE(uri->token.empty());
  EXPECT_FALSE(uri->id.has_value());
  EXPECT_FALSE(uri->slot_id.has_value());
  ASSERT_TRUE(ParseUri("pkcs11:").ok());
}

TEST(UriTest, VendorAttributesAreIgnored) {
  auto uri = ParseUri("pkcs11:object=ca;x-vendor=1?x-other=2");
  ASSERT_TRUE(uri.ok()) << uri.status();
  EXPECT_EQ(uri->object, "ca");
}

TEST(UriTest, PinSourceWithoutFilePrefixIsAPath) {
  auto uri = ParseUri("pkcs11:object=ca?pin-source=/etc/pin");
  ASSERT_TRUE(uri.ok()) << uri.status();
  EXPECT_EQ(uri->pin_source, "/etc/pin");
}

TEST(UriTest, ToStringEscapesAndOmitsThePin) {
  auto uri = ParseUri("pkcs11:token=my%20token;object=ca;id=%01?pin-source=/etc/pin");
  ASSERT_TRUE(uri.ok()) << uri.status();
  EXPECT_EQ(uri->ToString(), "pkcs11:token=my%20token;object=ca;id=%01");
  auto again = ParseUri(uri->ToString());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->token, "my token");
  EXPECT_EQ(again->id, std::string("\x01", 1));
}

TEST(UriTest, RefusesMalformedUris) {
  struct Case {
    const char* uri;
    const char* message;
  };
  const Case cases[] = {
      {"token=a", "must start with \"pkcs11:\""},
      {"file:/etc/key.pem", "must start with \"pkcs11:\""},
      {"pkcs11:token=a%2", "token: a '%' is not followed by two hex digits"},
      {"pkcs11:token=a%zz", "token: a '%' is not followed by two hex digits"},
      {"pkcs11:token=a;token=b", "token: given more than once"},
      {"pkcs11:object=", "object: empty value"},
      {"pkcs11:object", "object: not a name=value attribute"},
      {"pkcs11:=x", "not a name=value attribute"},
      {"pkcs11:colour=blue", "colour: unknown path attribute"},
      {"pkcs11:object=ca?colour=blue", "colour: unknown query attribute"},
      {"pkcs11:slot-id=abc", "slot-id: \"abc\" is not a decimal number"},
      {"pkcs11:slot-id=-1", "slot-id: \"-1\" is not a decimal number"},
      {"pkcs11:slot-id=99999999999999999999999", "is not a decimal number"},
      {"pkcs11:type=key", "type: \"key\" is not one of"},
      {"pkcs11:library-version=1", "library-version: not supported"},
      {"pkcs11:object=ca?module-name=softhsm2", "module-name: not supported"},
      {"pkcs11:object=ca?pin-source=file:", "pin-source: empty file name"},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(ParseUri(c.uri), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message))) << c.uri;
  }
}

TEST(UriTest, RefusesAPinInTheUri) {
  EXPECT_THAT(ParseUri("pkcs11:object=ca?pin-value=1234"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("pin-value: a PIN in the URI is visible in the process list")));
}

}  // namespace
}  // namespace meshid::pkcs11
