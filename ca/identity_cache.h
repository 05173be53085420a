// The registry and deny-list statuses the CA signs under, kept in memory so that a request
// normally reads nothing from the store before it signs.
//
// A cached status may be stale. That is safe: a certificate's ledger row is written only if
// the registry is still at the generation its status was read at (Store::RecordIssuancesAt),
// and when it is not, the CA forgets the cache, reads the status again and signs again. A block
// made on any replica is therefore honoured by the next request everywhere, as it was when
// every request read the store, for one more indexed read per ledger batch instead of a
// registry read per request.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>

#include "absl/synchronization/mutex.h"
#include "store/records.h"

namespace meshid {

class IdentityStatusCache {
 public:
  explicit IdentityStatusCache(size_t max_identities = 100000) : max_identities_(max_identities) {}

  // The status cached for `spiffe_id`, or null. Thread-safe.
  std::shared_ptr<const IdentityStatus> Find(const std::string& spiffe_id) const;
  // Caches a status just read. A status of a newer generation replaces everything cached; one
  // of an older generation than the cache's (a read that raced a change) is not kept.
  void Put(const std::string& spiffe_id, IdentityStatus status);
  // The registry has moved past `stale_generation` (a ledger write said so): forgets every
  // status read at it or before.
  void Forget(int64_t stale_generation);

 private:
  const size_t max_identities_;
  mutable absl::Mutex mu_;
  int64_t generation_ ABSL_GUARDED_BY(mu_) = 0;  // the oldest generation worth keeping
  std::unordered_map<std::string, std::shared_ptr<const IdentityStatus>> statuses_ ABSL_GUARDED_BY(mu_);
};

}  // namespace meshid
