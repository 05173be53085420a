// Revocation as `meshid certs revoke`, `meshid identity block` and the CRL publisher need it:
// revoke certificates of the ledger, and read what a CRL must list.
//
// Every method is thread-safe, blocks until the store answered, and is one transaction: on an
// error nothing is revoked and the CRL number has not moved. Errors: Unavailable when the store
// cannot be reached or the transaction could not commit (callers may retry: revoking is
// idempotent), InvalidArgument naming the field (a malformed serial or SPIFFE ID, a bad
// request: ValidateRevocationRequest). Revocation is permanent; revoking what is already revoked
// changes nothing and says so. Safe to run concurrently with issuance and with other servers or
// commands on the same database.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "store/records.h"

namespace meshid {

class RevocationStore {
 public:
  virtual ~RevocationStore() = default;

  // Revokes the ledger's certificates with these serials (upper-case hex; repeats count once).
  // NotFound naming every serial the ledger does not hold (never issued here, or expired and
  // pruned), and then nothing is revoked. Certificates already expired at `request.at` are
  // reported as such and not revoked.
  virtual absl::StatusOr<RevocationOutcome> Revoke(absl::Span<const std::string> serials,
                                                   const RevocationRequest& request) = 0;

  // Revokes every certificate of `spiffe_id` in the ledger that is unexpired at `request.at`
  // (none is not an error).
  virtual absl::StatusOr<RevocationOutcome> RevokeIdentity(absl::string_view spiffe_id,
                                                           const RevocationRequest& request) = 0;

  // IdentityRegistry::Block(spiffe_id, block_reason, request.at) and RevokeIdentity(spiffe_id,
  // request), in one transaction: `meshid identity block`.
  virtual absl::StatusOr<RevocationOutcome> BlockAndRevoke(absl::string_view spiffe_id, absl::string_view block_reason,
                                                           const RevocationRequest& request) = 0;

  // The CRL number alone: one row, cheap enough to poll every second (the CRL publisher does).
  virtual absl::StatusOr<int64_t> CrlNumber() = 0;

  // Every revocation of a certificate unexpired at `now`, and the CRL number, in one snapshot.
  virtual absl::StatusOr<RevocationSnapshot> ListRevocations(absl::Time now) = 0;
};

}  // namespace meshid
