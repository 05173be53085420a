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

bool AppendTimeTlv(std::string* out, absl::Time t) {
  if (t == absl::InfinitePast() || t == absl::InfiniteFuture()) return false;
  // Civil UTC from Unix seconds by arithmetic (H. Hinnant's civil_from_days): absl's time-zone
  // lookup takes a lock per call, a measurable part of a 100,000-entry CRL.
  const int64_t seconds = absl::ToUnixSeconds(t);  // floor, as ASN1_TIME_set's time_t
  constexpr int64_t kDay = 86400;
  int64_t days = seconds / kDay;
  int64_t second_of_day = seconds % kDay;
  if (second_of_day < 0) {
    second_of_day += kDay;
    --days;
  }
  if (days < -800'000 || days > 3'000'000) return false;  // far outside 0000-9999
  days += 719468;
  const int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  const int64_t day_of_era = days - era * 146097;
  const int64_t year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146096) / 365;
  const int64_t day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
  const int64_t shifted_month = (5 * day_of_year + 2) / 153;  // March = 0
  const int day = static_cast<int>(day_of_year - (153 * shifted_month + 2) / 5 + 1);
  const int month = static_cast<int>(shifted_month < 10 ? shifted_month + 3 : shifted_month - 9);
  const int64_t civil_year = year_of_era + era * 400 + (month <= 2 ? 1 : 0);
  if (civil_year < 0 || civil_year > 9999) return false;
  struct {
    int64_t year() const { return y; }
    int month() const { return mo; }
    int day() const { return d; }
    int hour() const { return static_cast<int>(s / 3600); }
    int minute() const { return static_cast<int>(s / 60 % 60); }
    int second() const { return static_cast<int>(s % 60); }
    int64_t y;
    int mo;
    int d;
    int64_t s;
  } c{civil_year, month, day, second_of_day};
  const bool utc_time = c.year() >= 1950 && c.year() < 2050;
  char text[15];
  size_t n = 0;
  auto two = [&](int v) {
    text[n++] = static_cast<char>('0' + v / 10);
    text[n++] = static_cast<char>('0' + v % 10);
  };
  const int year = static_cast<int>(c.year());
  if (!utc_time) two(year / 100);
  two(year % 100);
  two(c.month());
  two(c.day());
  two(c.hour());
  two(c.minute());
  two(c.second());
  text[n++] = 'Z';
  AppendTlv(out, utc_time ? kUtcTime : kGeneralizedTime, absl::string_view(text, n));
  return true;
}

}  // namespace meshid::der
