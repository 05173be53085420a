// What makes several `meshid server` replicas on one database one CA: the store records the CA
// every replica must use (the fingerprints of its trust anchors, and of the local token issuer's
// key). The material itself stays in each server's files.
//
// The first server to start on a database records its material; every later one compares its
// own with the record and refuses to start when they differ (ca/shared_ca.h). Record-or-get is
// atomic: servers starting at once agree on one record, whichever inserted it.
//
// Thread-safe; blocks until the store answered; every call is one transaction. Errors:
// Unavailable when the store cannot be reached (callers may retry), InvalidArgument naming the
// field (ValidateCaMaterialRecord).
#pragma once

#include <optional>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "store/records.h"

namespace meshid {

class CaMaterialStore {
 public:
  virtual ~CaMaterialStore() = default;

  // Inserts `candidate` unless a record of its kind exists, and returns the record in force:
  // `candidate` if it was inserted, else the existing record (unchanged).
  virtual absl::StatusOr<CaMaterialRecord> RecordOrGetCaMaterial(const CaMaterialRecord& candidate) = 0;

  // Replaces the record of `replacement.kind` when its fingerprint is still
  // `expected_fingerprint` (a compare-and-swap, so that two replicas reloading the same files
  // do not undo each other); returns the record in force afterwards, replaced or not. NotFound
  // when there is no record of that kind.
  virtual absl::StatusOr<CaMaterialRecord> ReplaceCaMaterial(absl::string_view expected_fingerprint,
                                                             const CaMaterialRecord& replacement) = 0;

  // The record of `kind`, or nullopt.
  virtual absl::StatusOr<std::optional<CaMaterialRecord>> GetCaMaterial(absl::string_view kind) = 0;
};

}  // namespace meshid
