// The one retry backoff: exponential from `initial`, capped at `max`, spread over [0.5, 1.5)
// of the base ("equal jitter"), with a random source the test scripts.
#include "common/backoff.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

namespace meshid {
namespace {

// Uniform() returns the queued values in turn, then 0.5 (a factor of exactly 1.0) forever.
class ScriptedUniform final : public RandomSource {
 public:
  explicit ScriptedUniform(std::vector<double> uniforms = {}) : uniforms_(std::move(uniforms)) {}
  void Fill(uint8_t* out, size_t n) override {
    const double u = next_ < uniforms_.size() ? uniforms_[next_++] : 0.5;
    // Uniform() = (Uint64() >> 11) * 2^-53: put u * 2^53 into the top 53 bits.
    const uint64_t v = static_cast<uint64_t>(u * 9007199254740992.0) << 11;
    std::memset(out, 0, n);
    std::memcpy(out, &v, std::min(n, sizeof(v)));
  }

 private:
  std::vector<double> uniforms_;
  size_t next_ = 0;
};

const absl::Duration kInitial = absl::Milliseconds(500);
const absl::Duration kMax = absl::Seconds(60);

TEST(BackoffTest, DelayIsExponentialWithJitterAndCapped) {
  ScriptedUniform mid;  // 0.5 → factor 1.0
  Backoff backoff(kInitial, kMax, mid);
  EXPECT_EQ(backoff.Delay(1), absl::Milliseconds(500));
  EXPECT_EQ(backoff.Delay(2), absl::Seconds(1));
  EXPECT_EQ(backoff.Delay(5), absl::Seconds(8));
  EXPECT_EQ(backoff.Delay(8), absl::Seconds(60));
  EXPECT_EQ(backoff.Delay(1000), absl::Seconds(60));
  ScriptedUniform low({0.0}), high({0.999999});
  EXPECT_EQ(Backoff(kInitial, kMax, low).Delay(3), absl::Seconds(1));
  EXPECT_NEAR(absl::ToDoubleSeconds(Backoff(kInitial, kMax, high).Delay(3)), 3.0, 0.001);
}

TEST(BackoffTest, NextCountsFailuresAndResetStartsOver) {
  ScriptedUniform mid;
  Backoff backoff(kInitial, kMax, mid);
  EXPECT_EQ(backoff.Next(), absl::Milliseconds(500));
  EXPECT_EQ(backoff.Next(), absl::Seconds(1));
  EXPECT_EQ(backoff.Next(), absl::Seconds(2));
  backoff.Reset();
  EXPECT_EQ(backoff.Next(), absl::Milliseconds(500));
  for (int i = 0; i < 100; ++i) backoff.Next();
  EXPECT_EQ(backoff.Next(), kMax) << "stays at the cap however long the failures last";
}

TEST(BackoffTest, JitterNeverExceedsTheCap) {
  ScriptedUniform high({0.999999, 0.999999, 0.0});
  Backoff backoff(absl::Seconds(1), absl::Milliseconds(2500), high);
  EXPECT_NEAR(absl::ToDoubleSeconds(backoff.Next()), 1.5, 0.001);
  EXPECT_EQ(backoff.Next(), absl::Milliseconds(2500)) << "2 s * 1.5 is capped at 2.5 s";
  EXPECT_EQ(backoff.Next(), absl::Milliseconds(1250)) << "2.5 s (the capped base) * 0.5";
}

TEST(BackoffTest, AMaxBelowInitialIsRaisedToInitial) {
  ScriptedUniform mid;
  Backoff backoff(absl::Seconds(2), absl::Seconds(1), mid);
  EXPECT_EQ(backoff.Next(), absl::Seconds(2));
  EXPECT_EQ(backoff.Next(), absl::Seconds(2));
}

}  // namespace
}  // namespace meshid
