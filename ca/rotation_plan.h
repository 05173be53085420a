// The steps of a staged CA rotation (`meshid ca rotate prepare|publish|activate|retire`) as pure
// decisions over the store's one rotation record (store/ca_rotation_store.h): which record a
// step writes, when it has nothing to do (the rotation is already there: running a command
// twice is harmless), and why it refuses a step out of order (FailedPrecondition, with what to
// run next). Also who has adopted the new CA, from the agents' reports (PolicyStatusRow).
//
// No I/O and no clock: the caller reads the record, the reports and the ledger count, passes
// the time, and writes the planned record with a compare-and-swap on the stored one's key.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "store/records.h"

namespace meshid {

// What a step decided.
struct RotationStep {
  // The record to write; when `already`, the stored record, unchanged.
  CaRotationRecord record;
  // The rotation had already reached (or passed) the step's phase: nothing to write.
  bool already = false;
};

// `meshid ca rotate prepare --kind <kind> --key <key_ref>` (key_ref as CanonicalKeyRef makes
// it). With no record, or after a retired rotation: a new prepared record (rotation 1, or the
// next number with `from` = the retired rotation's `to`), whose `to` holds only key_ref: the
// caller fills `to` with the material it makes for it (MakeRotationMaterial) before writing.
// A prepared rotation of the same kind and key_ref: already. Refused: a prepared rotation with
// another kind or key (the message names the existing one), a published or active rotation
// (finish it first).
absl::StatusOr<RotationStep> PlanPrepare(const std::optional<CaRotationRecord>& stored, absl::string_view kind,
                                         absl::string_view key_ref, absl::Time now, absl::string_view actor);

// `publish`: prepared → published. Already when published or later; refused without a record.
absl::StatusOr<RotationStep> PlanPublish(const std::optional<CaRotationRecord>& stored, absl::Time now,
                                         absl::string_view actor);

// Who can validate certificates from the new CA, one row per PolicyStatusRow.
struct AdoptionRow {
  std::string agent_id;
  std::string proxy_id;  // "": the agent itself
  // Its trust bundle holds every root of the rotation's `to` (for an intermediate under the
  // roots already trusted, at once).
  bool can_validate_new_ca = false;
  // Its trust bundle holds a root that is not one of `to`'s (the old roots, while they last).
  bool holds_old_roots = false;
  // Whether this row holds activation back while it cannot validate: every agent row (an
  // offline agent does: that is the point), and every connected proxy; not a disconnected
  // proxy, which is sent the current roots when it reconnects.
  bool counts = true;
  std::string why;  // for a row that cannot validate, or does not count: the reason, for people
};

// One row per `rows` entry, in their order. With `to` roots that do not parse, no row can
// validate (the why says so).
std::vector<AdoptionRow> RotationAdoption(const CaRotationRecord& record, absl::Span<const PolicyStatusRow> rows);
// Every row that counts can validate the new CA (true for no rows).
bool AdoptionComplete(absl::Span<const AdoptionRow> rows);

// `activate [--force]`: published → active. Refused unless AdoptionComplete(adoption) or
// `force` (then the record is marked forced; the caller lists the rows that will fail). Already
// when active or retired; refused while prepared or without a record.
absl::StatusOr<RotationStep> PlanActivate(const std::optional<CaRotationRecord>& stored,
                                          absl::Span<const AdoptionRow> adoption, bool force, absl::Time now,
                                          absl::string_view actor);

// Whether retiring `record` must wait for the certificates signed before activation to expire:
// when its old roots leave the trust bundle, that is for a root rotation, and for an
// intermediate whose roots differ from those of `from` or are not known to equal them (an empty
// `from`: each server's own files). An intermediate under the roots of `from` changes no trust:
// no wait.
bool RetireWaitsForEarlierCertificates(const CaRotationRecord& record);

// `retire`: active → retired. `still_valid_from_before` is CaRotationStore's
// CountUnexpiredIssuedByOthers(serial of to.ca_cert, now), read only when
// RetireWaitsForEarlierCertificates (pass 0 otherwise); more than 0 refuses. Already when
// retired; refused while prepared or published, or without a record.
absl::StatusOr<RotationStep> PlanRetire(const std::optional<CaRotationRecord>& stored, int64_t still_valid_from_before,
                                        absl::Time now, absl::string_view actor);

// When the record reached its current phase (prepared_at, published_at, ...).
absl::Time PhaseReachedAt(const CaRotationRecord& record);

}  // namespace meshid
