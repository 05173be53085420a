// The issuance ledger as the CA's ledger writer and the retention pruner need it: append
// certificates durably, list them, delete expired ones.
//
// Every method is thread-safe and blocks until the store answered. Errors: Unavailable when the
// store cannot be reached or a write could not commit (callers may retry), InvalidArgument for a
// record that fails ValidateIssuanceRecord (naming the field). Nothing is half-written.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "store/records.h"

namespace meshid {

class IssuanceStore {
 public:
  virtual ~IssuanceStore() = default;

  // Appends all records in one transaction and returns only after it committed (durable:
  // fsync'd WAL for SQLite, synchronous commit for PostgreSQL). AlreadyExists if a serial
  // repeats (nothing of the batch is written then).
  absl::Status RecordIssuances(absl::Span<const IssuanceRecord> records) {
    return RecordIssuancesAt(records, std::nullopt);
  }
  // The same, but when `registry_generation` is set the records are written only if the
  // registry is still at that generation, in the same statement: a certificate signed under a
  // registry status read at generation G is recorded only if no entry or block changed since.
  // Aborted ("the identity registry changed") and nothing written otherwise.
  virtual absl::Status RecordIssuancesAt(absl::Span<const IssuanceRecord> records,
                                         std::optional<int64_t> registry_generation) = 0;
  virtual absl::StatusOr<std::vector<IssuanceRecord>> ListIssuances(const IssuanceQuery& query) = 0;
  // Deletes up to `limit` ledger rows whose not_after is before `cutoff`, and up to `limit`
  // revocations of such certificates (long out of every CRL); returns the larger count.
  virtual absl::StatusOr<int64_t> PruneExpiredBefore(absl::Time cutoff, int64_t limit) = 0;
};

}  // namespace meshid
