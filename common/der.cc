#include "common/der.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace meshid::der {

absl::StatusOr<Element> Reader::Next() {
  if (data_.size() < 2) return absl::InvalidArgumentError("DER: truncated element");
  Element e;
  e.tag = static_cast<uint8_t>(data_[0]);
  if ((e.tag & 0x1f) == 0x1f) return absl::InvalidArgumentError("DER: high tag numbers are not supported");
  size_t pos = 2;
  size_t length = static_cast<uint8_t>(data_[1]);
  if (length & 0x80) {
    size_t bytes = length & 0x7f;
    if (bytes == 0) return absl::InvalidArgumentError("DER: indefinite length");
    if (bytes > 4 || data_.size() < 2 + bytes) return absl::InvalidArgumentError("DER: bad length");
    length = 0;
    for (size_t i = 0; i < bytes; ++i) length = (length << 8) | static_cast<uint8_t>(data_[2 + i]);
    if (static_cast<uint8_t>(data_[2]) == 0 || length < 0x80)
      return absl::InvalidArgumentError("DER: non-minimal length");
    pos += bytes;
  }
  if (length > data_.size() - pos) return absl::InvalidArgumentError("DER: length beyond the data");
  e.value = data_.substr(pos, length);
  e.whole = data_.substr(0, pos + length);
  data_.remove_prefix(pos + length);
  return e;
}

absl::StatusOr<Element> Reader::Expect(uint8_t tag, absl::string_view what) {
  auto e = Next();
  if (!e.ok()) return absl::InvalidArgumentError(absl::StrCat(what, ": ", e.status().message()));
  if (e->tag != tag) return absl::InvalidArgumentError(absl::StrCat(what, ": unexpected DER tag"));
  return e;
}

absl::StatusOr<absl::string_view> BitStringBytes(const Element& e) {
  if (e.tag != kBitString || e.value.empty() || e.value[0] != 0) {
    return absl::InvalidArgumentError("DER: expected a BIT STRING with no unused bits");
  }
  return e.value.substr(1);
}

absl::StatusOr<absl::string_view> UnsignedInteger(const Element& e) {
  if (e.tag != kInteger || e.value.empty()) return absl::InvalidArgumentError("DER: expected an INTEGER");
  absl::string_view v = e.value;
  if (static_cast<uint8_t>(v[0]) & 0x80) return absl::InvalidArgumentError("DER: negative INTEGER");
  if (v.size() > 1 && v[0] == 0 && !(static_cast<uint8_t>(v[1]) & 0x80)) {
    return absl::InvalidArgumentError("DER: non-minimal INTEGER");
  }
  while (v.size() > 1 && v[0] == 0) v.remove_prefix(1);
  return v;
}

void AppendTlv(std::string* out, uint8_t tag, absl::string_view content) {
  out->push_back(static_cast<char>(tag));
  size_t n = content.size();
  if (n < 0x80) {
    out->push_back(static_cast<char>(n));
  } else {
    char len[4];
    int bytes = 0;
    for (size_t v = n; v > 0; v >>= 8) len[bytes++] = static_cast<char>(v & 0xff);
    out->push_back(static_cast<char>(0x80 | bytes));
    for (int i = bytes - 1; i >= 0; --i) out->push_back(len[i]);
  }
  out->append(content.data(), content.size());
}

std::string Tlv(uint8_t tag, absl::string_view content) {
  std::string out;
  out.reserve(content.size() + 6);
  AppendTlv(&out, tag, content);
  return out;
}

std::string UnsignedIntegerTlv(absl::string_view magnitude) {
  while (magnitude.size() > 1 && magnitude[0] == 0) magnitude.remove_prefix(1);
  if (!magnitude.empty() && (static_cast<uint8_t>(magnitude[0]) & 0x80)) {
    return Tlv(kInteger, absl::StrCat(std::string(1, '\0'), magnitude));
  }
  return Tlv(kInteger, magnitude.empty() ? absl::string_view("\0", 1) : magnitude);
}

std::string TimeTlv(absl::Time t) {
  absl::TimeZone utc = absl::UTCTimeZone();
  int year = absl::ToCivilSecond(t, utc).year();
  if (year >= 1950 && year < 2050) return Tlv(kUtcTime, absl::FormatTime("%y%m%d%H%M%SZ", t, utc));
  return Tlv(kGeneralizedTime, absl::FormatTime("%Y%m%d%H%M%SZ", t, utc));
}

}  // namespace meshid::der
