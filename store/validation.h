// What every backend checks before it writes a record, so that both store the same things and
// refuse the same things with the same message. Each check returns InvalidArgument naming the
// field ("dns_names[2]: ...").
#pragma once

#include <cstddef>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "store/records.h"

namespace meshid {

inline constexpr size_t kMaxStoredText = 4096;    // free text: details, errors, descriptions
inline constexpr size_t kMaxStoredNote = 1024;    // notes, reasons, allowed_auth entries
inline constexpr size_t kMaxEntrySelectors = 64;  // selectors of one registry entry

// Text of at most `max` bytes, valid UTF-8 without NUL; non-empty when `required`.
absl::Status CheckStoredText(absl::string_view field, absl::string_view value, size_t max, bool required);
// A time that is not absl::InfiniteFuture() or absl::InfinitePast().
absl::Status CheckFiniteTime(absl::string_view field, absl::Time t);
// A valid SPIFFE ID.
absl::Status CheckSpiffeIdField(absl::string_view field, absl::string_view id);

// serial_hex and issuer_serial_hex: upper-case hex; public_key_sha256: 64 lower-case hex digits;
// spiffe_id, auth_method: non-empty; minted_by: empty or a valid SPIFFE ID; text valid UTF-8
// without NUL; times finite, not_before <= not_after.
absl::Status ValidateIssuanceRecord(const IssuanceRecord& record);
// A valid SPIFFE ID; parent_id empty or a valid SPIFFE ID other than spiffe_id; selectors
// canonical (ParseSelector gives them back unchanged), sorted, unique, at most
// kMaxEntrySelectors, at least one with a parent and none without; allowed_auth of the forms
// RegistryEntry lists, at least one without a parent and none with; max_ttl not negative, DNS
// names that are host names (optionally "*." + host name), a note of at most 1024 bytes.
absl::Status ValidateRegistryEntry(const RegistryEntry& entry);
// kind and name non-empty (at most 253 bytes), namespace at most 253 bytes, yaml non-empty (at
// most 1 MiB), source at most 4096 bytes.
absl::Status ValidatePolicyDocument(const StoredPolicyDocument& document);
// A row of `agent_id`'s report: its agent_id equal to `agent_id`, texts bounded, versions not
// negative, times finite, trust_bundle empty or at most 64 KiB of "sha256:<64 hex>" items
// separated by commas.
absl::Status ValidatePolicyStatusRow(absl::string_view agent_id, const PolicyStatusRow& row);

// kind one of the kCaMaterial* names; fingerprint 1 to 4096 bytes of "sha256:<64 hex>" items
// separated by commas; source at most 4096 bytes; recorded_at finite.
absl::Status ValidateCaMaterialRecord(const CaMaterialRecord& record);

// rotation at least 1; phase one of the enum; kind one of the kCaRotation* names; `to` entirely
// set and `from` entirely set or entirely empty (each PEM at most 1 MiB, key_ref at most 4096
// bytes without newlines); actor at most 1024 bytes; prepared_at finite and each later phase's
// time finite exactly when the phase has been reached (absl::InfinitePast() before), in
// non-decreasing order; forced only when the rotation is active or retired.
absl::Status ValidateCaRotationRecord(const CaRotationRecord& record);

// serial_hex: 1 to 128 upper-case hex digits (the ledger's form).
absl::Status CheckSerialHex(absl::string_view field, absl::string_view serial_hex);

// The RFC 5280 name of a reason ("keyCompromise"), and back: InvalidArgument listing the
// accepted names for anything else (certificateHold and removeFromCRL included).
absl::string_view RevocationReasonName(RevocationReason reason);
absl::StatusOr<RevocationReason> ParseRevocationReason(absl::string_view name);

// A reason of the enum, revoked_by non-empty text of at most 1024 bytes, a finite time.
absl::Status ValidateRevocationRequest(const RevocationRequest& request);

}  // namespace meshid
