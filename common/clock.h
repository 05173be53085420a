// Time source passed into every component that needs "now", so tests can control time.
#pragma once

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace meshid {

class Clock {
 public:
  virtual ~Clock() = default;
  // Current wall-clock time. Thread-safe.
  virtual absl::Time Now() const = 0;
};

// The real wall clock.
class SystemClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
  // A process-wide instance; it has no state, so sharing it is safe. Only the composition
  // roots (daemons/, cli/) and tests name it; everything else receives a `const Clock&`.
  static const Clock& Instance() {
    static const SystemClock clock;
    return clock;
  }
};

}  // namespace meshid
