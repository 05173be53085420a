#include "ca/identity_cache.h"

namespace meshid {

std::shared_ptr<const IdentityStatus> IdentityStatusCache::Find(const std::string& spiffe_id) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = statuses_.find(spiffe_id);
  return it == statuses_.end() ? nullptr : it->second;
}

void IdentityStatusCache::Put(const std::string& spiffe_id, IdentityStatus status) {
  absl::MutexLock lock(&mu_);
  if (status.registry_generation < generation_) return;
  if (status.registry_generation > generation_) {
    statuses_.clear();
    generation_ = status.registry_generation;
  }
  if (statuses_.size() >= max_identities_) statuses_.clear();  // a bound, not an eviction policy
  statuses_[spiffe_id] = std::make_shared<const IdentityStatus>(std::move(status));
}

void IdentityStatusCache::Forget(int64_t stale_generation) {
  absl::MutexLock lock(&mu_);
  if (stale_generation < generation_) return;  // already forgotten
  statuses_.clear();
  generation_ = stale_generation + 1;
}

}  // namespace meshid
