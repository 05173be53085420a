#include "common/backoff.h"

#include <algorithm>
#include <limits>

namespace meshid {

Backoff::Backoff(absl::Duration initial, absl::Duration max, RandomSource& random)
    : initial_(initial), max_(std::max(initial, max)), random_(random) {}

absl::Duration Backoff::Next() {
  if (failures_ < std::numeric_limits<int>::max()) ++failures_;
  return Delay(failures_);
}

absl::Duration Backoff::Delay(int failures) const {
  absl::Duration base = initial_;
  for (int i = 1; i < failures && base < max_; ++i) base *= 2;
  base = std::min(base, max_);
  return std::min(base * (0.5 + random_.Uniform()), max_);
}

}  // namespace meshid
