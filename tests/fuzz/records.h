// The input framing the stream fuzzers share: after the first byte (the fuzzer's mode), records
// of [op][length][payload]; a length that runs past the end is cut to what is left.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

namespace meshid::fuzzing {

class FuzzRecords {
 public:
  FuzzRecords(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  // The next record; false when none is left.
  bool Next(uint8_t& op, std::string& payload) {
    if (pos_ + 2 > size_) return false;
    op = data_[pos_];
    const size_t length = std::min<size_t>(data_[pos_ + 1], size_ - pos_ - 2);
    payload.assign(reinterpret_cast<const char*>(data_) + pos_ + 2, length);
    pos_ += 2 + length;
    return true;
  }

 private:
  const uint8_t* const data_;
  const size_t size_;
  size_t pos_ = 1;
};

}  // namespace meshid::fuzzing
