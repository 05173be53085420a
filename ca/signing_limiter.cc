#include "ca/signing_limiter.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "google/rpc/error_details.pb.h"

namespace meshid {

namespace {

constexpr char kRateLimitedName[] = "meshid_ca_rate_limited_total";
constexpr char kRateLimitedHelp[] =
    "CreateCertificate requests refused by the signing limits, by reason (nothing was signed).";

// A limit as configured: not-a-number and negative values are no limit.
double NonNegative(double value) { return std::isnan(value) || value < 0 ? 0 : value; }

// ResourceExhausted with "retry after N ms" and the same delay as a RetryInfo payload. The delay
// is rounded up to whole milliseconds, and is at least one.
absl::Status Refusal(absl::string_view what, absl::Duration delay) {
  int64_t ms = std::max<int64_t>(1, absl::ToInt64Milliseconds(absl::Ceil(delay, absl::Milliseconds(1))));
  absl::Status status = absl::ResourceExhaustedError(absl::StrCat(what, "; retry after ", ms, " ms"));
  google::rpc::RetryInfo info;
  info.mutable_retry_delay()->set_seconds(ms / 1000);
  info.mutable_retry_delay()->set_nanos(static_cast<int32_t>(ms % 1000) * 1000000);
  status.SetPayload(kRetryInfoTypeUrl, absl::Cord(info.SerializeAsString()));
  return status;
}

}  // namespace

std::optional<absl::Duration> RetryDelayOf(const absl::Status& status) {
  auto payload = status.GetPayload(kRetryInfoTypeUrl);
  if (!payload.has_value()) return std::nullopt;
  google::rpc::RetryInfo info;
  if (!info.ParseFromString(std::string(*payload))) return std::nullopt;
  return absl::Seconds(info.retry_delay().seconds()) + absl::Nanoseconds(info.retry_delay().nanos());
}

SigningLimiter::Permit& SigningLimiter::Permit::operator=(Permit&& other) noexcept {
  if (this != &other) {
    Release();
    limiter_ = std::exchange(other.limiter_, nullptr);
  }
  return *this;
}

void SigningLimiter::Permit::Release() {
  if (limiter_ != nullptr) std::exchange(limiter_, nullptr)->ReleaseSlot();
}

SigningLimiter::SigningLimiter(const SigningLimits& limits, const Clock& clock, MetricsRegistry& metrics)
    : rate_(NonNegative(limits.rate_per_caller)),
      burst_(std::max(1.0, NonNegative(limits.burst_per_caller))),
      interval_(rate_ > 0 ? absl::Seconds(1 / rate_) : absl::ZeroDuration()),
      burst_time_(interval_ * burst_),
      max_concurrent_(std::max(0, limits.max_concurrent)),
      max_tracked_callers_(std::max<size_t>(1, limits.max_tracked_callers)),
      clock_(clock),
      refused_caller_rate_(
          metrics.AddCounter(kRateLimitedName, kRateLimitedHelp, {{"reason", kRateLimitedCallerRate}})),
      refused_concurrency_(
          metrics.AddCounter(kRateLimitedName, kRateLimitedHelp, {{"reason", kRateLimitedConcurrency}})) {}

absl::StatusOr<SigningLimiter::Permit> SigningLimiter::Admit(const std::string& caller) {
  if (rate_ == 0 && max_concurrent_ == 0) return Permit();
  absl::MutexLock lock(&mu_);
  Bucket* bucket = nullptr;
  absl::Time full_at;  // the bucket's, once this signing is admitted
  if (rate_ > 0) {
    const absl::Time now = clock_.Now();
    auto it = buckets_.find(caller);
    if (it == buckets_.end()) {
      if (buckets_.size() >= max_tracked_callers_) MakeRoomLocked(now);
      it = buckets_.emplace(caller, Bucket{now, now}).first;
    }
    bucket = &it->second;
    // A clock stepping back moves the bucket back with it: no refill for the step, and no wait
    // for the clock to catch up either.
    if (now < bucket->seen) bucket->full_at -= bucket->seen - now;
    bucket->seen = now;
    full_at = std::max(bucket->full_at, now) + interval_;
    if (full_at - now > burst_time_) {
      refused_caller_rate_.Increment();
      return Refusal(absl::StrCat("signing rate limit: ", caller, " is over its limit of ", rate_,
                                  " certificates/s (burst ", burst_, ")"),
                     full_at - now - burst_time_);
    }
  }
  if (max_concurrent_ > 0) {
    if (in_flight_ >= max_concurrent_) {
      refused_concurrency_.Increment();
      return Refusal(absl::StrCat("signing concurrency limit: the CA is signing its maximum of ", max_concurrent_,
                                  " certificates at once"),
                     kConcurrencyRetryDelay);
    }
    ++in_flight_;
  }
  if (bucket != nullptr) bucket->full_at = full_at;
  return max_concurrent_ > 0 ? Permit(this) : Permit();
}

void SigningLimiter::MakeRoomLocked(absl::Time now) {
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    if (it->second.full_at <= now) {
      it = buckets_.erase(it);
    } else {
      ++it;
    }
  }
  // Leave room for an eighth of the bound, so that this pass, which reads every bucket, runs
  // at most once per max_tracked_callers / 8 new callers.
  const size_t target = max_tracked_callers_ - max_tracked_callers_ / 8 - 1;
  if (buckets_.size() <= target) return;
  std::vector<std::pair<absl::Time, const std::string*>> fullest;
  fullest.reserve(buckets_.size());
  for (const auto& [caller, bucket] : buckets_) fullest.emplace_back(bucket.full_at, &caller);
  const size_t excess = buckets_.size() - target;
  std::nth_element(fullest.begin(), fullest.begin() + static_cast<std::ptrdiff_t>(excess - 1), fullest.end());
  std::vector<std::string> evict;
  evict.reserve(excess);
  for (size_t i = 0; i < excess; ++i) evict.push_back(*fullest[i].second);
  for (const std::string& caller : evict) buckets_.erase(caller);
}

void SigningLimiter::ReleaseSlot() {
  absl::MutexLock lock(&mu_);
  --in_flight_;
}

size_t SigningLimiter::tracked_callers() const {
  absl::MutexLock lock(&mu_);
  return buckets_.size();
}

int SigningLimiter::in_flight() const {
  absl::MutexLock lock(&mu_);
  return in_flight_;
}

}  // namespace meshid
