#include "ca/rotation_plan.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "ca/rotation_material.h"

namespace meshid {
namespace {

constexpr char kNothingPrepared[] = "no rotation is prepared: run `meshid ca rotate prepare` first";

std::string Rfc3339(absl::Time t) { return absl::FormatTime("%Y-%m-%d%ET%H:%M:%SZ", t, absl::UTCTimeZone()); }

// "rotation 3 is published (by alice at 2026-...)".
std::string Describe(const CaRotationRecord& record) {
  return absl::StrCat("rotation ", record.rotation, " is ", CaRotationPhaseName(record.phase), " (by ",
                      record.actor.empty() ? "an unknown operator" : record.actor, " at ",
                      Rfc3339(PhaseReachedAt(record)), ")");
}

RotationStep Already(const CaRotationRecord& stored) { return RotationStep{stored, /*already=*/true}; }

// The stored record moved to `phase` at `now` by `actor`.
RotationStep Moved(const CaRotationRecord& stored, CaRotationPhase phase, absl::Time now, absl::string_view actor) {
  RotationStep step{stored, /*already=*/false};
  step.record.phase = phase;
  step.record.actor = std::string(actor);
  // A phase never dates before the previous one (ValidateCaRotationRecord), whatever this clock says.
  now = std::max(now, PhaseReachedAt(stored));
  switch (phase) {
    case CaRotationPhase::kPrepared:
      step.record.prepared_at = now;
      break;
    case CaRotationPhase::kPublished:
      step.record.published_at = now;
      break;
    case CaRotationPhase::kActive:
      step.record.activated_at = now;
      break;
    case CaRotationPhase::kRetired:
      step.record.retired_at = now;
      break;
  }
  return step;
}

std::vector<absl::string_view> Items(absl::string_view fingerprints) {
  return absl::StrSplit(fingerprints, ',', absl::SkipEmpty());
}

std::string RowName(const AdoptionRow& row) {
  return row.proxy_id.empty() ? row.agent_id : absl::StrCat(row.agent_id, "/", row.proxy_id);
}

}  // namespace

absl::Time PhaseReachedAt(const CaRotationRecord& record) {
  switch (record.phase) {
    case CaRotationPhase::kPrepared:
      return record.prepared_at;
    case CaRotationPhase::kPublished:
      return record.published_at;
    case CaRotationPhase::kActive:
      return record.activated_at;
    case CaRotationPhase::kRetired:
      return record.retired_at;
  }
  return record.prepared_at;
}

absl::StatusOr<RotationStep> PlanPrepare(const std::optional<CaRotationRecord>& stored, absl::string_view kind,
                                         absl::string_view key_ref, absl::Time now, absl::string_view actor) {
  if (kind != kCaRotationRoot && kind != kCaRotationIntermediate) {
    return absl::InvalidArgumentError(
        absl::StrCat("--kind: \"", kind, "\": must be ", kCaRotationRoot, " or ", kCaRotationIntermediate));
  }
  if (key_ref.empty()) return absl::InvalidArgumentError("--key: required (a key file or a pkcs11: URI)");
  CaRotationRecord next;
  next.rotation = 1;
  if (stored.has_value()) {
    switch (stored->phase) {
      case CaRotationPhase::kPrepared:
        if (stored->kind == kind && stored->to.key_ref == key_ref) return Already(*stored);
        return absl::FailedPreconditionError(
            absl::StrCat(Describe(*stored), " with --kind ", stored->kind, " --key ", stored->to.key_ref,
                         ", not --kind ", kind, " --key ", key_ref,
                         ": go on with it (`meshid ca rotate publish`), or prepare it again with its --kind "
                         "and --key"));
      case CaRotationPhase::kPublished:
        return absl::FailedPreconditionError(
            absl::StrCat(Describe(*stored),
                         ": finish it with `meshid ca rotate activate` and `meshid ca rotate "
                         "retire` before preparing another"));
      case CaRotationPhase::kActive:
        return absl::FailedPreconditionError(
            absl::StrCat(Describe(*stored), ": finish it with `meshid ca rotate retire` before preparing another"));
      case CaRotationPhase::kRetired:
        next.rotation = stored->rotation + 1;
        next.from = stored->to;
        now = std::max(now, stored->retired_at);
        break;
    }
  }
  next.phase = CaRotationPhase::kPrepared;
  next.kind = std::string(kind);
  next.to.key_ref = std::string(key_ref);
  next.actor = std::string(actor);
  next.prepared_at = now;
  return RotationStep{std::move(next), /*already=*/false};
}

absl::StatusOr<RotationStep> PlanPublish(const std::optional<CaRotationRecord>& stored, absl::Time now,
                                         absl::string_view actor) {
  if (!stored.has_value()) return absl::FailedPreconditionError(kNothingPrepared);
  if (stored->phase != CaRotationPhase::kPrepared) return Already(*stored);
  return Moved(*stored, CaRotationPhase::kPublished, now, actor);
}

std::vector<AdoptionRow> RotationAdoption(const CaRotationRecord& record, absl::Span<const PolicyStatusRow> rows) {
  absl::StatusOr<std::string> new_roots = RootFingerprintsOfPem(record.to.root_cert_pem);
  std::vector<AdoptionRow> out;
  out.reserve(rows.size());
  for (const PolicyStatusRow& status : rows) {
    AdoptionRow row;
    row.agent_id = status.agent_id;
    row.proxy_id = status.proxy_id;
    row.counts = status.proxy_id.empty() || status.connected;
    const std::vector<absl::string_view> held = Items(status.trust_bundle);
    auto holds = [&held](absl::string_view fingerprint) {
      return std::find(held.begin(), held.end(), fingerprint) != held.end();
    };
    std::vector<std::string> why;
    if (!new_roots.ok()) {
      why.push_back(absl::StrCat("the rotation's new roots do not parse: ", new_roots.status().message()));
    } else if (held.empty()) {
      why.push_back(status.proxy_id.empty() ? "reports no trust bundle (an agent without CA rotation support)"
                                            : "has not acknowledged a trust bundle (ROOTCA)");
    } else {
      const std::vector<absl::string_view> wanted = Items(*new_roots);
      row.can_validate_new_ca = std::all_of(wanted.begin(), wanted.end(), holds);
      row.holds_old_roots = std::any_of(held.begin(), held.end(), [&wanted](absl::string_view fingerprint) {
        return std::find(wanted.begin(), wanted.end(), fingerprint) == wanted.end();
      });
      if (!row.can_validate_new_ca) {
        why.push_back(absl::StrCat("holds ", held.size(), held.size() == 1 ? " root" : " roots", ", not the new one"));
      }
    }
    if (!row.counts) why.push_back("disconnected: is sent the current roots when it reconnects");
    row.why = absl::StrJoin(why, "; ");
    out.push_back(std::move(row));
  }
  return out;
}

bool AdoptionComplete(absl::Span<const AdoptionRow> rows) {
  return std::all_of(rows.begin(), rows.end(),
                     [](const AdoptionRow& row) { return !row.counts || row.can_validate_new_ca; });
}

absl::StatusOr<RotationStep> PlanActivate(const std::optional<CaRotationRecord>& stored,
                                          absl::Span<const AdoptionRow> adoption, bool force, absl::Time now,
                                          absl::string_view actor) {
  if (!stored.has_value()) return absl::FailedPreconditionError(kNothingPrepared);
  switch (stored->phase) {
    case CaRotationPhase::kPrepared:
      return absl::FailedPreconditionError(absl::StrCat("rotation ", stored->rotation,
                                                        " is prepared, not published: run `meshid ca rotate "
                                                        "publish` first"));
    case CaRotationPhase::kActive:
    case CaRotationPhase::kRetired:
      return Already(*stored);
    case CaRotationPhase::kPublished:
      break;
  }
  if (!AdoptionComplete(adoption) && !force) {
    std::vector<std::string> behind;
    size_t counted = 0;
    for (const AdoptionRow& row : adoption) {
      if (!row.counts) continue;
      ++counted;
      if (!row.can_validate_new_ca) behind.push_back(RowName(row));
    }
    const size_t named = std::min<size_t>(behind.size(), 3);
    std::string names = absl::StrJoin(behind.begin(), behind.begin() + named, ", ");
    if (behind.size() > named) absl::StrAppend(&names, ", ...");
    return absl::FailedPreconditionError(absl::StrCat(
        "rotation ", stored->rotation, ": ", behind.size(), " of ", counted,
        " agents and proxies cannot validate the new CA yet (", names,
        "): run `meshid ca rotate status` until every one holds the new root, then activate; or run `meshid ca "
        "rotate activate --force`, and those will refuse certificates from the new CA until they get its root"));
  }
  RotationStep step = Moved(*stored, CaRotationPhase::kActive, now, actor);
  step.record.forced = !AdoptionComplete(adoption);
  return step;
}

bool RetireWaitsForEarlierCertificates(const CaRotationRecord& record) {
  if (record.kind != kCaRotationIntermediate) return true;
  // The first rotation's `from` is each server's own files, whose roots the record does not hold:
  // the intermediate may be under another root (a --root-cert other than the servers'), so wait.
  if (record.from.empty()) return true;
  auto from_roots = RootFingerprintsOfPem(record.from.root_cert_pem);
  auto to_roots = RootFingerprintsOfPem(record.to.root_cert_pem);
  return !from_roots.ok() || !to_roots.ok() || *from_roots != *to_roots;
}

absl::StatusOr<RotationStep> PlanRetire(const std::optional<CaRotationRecord>& stored, int64_t still_valid_from_before,
                                        absl::Time now, absl::string_view actor) {
  if (!stored.has_value()) return absl::FailedPreconditionError(kNothingPrepared);
  switch (stored->phase) {
    case CaRotationPhase::kPrepared:
      return absl::FailedPreconditionError(
          absl::StrCat("rotation ", stored->rotation,
                       " is prepared, not active: run `meshid ca rotate publish`, then `meshid ca rotate "
                       "activate` first"));
    case CaRotationPhase::kPublished:
      return absl::FailedPreconditionError(absl::StrCat(
          "rotation ", stored->rotation, " is published, not active: run `meshid ca rotate activate` first"));
    case CaRotationPhase::kRetired:
      return Already(*stored);
    case CaRotationPhase::kActive:
      break;
  }
  if (RetireWaitsForEarlierCertificates(*stored) && still_valid_from_before > 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "rotation ", stored->rotation, ": ", still_valid_from_before,
        still_valid_from_before == 1 ? " certificate" : " certificates", " signed before activation ",
        still_valid_from_before == 1 ? "is" : "are",
        " still valid; retire after they expire or are renewed (their agents renew them at half their life)"));
  }
  return Moved(*stored, CaRotationPhase::kRetired, now, actor);
}

}  // namespace meshid
