// Rotation timing and retry backoff for workload certificates, as pure functions of their
// inputs so that tests can pin them down with a fake random source.
#pragma once

#include "absl/time/time.h"
#include "common/random.h"

namespace meshid {

// When to renew a certificate received at `created` that expires at `not_after`: when
// `grace_ratio` of its lifetime remains (Istio's SECRET_GRACE_PERIOD_RATIO), moved by a random
// amount in [-jitter, +jitter) of the lifetime (SECRET_GRACE_PERIOD_RATIO_JITTER), so workloads
// started together do not renew together. The effective ratio is clamped to [0, 1]; the result
// is never before `created`.
absl::Time RotationTime(absl::Time created, absl::Time not_after, double grace_ratio, double jitter,
                        RandomSource& random);

// The delay before retry number `failures` (1 for the first retry): exponential from
// `initial`, doubled each time up to `max`, then spread uniformly over [0.5, 1.5) of that
// value ("equal jitter") and capped at `max`.
absl::Duration BackoffDelay(int failures, absl::Duration initial, absl::Duration max, RandomSource& random);

}  // namespace meshid
