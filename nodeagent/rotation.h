// Rotation timing for workload certificates, a pure function of its inputs so that tests can
// pin it down with a fake random source. (Renewal retries use common/backoff.h.)
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

}  // namespace meshid
