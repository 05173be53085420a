#include "store/validation.h"

#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/selector.h"
#include "common/spiffe_id.h"
#include "common/status_macros.h"

namespace meshid {
namespace {

constexpr size_t kMaxPolicyYaml = 1 << 20;    // one document
constexpr size_t kMaxTrustBundle = 64 << 10;  // a status row's trust_bundle
constexpr size_t kMaxStoredCaPem = 1 << 20;   // one PEM of a CA rotation's material
constexpr size_t kMaxCaKeyReference = 4096;   // a CA rotation's key_ref

// Valid UTF-8 (no overlong forms, surrogates or code points above U+10FFFF) without NUL.
bool ValidText(absl::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c == 0) return false;
    if (c < 0x80) {
      ++i;
      continue;
    }
    int extra = 0;
    uint32_t cp = 0;
    if ((c & 0xE0) == 0xC0) {
      extra = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + extra >= s.size()) return false;
    for (int k = 1; k <= extra; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += extra + 1;
  }
  return true;
}

bool IsHex(absl::string_view s, bool upper) {
  for (char c : s) {
    bool digit = c >= '0' && c <= '9';
    bool letter = upper ? (c >= 'A' && c <= 'F') : (c >= 'a' && c <= 'f');
    if (!digit && !letter) return false;
  }
  return !s.empty();
}

bool ValidDnsName(absl::string_view name) {
  if (name.size() >= 2 && name.substr(0, 2) == "*.") name.remove_prefix(2);
  if (name.empty() || name.size() > 253) return false;
  size_t start = 0;
  while (start <= name.size()) {
    size_t dot = name.find('.', start);
    if (dot == absl::string_view::npos) dot = name.size();
    absl::string_view label = name.substr(start, dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') return false;
    for (char c : label) {
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
    }
    start = dot + 1;
  }
  return true;
}

// 1 to `max` bytes of "sha256:<64 lower-case hex>" items separated by commas (the form of
// ca/shared_ca.h's fingerprints).
absl::Status CheckSha256List(absl::string_view field, absl::string_view value, size_t max) {
  if (value.empty() || value.size() > max) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": must be 1 to ", max, " bytes"));
  }
  for (absl::string_view item : absl::StrSplit(value, ',')) {
    if (!absl::ConsumePrefix(&item, "sha256:") || item.size() != 64 || !IsHex(item, /*upper=*/false)) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": must be \"sha256:<64 lower-case hex digits>\" items separated by commas"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckStoredText(absl::string_view field, absl::string_view value, size_t max, bool required) {
  if (required && value.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": must not be empty"));
  if (value.size() > max) return absl::InvalidArgumentError(absl::StrCat(field, ": longer than ", max, " bytes"));
  if (!ValidText(value))
    return absl::InvalidArgumentError(absl::StrCat(field, ": not valid UTF-8 text (or contains NUL)"));
  return absl::OkStatus();
}

absl::Status CheckFiniteTime(absl::string_view field, absl::Time t) {
  if (t == absl::InfiniteFuture() || t == absl::InfinitePast()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": must be a finite time"));
  }
  return absl::OkStatus();
}

absl::Status CheckSpiffeIdField(absl::string_view field, absl::string_view id) {
  auto parsed = SpiffeId::Parse(id);
  if (!parsed.ok()) return absl::InvalidArgumentError(absl::StrCat(field, ": ", parsed.status().message()));
  return absl::OkStatus();
}

absl::Status ValidatePolicyDocument(const StoredPolicyDocument& d) {
  MESHID_RETURN_IF_ERROR(CheckStoredText("kind", d.kind, 253, /*required=*/true));
  MESHID_RETURN_IF_ERROR(CheckStoredText("namespace", d.namespace_, 253, /*required=*/false));
  MESHID_RETURN_IF_ERROR(CheckStoredText("name", d.name, 253, /*required=*/true));
  MESHID_RETURN_IF_ERROR(CheckStoredText("yaml", d.yaml, kMaxPolicyYaml, /*required=*/true));
  MESHID_RETURN_IF_ERROR(CheckStoredText("source", d.source, kMaxStoredText, /*required=*/false));
  return absl::OkStatus();
}

absl::Status ValidatePolicyStatusRow(absl::string_view agent_id, const PolicyStatusRow& r) {
  if (r.agent_id != agent_id) return absl::InvalidArgumentError("agent_id: differs from the report's agent");
  MESHID_RETURN_IF_ERROR(CheckStoredText("proxy_id", r.proxy_id, 1024, /*required=*/false));
  MESHID_RETURN_IF_ERROR(CheckStoredText("reporter", r.reporter, 2048, /*required=*/false));
  MESHID_RETURN_IF_ERROR(CheckStoredText("service", r.service, 253, /*required=*/false));
  MESHID_RETURN_IF_ERROR(CheckStoredText("namespace", r.namespace_, 253, /*required=*/false));
  MESHID_RETURN_IF_ERROR(CheckStoredText("last_error", r.last_error, kMaxStoredText, /*required=*/false));
  if (r.crl_number < 0) return absl::InvalidArgumentError("crl_number: must not be negative");
  if (r.applied_version < 0 || r.rejected_version < 0) {
    return absl::InvalidArgumentError("applied_version, rejected_version: must not be negative");
  }
  MESHID_RETURN_IF_ERROR(CheckFiniteTime("changed_at", r.changed_at));
  MESHID_RETURN_IF_ERROR(CheckFiniteTime("reported_at", r.reported_at));
  if (!r.trust_bundle.empty()) MESHID_RETURN_IF_ERROR(CheckSha256List("trust_bundle", r.trust_bundle, kMaxTrustBundle));
  return absl::OkStatus();
}

absl::Status ValidateCaMaterialRecord(const CaMaterialRecord& r) {
  if (r.kind != kCaMaterialSigningCa && r.kind != kCaMaterialLocalTokenKey) {
    return absl::InvalidArgumentError(absl::StrCat("kind: must be ", kCaMaterialSigningCa, " or ",
                                                   kCaMaterialLocalTokenKey, ", not \"", absl::CEscape(r.kind), "\""));
  }
  MESHID_RETURN_IF_ERROR(CheckSha256List("fingerprint", r.fingerprint, 4096));
  MESHID_RETURN_IF_ERROR(CheckStoredText("source", r.source, 4096, /*required=*/false));
  return CheckFiniteTime("recorded_at", r.recorded_at);
}

namespace {

constexpr std::pair<CaRotationPhase, const char*> kCaRotationPhaseNames[] = {
    {CaRotationPhase::kPrepared, "prepared"},
    {CaRotationPhase::kPublished, "published"},
    {CaRotationPhase::kActive, "active"},
    {CaRotationPhase::kRetired, "retired"},
};

// `material`'s fields, under `field` ("to", "from"): each non-empty and bounded; `why` is
// appended to the message of a missing one.
absl::Status CheckStoredCaMaterial(absl::string_view field, const StoredCaMaterial& material, absl::string_view why) {
  const std::pair<absl::string_view, const std::string*> pems[] = {
      {"ca_cert_pem", &material.ca_cert_pem},
      {"cert_chain_pem", &material.cert_chain_pem},
      {"root_cert_pem", &material.root_cert_pem},
  };
  for (const auto& [name, pem] : pems) {
    const std::string name_in_field = absl::StrCat(field, ".", name);
    if (pem->empty()) return absl::InvalidArgumentError(absl::StrCat(name_in_field, ": must not be empty", why));
    MESHID_RETURN_IF_ERROR(CheckStoredText(name_in_field, *pem, kMaxStoredCaPem, /*required=*/true));
  }
  const std::string key_ref = absl::StrCat(field, ".key_ref");
  if (material.key_ref.empty()) return absl::InvalidArgumentError(absl::StrCat(key_ref, ": must not be empty", why));
  MESHID_RETURN_IF_ERROR(CheckStoredText(key_ref, material.key_ref, kMaxCaKeyReference, /*required=*/true));
  if (material.key_ref.find_first_of("\r\n") != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(key_ref, ": must not contain a newline"));
  }
  return absl::OkStatus();
}

}  // namespace

const char* CaRotationPhaseName(CaRotationPhase phase) {
  for (const auto& [p, name] : kCaRotationPhaseNames) {
    if (p == phase) return name;
  }
  return "";
}

std::optional<CaRotationPhase> ParseCaRotationPhase(const std::string& name) {
  for (const auto& [p, n] : kCaRotationPhaseNames) {
    if (n == name) return p;
  }
  return std::nullopt;
}

absl::Status ValidateCaRotationRecord(const CaRotationRecord& r) {
  if (r.rotation < 1) return absl::InvalidArgumentError(absl::StrCat("rotation: must be at least 1, not ", r.rotation));
  if (*CaRotationPhaseName(r.phase) == '\0') {
    return absl::InvalidArgumentError(
        absl::StrCat("phase: ", static_cast<int>(r.phase), " is not one of prepared, published, active, retired"));
  }
  if (r.kind != kCaRotationRoot && r.kind != kCaRotationIntermediate) {
    return absl::InvalidArgumentError(absl::StrCat("kind: must be ", kCaRotationRoot, " or ", kCaRotationIntermediate,
                                                   ", not \"", absl::CEscape(r.kind.substr(0, 64)), "\""));
  }
  // `from` is set as a whole or not at all: any of its fields makes every other one required.
  if (r.from != StoredCaMaterial()) {
    MESHID_RETURN_IF_ERROR(CheckStoredCaMaterial("from", r.from, " (from is entirely set or entirely empty)"));
  }
  MESHID_RETURN_IF_ERROR(CheckStoredCaMaterial("to", r.to, ""));
  MESHID_RETURN_IF_ERROR(CheckStoredText("actor", r.actor, kMaxStoredNote, /*required=*/false));
  MESHID_RETURN_IF_ERROR(CheckFiniteTime("prepared_at", r.prepared_at));
  // Each later phase's time, with the phase that sets it: finite once reached, InfinitePast
  // before, and never earlier than the phase before it.
  const std::tuple<absl::string_view, CaRotationPhase, absl::Time> later[] = {
      {"published_at", CaRotationPhase::kPublished, r.published_at},
      {"activated_at", CaRotationPhase::kActive, r.activated_at},
      {"retired_at", CaRotationPhase::kRetired, r.retired_at},
  };
  absl::string_view previous_field = "prepared_at";
  absl::Time previous = r.prepared_at;
  for (const auto& [field, reached_in, at] : later) {
    if (r.phase < reached_in) {
      if (at != absl::InfinitePast()) {
        return absl::InvalidArgumentError(absl::StrCat(field, ": must be unset (absl::InfinitePast()) while the ",
                                                       "rotation is ", CaRotationPhaseName(r.phase)));
      }
      continue;
    }
    if (at == absl::InfiniteFuture() || at == absl::InfinitePast()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": must be a finite time once the rotation is ", CaRotationPhaseName(reached_in)));
    }
    if (at < previous) return absl::InvalidArgumentError(absl::StrCat(field, ": before ", previous_field));
    previous_field = field;
    previous = at;
  }
  if (r.forced && r.phase < CaRotationPhase::kActive) {
    return absl::InvalidArgumentError(
        absl::StrCat("forced: only an activation may be forced, and the rotation is ", CaRotationPhaseName(r.phase)));
  }
  return absl::OkStatus();
}

absl::Status CheckSerialHex(absl::string_view field, absl::string_view serial_hex) {
  if (serial_hex.size() > 128 || !IsHex(serial_hex, /*upper=*/true)) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": must be 1 to 128 upper-case hex digits"));
  }
  return absl::OkStatus();
}

namespace {

constexpr std::pair<RevocationReason, absl::string_view> kReasonNames[] = {
    {RevocationReason::kUnspecified, "unspecified"},
    {RevocationReason::kKeyCompromise, "keyCompromise"},
    {RevocationReason::kCaCompromise, "cACompromise"},
    {RevocationReason::kAffiliationChanged, "affiliationChanged"},
    {RevocationReason::kSuperseded, "superseded"},
    {RevocationReason::kCessationOfOperation, "cessationOfOperation"},
    {RevocationReason::kPrivilegeWithdrawn, "privilegeWithdrawn"},
};

}  // namespace

absl::string_view RevocationReasonName(RevocationReason reason) {
  for (const auto& [r, name] : kReasonNames) {
    if (r == reason) return name;
  }
  return "";
}

absl::StatusOr<RevocationReason> ParseRevocationReason(absl::string_view name) {
  std::vector<absl::string_view> names;
  for (const auto& [r, n] : kReasonNames) {
    if (n == name) return r;
    names.push_back(n);
  }
  return absl::InvalidArgumentError(absl::StrCat("reason: \"", absl::CHexEscape(name.substr(0, 64)),
                                                 "\" is not one of ", absl::StrJoin(names, ", ")));
}

absl::Status ValidateRevocationRequest(const RevocationRequest& request) {
  if (RevocationReasonName(request.reason).empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("reason: ", static_cast<int>(request.reason), " is not a CRLReason a revocation may carry"));
  }
  MESHID_RETURN_IF_ERROR(CheckStoredText("revoked_by", request.revoked_by, kMaxStoredNote, /*required=*/true));
  return CheckFiniteTime("at", request.at);
}

absl::Status ValidateIssuanceRecord(const IssuanceRecord& r) {
  MESHID_RETURN_IF_ERROR(CheckSerialHex("serial_hex", r.serial_hex));
  MESHID_RETURN_IF_ERROR(CheckSpiffeIdField("spiffe_id", r.spiffe_id));
  if (r.public_key_sha256.size() != 64 || !IsHex(r.public_key_sha256, /*upper=*/false)) {
    return absl::InvalidArgumentError("public_key_sha256: must be 64 lower-case hex digits");
  }
  MESHID_RETURN_IF_ERROR(CheckSerialHex("issuer_serial_hex", r.issuer_serial_hex));
  MESHID_RETURN_IF_ERROR(CheckStoredText("auth_method", r.auth_method, 64, /*required=*/true));
  MESHID_RETURN_IF_ERROR(CheckStoredText("auth_detail", r.auth_detail, kMaxStoredText, /*required=*/false));
  MESHID_RETURN_IF_ERROR(CheckFiniteTime("not_before", r.not_before));
  MESHID_RETURN_IF_ERROR(CheckFiniteTime("not_after", r.not_after));
  MESHID_RETURN_IF_ERROR(CheckFiniteTime("issued_at", r.issued_at));
  if (r.not_after < r.not_before) return absl::InvalidArgumentError("not_after: before not_before");
  if (!r.minted_by.empty()) MESHID_RETURN_IF_ERROR(CheckSpiffeIdField("minted_by", r.minted_by));
  return absl::OkStatus();
}

namespace {

absl::Status CheckEntryParentAndSelectors(const RegistryEntry& e) {
  const bool has_parent = !e.parent_id.empty();
  if (has_parent) {
    MESHID_RETURN_IF_ERROR(CheckSpiffeIdField("parent_id", e.parent_id));
    if (e.parent_id == e.spiffe_id) {
      return absl::InvalidArgumentError("parent_id: must differ from spiffe_id (a node agent does not mint itself)");
    }
    if (e.selectors.empty()) {
      return absl::InvalidArgumentError(
          "selectors: an entry with a parent_id needs at least one (it says which workloads of the node get the "
          "identity)");
    }
  } else if (!e.selectors.empty()) {
    return absl::InvalidArgumentError("selectors: only an entry with a parent_id has selectors");
  }
  if (e.selectors.size() > kMaxEntrySelectors) {
    return absl::InvalidArgumentError(
        absl::StrCat("selectors: ", e.selectors.size(), " of them, more than the ", kMaxEntrySelectors, " allowed"));
  }
  for (size_t i = 0; i < e.selectors.size(); ++i) {
    const std::string& selector = e.selectors[i];
    std::string field = absl::StrCat("selectors[", i, "]");
    // Stored as JSON text: valid UTF-8 (ParseSelector lets any byte but NUL through in a path).
    MESHID_RETURN_IF_ERROR(CheckStoredText(field, selector, kMaxSelectorLength, /*required=*/true));
    absl::StatusOr<std::string> canonical = ParseSelector(selector);
    if (!canonical.ok()) return absl::InvalidArgumentError(absl::StrCat(field, ": ", canonical.status().message()));
    const std::string quoted = absl::StrCat("\"", absl::CHexEscape(selector), "\"");
    if (*canonical != selector) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": ", quoted, " is not in canonical form (\"", absl::CHexEscape(*canonical), "\")"));
    }
    if (i > 0 && selector == e.selectors[i - 1]) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": ", quoted, " is listed twice"));
    }
    if (i > 0 && selector < e.selectors[i - 1]) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": ", quoted, " is out of order (selectors are sorted)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateRegistryEntry(const RegistryEntry& e) {
  MESHID_RETURN_IF_ERROR(CheckSpiffeIdField("spiffe_id", e.spiffe_id));
  MESHID_RETURN_IF_ERROR(CheckEntryParentAndSelectors(e));
  if (!e.parent_id.empty() && !e.allowed_auth.empty()) {
    return absl::InvalidArgumentError(
        "allowed_auth: must be empty for an entry with a parent_id (the parent's authentication stands for the "
        "workload's)");
  }
  if (e.parent_id.empty() && e.allowed_auth.empty()) {
    return absl::InvalidArgumentError(
        "allowed_auth: at least one of \"*\", \"jwt-sub:<subject>\", \"jwt-iss:<issuer>\", "
        "\"client-cert\"");
  }
  std::set<std::string> seen;
  for (size_t i = 0; i < e.allowed_auth.size(); ++i) {
    const std::string& a = e.allowed_auth[i];
    std::string field = absl::StrCat("allowed_auth[", i, "]");
    MESHID_RETURN_IF_ERROR(CheckStoredText(field, a, kMaxStoredNote, /*required=*/true));
    bool ok = a == "*" || a == "client-cert" || (a.rfind("jwt-sub:", 0) == 0 && a.size() > 8) ||
              (a.rfind("jwt-iss:", 0) == 0 && a.size() > 8);
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": \"", a.substr(0, 64),
                       "\" is not one of \"*\", \"jwt-sub:<subject>\", \"jwt-iss:<issuer>\", \"client-cert\""));
    }
    if (!seen.insert(a).second) return absl::InvalidArgumentError(absl::StrCat(field, ": \"", a, "\" is listed twice"));
  }
  if (e.max_ttl < absl::ZeroDuration() || e.max_ttl == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError("max_ttl: must be zero (the server's maximum) or a positive duration");
  }
  seen.clear();
  for (size_t i = 0; i < e.dns_names.size(); ++i) {
    std::string field = absl::StrCat("dns_names[", i, "]");
    if (!ValidDnsName(e.dns_names[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": \"", e.dns_names[i].substr(0, 64), "\" is not a DNS name"));
    }
    if (!seen.insert(absl::AsciiStrToLower(e.dns_names[i])).second) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": \"", e.dns_names[i], "\" is listed twice"));
    }
  }
  MESHID_RETURN_IF_ERROR(CheckStoredText("note", e.note, kMaxStoredNote, /*required=*/false));
  MESHID_RETURN_IF_ERROR(CheckFiniteTime("created_at", e.created_at));
  return absl::OkStatus();
}

}  // namespace meshid
