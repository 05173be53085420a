// Where a staged CA rotation (`meshid ca rotate prepare|publish|activate|retire`) is recorded,
// so that every replica on one database follows the same rotation: one record, moved one phase
// at a time by a compare-and-swap, so that two operators (or one command run twice) cannot
// both move it, and a command that lost the race sees the record that won.
//
// Thread-safe; blocks until the store answered; every call is one transaction. Errors:
// Unavailable when the store cannot be reached (callers may retry), InvalidArgument naming the
// field (ValidateCaRotationRecord).
#pragma once

#include <cstdint>
#include <optional>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "store/records.h"

namespace meshid {

// The record a compare-and-swap expects to replace: its rotation number and phase.
struct CaRotationKey {
  int64_t rotation = 0;
  CaRotationPhase phase = CaRotationPhase::kPrepared;
  friend bool operator==(const CaRotationKey&, const CaRotationKey&) = default;
};

class CaRotationStore {
 public:
  virtual ~CaRotationStore() = default;

  // The record, or nullopt when no rotation was ever prepared on this database.
  virtual absl::StatusOr<std::optional<CaRotationRecord>> GetCaRotation() = 0;

  // Writes `next` when the stored record is `expected` (nullopt: there is none yet); returns
  // the record in force afterwards: `next` as passed when written, else the stored one,
  // unchanged (the caller compares to tell). NotFound when `expected` is set and there is no
  // record. Times are kept to the microsecond.
  virtual absl::StatusOr<CaRotationRecord> ReplaceCaRotation(const std::optional<CaRotationKey>& expected,
                                                             const CaRotationRecord& next) = 0;

  // How many ledger certificates unexpired at `now` were signed by a CA certificate other than
  // the one with serial `issuer_serial_hex`: before the old root leaves the trust bundle, none
  // may remain.
  virtual absl::StatusOr<int64_t> CountUnexpiredIssuedByOthers(absl::string_view issuer_serial_hex, absl::Time now) = 0;
};

}  // namespace meshid
