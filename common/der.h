// A strict DER (X.690) reader and the small writer helpers the CA uses to build certificates.
// Going through DER directly, instead of OpenSSL's X509 objects, keeps OpenSSL 3's decoder and
// encoder machinery (which costs several times the signature itself) off the signing path.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace meshid::der {

// Universal and context-specific tags used here.
inline constexpr uint8_t kBoolean = 0x01;
inline constexpr uint8_t kInteger = 0x02;
inline constexpr uint8_t kBitString = 0x03;
inline constexpr uint8_t kOctetString = 0x04;
inline constexpr uint8_t kNull = 0x05;
inline constexpr uint8_t kOid = 0x06;
inline constexpr uint8_t kUtcTime = 0x17;
inline constexpr uint8_t kGeneralizedTime = 0x18;
inline constexpr uint8_t kSequence = 0x30;
inline constexpr uint8_t kSet = 0x31;
inline constexpr uint8_t ContextConstructed(int n) { return static_cast<uint8_t>(0xa0 | n); }
inline constexpr uint8_t ContextPrimitive(int n) { return static_cast<uint8_t>(0x80 | n); }

struct Element {
  uint8_t tag = 0;
  absl::string_view value;  // contents
  absl::string_view whole;  // tag, length and contents
};

// Reads consecutive elements from a buffer. Rejects high tag numbers, indefinite and
// non-minimal lengths, and lengths beyond the buffer.
class Reader {
 public:
  explicit Reader(absl::string_view data) : data_(data) {}
  bool empty() const { return data_.empty(); }
  bool PeekTag(uint8_t tag) const { return !data_.empty() && static_cast<uint8_t>(data_[0]) == tag; }
  absl::StatusOr<Element> Next();
  // Next() and a tag check; `what` names the field in the error.
  absl::StatusOr<Element> Expect(uint8_t tag, absl::string_view what);

 private:
  absl::string_view data_;
};

// Content of a BIT STRING with no unused bits.
absl::StatusOr<absl::string_view> BitStringBytes(const Element& e);
// A non-negative INTEGER's magnitude without leading zero bytes.
absl::StatusOr<absl::string_view> UnsignedInteger(const Element& e);

std::string Tlv(uint8_t tag, absl::string_view content);
void AppendTlv(std::string* out, uint8_t tag, absl::string_view content);
// INTEGER from an unsigned big-endian magnitude (adds the 0x00 sign byte when needed).
std::string UnsignedIntegerTlv(absl::string_view magnitude);
// RFC 5280 time: UTCTime through 2049, GeneralizedTime from 2050. Whole seconds, UTC.
std::string TimeTlv(absl::Time t);
// Appends the same encoding as TimeTlv (UTCTime for 1950-2049, GeneralizedTime otherwise, as
// OpenSSL's ASN1_TIME_set chooses) without going through absl::FormatTime, which is most of the
// cost of a CRL entry. False, and nothing appended, for a time outside the years 0000-9999 that
// neither form can hold (an infinite time among them).
bool AppendTimeTlv(std::string* out, absl::Time t);

}  // namespace meshid::der
