// Exponential backoff with jitter, the one retry pacing every meshid component uses: the xDS
// clients' reconnects (xds/client.h) and the secret cache's renewal retries.
//
// The rule ("equal jitter"): the base delay of retry n (n = 1 for the first) is `initial`
// doubled n - 1 times and capped at `max`; the delay is that base times a uniform factor in
// [0.5, 1.5), capped at `max` again. So retries spread out while their average keeps doubling.
//
// Not thread-safe: one owner calls Next()/Reset(). `random` must outlive the backoff.
#pragma once

#include "absl/time/time.h"
#include "common/random.h"

namespace meshid {

class Backoff {
 public:
  // Expects 0 < initial <= max (callers check the flags that give them); a `max` below
  // `initial` is raised to `initial`.
  Backoff(absl::Duration initial, absl::Duration max, RandomSource& random);

  // The delay before the next retry; each call counts one more failure.
  absl::Duration Next();
  // After a success: the next delay starts from `initial` again.
  void Reset() { failures_ = 0; }

  // The delay before retry number `failures` (1 for the first), without counting it: for a
  // caller that keeps its own failure count (the secret cache keeps one per identity).
  absl::Duration Delay(int failures) const;

 private:
  const absl::Duration initial_;
  const absl::Duration max_;
  RandomSource& random_;
  int failures_ = 0;
};

}  // namespace meshid
