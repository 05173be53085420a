// SigningLimiter with a fake clock: buckets refill with time only, callers are apart, slots
// come back however a signing ends, and the buckets kept stay bounded.
#include "ca/signing_limiter.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/support/fake_clock.h"
#include "tests/support/status_matchers.h"

namespace meshid {
namespace {

using testing::FakeClock;
using ::testing::HasSubstr;
using testing::StatusIs;

constexpr char kAlice[] = "spiffe://cluster.local/ns/default/sa/alice";
constexpr char kBob[] = "spiffe://cluster.local/ns/default/sa/bob";

class SigningLimiterTest : public ::testing::Test {
 protected:
  SigningLimits Limits(double rate, double burst, int concurrent = 0) {
    SigningLimits limits;
    limits.rate_per_caller = rate;
    limits.burst_per_caller = burst;
    limits.max_concurrent = concurrent;
    return limits;
  }
  // How many signings `caller` is admitted in a row now (permits released at once).
  int AdmittedInARow(SigningLimiter& limiter, const std::string& caller, int at_most = 1000) {
    int n = 0;
    while (n < at_most && limiter.Admit(caller).ok()) ++n;
    return n;
  }
  double Refused(const std::string& reason) {
    return metrics_.AddCounter("meshid_ca_rate_limited_total", "", {{"reason", reason}}).value();
  }

  FakeClock clock_;
  MetricsRegistry metrics_;
};

TEST_F(SigningLimiterTest, ABurstThenTheRateAndTheRefusalSaysWhenToRetry) {
  SigningLimiter limiter(Limits(10, 5), clock_, metrics_);
  EXPECT_EQ(AdmittedInARow(limiter, kAlice), 5) << "a new caller starts with a full bucket";

  absl::StatusOr<SigningLimiter::Permit> refused = limiter.Admit(kAlice);
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kResourceExhausted,
                                absl::StrCat("signing rate limit: ", kAlice,
                                             " is over its limit of 10 certificates/s (burst 5); retry after 100 ms")));
  EXPECT_EQ(RetryDelayOf(refused.status()), absl::Milliseconds(100));
  EXPECT_EQ(Refused(kRateLimitedCallerRate), 2) << "the one that ended the burst, and this one";

  // Part of a token is not enough, and the hint counts down.
  clock_.Advance(absl::Milliseconds(60));
  refused = limiter.Admit(kAlice);
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("retry after 40 ms")));
  EXPECT_EQ(RetryDelayOf(refused.status()), absl::Milliseconds(40));

  // When the hint says: exactly one more.
  clock_.Advance(absl::Milliseconds(40));
  EXPECT_EQ(AdmittedInARow(limiter, kAlice), 1);
  clock_.Advance(absl::Milliseconds(350));
  EXPECT_EQ(AdmittedInARow(limiter, kAlice), 3) << "3.5 tokens refilled";
  clock_.Advance(absl::Hours(1));
  EXPECT_EQ(AdmittedInARow(limiter, kAlice), 5) << "refill stops at the burst";
  EXPECT_EQ(Refused(kRateLimitedCallerRate), 6);
  EXPECT_EQ(Refused(kRateLimitedConcurrency), 0);
}

TEST_F(SigningLimiterTest, AFractionalRateAndABurstBelowOne) {
  SigningLimiter limiter(Limits(0.5, 0.2), clock_, metrics_);
  EXPECT_EQ(AdmittedInARow(limiter, kAlice), 1) << "a burst below 1 counts as 1";
  absl::StatusOr<SigningLimiter::Permit> refused = limiter.Admit(kAlice);
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("retry after 2000 ms")));
  EXPECT_EQ(RetryDelayOf(refused.status()), absl::Seconds(2));
  clock_.Advance(absl::Seconds(2));
  EXPECT_EQ(AdmittedInARow(limiter, kAlice), 1);
}

TEST_F(SigningLimiterTest, CallersHaveTheirOwnBuckets) {
  SigningLimiter limiter(Limits(1, 3), clock_, metrics_);
  EXPECT_EQ(AdmittedInARow(limiter, kAlice), 3);
  EXPECT_FALSE(limiter.Admit(kAlice).ok());
  EXPECT_EQ(AdmittedInARow(limiter, kBob), 3) << "alice's flood takes nothing from bob";
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(AdmittedInARow(limiter, kAlice), 1);
  EXPECT_EQ(AdmittedInARow(limiter, kBob), 1);
}

TEST_F(SigningLimiterTest, AClockSteppingBackRefillsNothingAndStarvesNoOne) {
  SigningLimiter limiter(Limits(10, 2), clock_, metrics_);
  EXPECT_EQ(AdmittedInARow(limiter, kAlice), 2);
  clock_.Advance(-absl::Hours(1));
  EXPECT_EQ(AdmittedInARow(limiter, kAlice), 0);
  clock_.Advance(absl::Milliseconds(100));
  EXPECT_EQ(AdmittedInARow(limiter, kAlice), 1) << "the refill runs from the new time, not from the old one";
}

TEST_F(SigningLimiterTest, TheConcurrencyCapHoldsASlotPerPermitUntilReleased) {
  SigningLimiter limiter(Limits(0, 0, 2), clock_, metrics_);
  absl::StatusOr<SigningLimiter::Permit> first = limiter.Admit(kAlice);
  absl::StatusOr<SigningLimiter::Permit> second = limiter.Admit(kBob);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(limiter.in_flight(), 2);

  absl::StatusOr<SigningLimiter::Permit> third = limiter.Admit(kBob);
  EXPECT_THAT(third, StatusIs(absl::StatusCode::kResourceExhausted,
                              "signing concurrency limit: the CA is signing its maximum of 2 certificates at once; "
                              "retry after 20 ms"));
  EXPECT_EQ(RetryDelayOf(third.status()), SigningLimiter::kConcurrencyRetryDelay);
  EXPECT_EQ(Refused(kRateLimitedConcurrency), 1);

  first->Release();
  first->Release();  // a second release frees nothing more
  EXPECT_EQ(limiter.in_flight(), 1);
  {
    absl::StatusOr<SigningLimiter::Permit> again = limiter.Admit(kAlice);
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(limiter.in_flight(), 2);
    // Moving a permit moves the slot; it is freed once.
    SigningLimiter::Permit moved = *std::move(again);
    SigningLimiter::Permit assigned;
    assigned = std::move(moved);
    EXPECT_EQ(limiter.in_flight(), 2);
  }  // destroyed without Release: the slot comes back
  EXPECT_EQ(limiter.in_flight(), 1);
  second = absl::ResourceExhaustedError("replaced");  // a permit overwritten is released as well
  EXPECT_EQ(limiter.in_flight(), 0);
}

TEST_F(SigningLimiterTest, ARefusalTakesNeitherATokenNorASlot) {
  SigningLimiter limiter(Limits(1, 2, 1), clock_, metrics_);
  absl::StatusOr<SigningLimiter::Permit> held = limiter.Admit(kAlice);
  ASSERT_TRUE(held.ok());
  EXPECT_THAT(limiter.Admit(kBob), StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("concurrency")));
  EXPECT_THAT(limiter.Admit(kBob), StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("concurrency")));
  held->Release();
  EXPECT_EQ(AdmittedInARow(limiter, kBob), 2) << "bob's refusals for concurrency cost him no tokens";

  // A caller over its rate is refused for its rate and takes no slot.
  held = limiter.Admit(kAlice);
  ASSERT_TRUE(held.ok());
  held->Release();
  EXPECT_THAT(limiter.Admit(kAlice), StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("rate")));
  EXPECT_EQ(limiter.in_flight(), 0);
  EXPECT_EQ(Refused(kRateLimitedCallerRate), 2);  // bob's third in a row, alice's third
  EXPECT_EQ(Refused(kRateLimitedConcurrency), 2);
}

TEST_F(SigningLimiterTest, WithoutLimitsEverythingIsAdmittedAndNothingIsKept) {
  SigningLimiter limiter(SigningLimits{}, clock_, metrics_);
  std::vector<SigningLimiter::Permit> held;
  for (int i = 0; i < 1000; ++i) held.push_back(*limiter.Admit(kAlice));
  EXPECT_EQ(limiter.tracked_callers(), 0u);
  EXPECT_EQ(limiter.in_flight(), 0);

  SigningLimits negative = Limits(-1, -1, -1);
  SigningLimiter lenient(negative, clock_, metrics_);
  EXPECT_EQ(AdmittedInARow(lenient, kAlice), 1000) << "negative limits count as none";
}

TEST_F(SigningLimiterTest, TheBucketsKeptAreBoundedAndFullOnesGoFirst) {
  SigningLimits limits = Limits(1, 2);
  limits.max_tracked_callers = 16;
  SigningLimiter limiter(limits, clock_, metrics_);
  auto caller = [](int i) { return absl::StrCat("spiffe://cluster.local/ns/flood/sa/", i); };

  // A flood of distinct callers, each using its bucket up: never more than the bound.
  for (int i = 0; i < 1000; ++i) {
    ASSERT_EQ(AdmittedInARow(limiter, caller(i)), 2) << i;
    ASSERT_LE(limiter.tracked_callers(), 16u);
  }

  // Alice, busy, beside callers whose buckets have refilled: the full buckets go, hers stays.
  SigningLimiter second(limits, clock_, metrics_);
  for (int i = 0; i < 15; ++i) second.Admit(caller(i)).IgnoreError();
  clock_.Advance(absl::Seconds(1));  // each of them back to 2: full
  EXPECT_EQ(AdmittedInARow(second, kAlice), 2);
  ASSERT_EQ(second.tracked_callers(), 16u);
  EXPECT_TRUE(second.Admit(kBob).ok());
  EXPECT_EQ(second.tracked_callers(), 2u) << "alice's and bob's";
  EXPECT_FALSE(second.Admit(kAlice).ok()) << "alice's empty bucket was kept";

  // When no bucket is full, those nearest to full go, down to 7/8 of the bound.
  SigningLimiter third(limits, clock_, metrics_);
  EXPECT_EQ(AdmittedInARow(third, kAlice), 2);
  for (int i = 0; i < 15; ++i) third.Admit(caller(i)).IgnoreError();  // 1 token left each
  EXPECT_TRUE(third.Admit(kBob).ok());
  EXPECT_EQ(third.tracked_callers(), 14u);
  EXPECT_FALSE(third.Admit(kAlice).ok()) << "alice's empty bucket is the last to go";
}

}  // namespace
}  // namespace meshid
