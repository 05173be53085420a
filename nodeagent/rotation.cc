#include "nodeagent/rotation.h"

#include <algorithm>

namespace meshid {

absl::Time RotationTime(absl::Time created, absl::Time not_after, double grace_ratio, double jitter,
                        RandomSource& random) {
  const absl::Duration lifetime = not_after - created;
  if (lifetime <= absl::ZeroDuration()) return created;
  const double offset = jitter > 0 ? (random.Uniform() * 2.0 - 1.0) * jitter : 0.0;
  const double ratio = std::clamp(grace_ratio + offset, 0.0, 1.0);
  return std::max(created, not_after - lifetime * ratio);
}

}  // namespace meshid
