// The Store written once against Database, shared by the SQLite and PostgreSQL backends, and
// OpenStore.
#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/clock.h"
#include "common/spiffe_id.h"
#include "common/status_macros.h"
#include "sql/database.h"
#include "sql/migrations.h"
#include "sql/postgres_database.h"
#include "sql/sqlite_database.h"
#include "sql/store.h"
#include "sql/store_url.h"
#include "store/validation.h"

namespace meshid {
namespace {

using sql::ColumnInt;
using sql::ColumnText;
using sql::SqlParam;
using sql::SqlRow;
using sql::SqlTx;
using sql::TxMode;

constexpr size_t kInsertChunk = 64;  // rows per INSERT statement (10 parameters each)
// An identity's registry entries (its direct one and one per parent) and block with the registry
// generation, in one statement and so one snapshot: a row per entry (one row of NULL entry
// columns when there is none), the generation and block repeated on each. It runs whenever the
// CA has no current status of the identity in memory.
constexpr absl::string_view kIdentityStatusQuery =
    "SELECT g.generation, e.spiffe_id, e.parent_id, e.selectors, e.allowed_auth, e.max_ttl_us, e.dns_names, e.note, "
    "e.created_at_us, b.spiffe_id, b.reason, b.blocked_at_us FROM registry_generation g "
    "LEFT JOIN registry_entries e ON e.spiffe_id = $1 LEFT JOIN blocked_identities b ON b.spiffe_id = $1";
constexpr size_t kStatusEntryColumn = 1;
constexpr size_t kStatusBlockColumn = 9;
// Appended to a registry or deny-list change, in its transaction.
constexpr absl::string_view kBumpRegistryGeneration = "UPDATE registry_generation SET generation = generation + 1";

std::string ToJson(const std::vector<std::string>& list) { return nlohmann::json(list).dump(); }

absl::StatusOr<std::vector<std::string>> FromJson(const std::string& text, absl::string_view what) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  std::vector<std::string> out;
  if (j.is_array()) {
    for (const auto& item : j) {
      if (!item.is_string()) break;
      out.push_back(item.get<std::string>());
    }
    if (out.size() == j.size()) return out;
  }
  return absl::DataLossError(absl::StrCat("datastore: corrupt ", what, " column (not a JSON array of strings)"));
}

constexpr absl::string_view kIssuanceColumns =
    "serial, spiffe_id, not_before_us, not_after_us, public_key_sha256, issuer_serial, auth_method, auth_detail, "
    "issued_at_us, minted_by";
constexpr size_t kIssuanceColumnCount = 10;
constexpr absl::string_view kEntryColumns =
    "spiffe_id, parent_id, selectors, allowed_auth, max_ttl_us, dns_names, note, created_at_us";
constexpr absl::string_view kBlockColumns = "spiffe_id, reason, blocked_at_us";

absl::StatusOr<IssuanceRecord> DecodeIssuance(const SqlRow& row) {
  IssuanceRecord r;
  r.serial_hex = ColumnText(row, 0);
  r.spiffe_id = ColumnText(row, 1);
  MESHID_ASSIGN_OR_RETURN(int64_t not_before, ColumnInt(row, 2));
  MESHID_ASSIGN_OR_RETURN(int64_t not_after, ColumnInt(row, 3));
  r.public_key_sha256 = ColumnText(row, 4);
  r.issuer_serial_hex = ColumnText(row, 5);
  r.auth_method = ColumnText(row, 6);
  r.auth_detail = ColumnText(row, 7);
  MESHID_ASSIGN_OR_RETURN(int64_t issued_at, ColumnInt(row, 8));
  r.minted_by = ColumnText(row, 9);
  r.not_before = absl::FromUnixMicros(not_before);
  r.not_after = absl::FromUnixMicros(not_after);
  r.issued_at = absl::FromUnixMicros(issued_at);
  return r;
}

// Decodes an entry from columns [first, first + 8) (kEntryColumns).
absl::StatusOr<RegistryEntry> DecodeEntry(const SqlRow& row, size_t first) {
  RegistryEntry e;
  e.spiffe_id = ColumnText(row, first);
  e.parent_id = ColumnText(row, first + 1);
  MESHID_ASSIGN_OR_RETURN(e.selectors, FromJson(ColumnText(row, first + 2), "registry_entries.selectors"));
  MESHID_ASSIGN_OR_RETURN(e.allowed_auth, FromJson(ColumnText(row, first + 3), "registry_entries.allowed_auth"));
  MESHID_ASSIGN_OR_RETURN(int64_t max_ttl, ColumnInt(row, first + 4));
  MESHID_ASSIGN_OR_RETURN(e.dns_names, FromJson(ColumnText(row, first + 5), "registry_entries.dns_names"));
  e.note = ColumnText(row, first + 6);
  MESHID_ASSIGN_OR_RETURN(int64_t created_at, ColumnInt(row, first + 7));
  e.max_ttl = absl::Microseconds(max_ttl);
  e.created_at = absl::FromUnixMicros(created_at);
  return e;
}

absl::StatusOr<BlockedIdentity> DecodeBlock(const SqlRow& row, size_t first) {
  BlockedIdentity b;
  b.spiffe_id = ColumnText(row, first);
  b.reason = ColumnText(row, first + 1);
  MESHID_ASSIGN_OR_RETURN(int64_t at, ColumnInt(row, first + 2));
  b.blocked_at = absl::FromUnixMicros(at);
  return b;
}

constexpr absl::string_view kPolicyVersionColumns =
    "version, created_at_us, created_by, description, digest, document_count";
constexpr absl::string_view kPolicyStatusColumns =
    "agent_id, proxy_id, reporter, service, ns, applied_version, rejected_version, last_error, connected, "
    "changed_at_us, "
    "reported_at_us, crl_number, trust_bundle";
constexpr size_t kPolicyStatusColumnCount = 13;

absl::StatusOr<PolicyVersionInfo> DecodePolicyVersion(const SqlRow& row) {
  PolicyVersionInfo v;
  MESHID_ASSIGN_OR_RETURN(v.version, ColumnInt(row, 0));
  MESHID_ASSIGN_OR_RETURN(int64_t created_at, ColumnInt(row, 1));
  v.created_at = absl::FromUnixMicros(created_at);
  v.created_by = ColumnText(row, 2);
  v.description = ColumnText(row, 3);
  v.digest = ColumnText(row, 4);
  MESHID_ASSIGN_OR_RETURN(v.document_count, ColumnInt(row, 5));
  return v;
}

absl::StatusOr<PolicyStatusRow> DecodePolicyStatus(const SqlRow& row) {
  PolicyStatusRow r;
  r.agent_id = ColumnText(row, 0);
  r.proxy_id = ColumnText(row, 1);
  r.reporter = ColumnText(row, 2);
  r.service = ColumnText(row, 3);
  r.namespace_ = ColumnText(row, 4);
  MESHID_ASSIGN_OR_RETURN(r.applied_version, ColumnInt(row, 5));
  MESHID_ASSIGN_OR_RETURN(r.rejected_version, ColumnInt(row, 6));
  r.last_error = ColumnText(row, 7);
  MESHID_ASSIGN_OR_RETURN(int64_t connected, ColumnInt(row, 8));
  r.connected = connected != 0;
  MESHID_ASSIGN_OR_RETURN(int64_t changed_at, ColumnInt(row, 9));
  MESHID_ASSIGN_OR_RETURN(int64_t reported_at, ColumnInt(row, 10));
  r.changed_at = absl::FromUnixMicros(changed_at);
  r.reported_at = absl::FromUnixMicros(reported_at);
  MESHID_ASSIGN_OR_RETURN(r.crl_number, ColumnInt(row, 11));
  r.trust_bundle = ColumnText(row, 12);
  return r;
}

constexpr absl::string_view kCaMaterialColumns = "kind, fingerprint, source, recorded_at_us";

std::vector<SqlParam> CaMaterialParams(const CaMaterialRecord& r) {
  return {SqlParam(r.kind), SqlParam(r.fingerprint), SqlParam(r.source), SqlParam(absl::ToUnixMicros(r.recorded_at))};
}

absl::StatusOr<std::optional<CaMaterialRecord>> ReadCaMaterial(SqlTx& tx, absl::string_view kind) {
  MESHID_ASSIGN_OR_RETURN(auto rows,
                          tx.Query(absl::StrCat("SELECT ", kCaMaterialColumns, " FROM ca_material WHERE kind = $1"),
                                   {SqlParam(std::string(kind))}));
  if (rows.empty()) return std::nullopt;
  CaMaterialRecord r;
  r.kind = ColumnText(rows[0], 0);
  r.fingerprint = ColumnText(rows[0], 1);
  r.source = ColumnText(rows[0], 2);
  MESHID_ASSIGN_OR_RETURN(int64_t recorded_at, ColumnInt(rows[0], 3));
  r.recorded_at = absl::FromUnixMicros(recorded_at);
  return r;
}

constexpr absl::string_view kCaRotationColumns =
    "rotation, phase, kind, from_ca_cert_pem, from_cert_chain_pem, from_root_cert_pem, from_key_ref, to_ca_cert_pem, "
    "to_cert_chain_pem, to_root_cert_pem, to_key_ref, actor, forced, prepared_at_us, published_at_us, "
    "activated_at_us, retired_at_us";
constexpr size_t kCaRotationColumnCount = 17;
// Sets every column of kCaRotationColumns from CaRotationParams' $1 to $17.
constexpr absl::string_view kUpdateCaRotation =
    "UPDATE ca_rotation SET rotation = $1, phase = $2, kind = $3, from_ca_cert_pem = $4, from_cert_chain_pem = $5, "
    "from_root_cert_pem = $6, from_key_ref = $7, to_ca_cert_pem = $8, to_cert_chain_pem = $9, to_root_cert_pem = $10, "
    "to_key_ref = $11, actor = $12, forced = $13, prepared_at_us = $14, published_at_us = $15, "
    "activated_at_us = $16, retired_at_us = $17";

// A phase's time: NULL while the phase is not reached (absl::InfinitePast()).
SqlParam PhaseTimeParam(absl::Time at) {
  if (at == absl::InfinitePast()) return nullptr;
  return absl::ToUnixMicros(at);
}

absl::StatusOr<absl::Time> DecodePhaseTime(const SqlRow& row, size_t i) {
  if (i < row.size() && !row[i].has_value()) return absl::InfinitePast();
  MESHID_ASSIGN_OR_RETURN(int64_t at, ColumnInt(row, i));
  return absl::FromUnixMicros(at);
}

// In the order of kCaRotationColumns.
std::vector<SqlParam> CaRotationParams(const CaRotationRecord& r) {
  return {SqlParam(r.rotation),
          SqlParam(std::string(CaRotationPhaseName(r.phase))),
          SqlParam(r.kind),
          SqlParam(r.from.ca_cert_pem),
          SqlParam(r.from.cert_chain_pem),
          SqlParam(r.from.root_cert_pem),
          SqlParam(r.from.key_ref),
          SqlParam(r.to.ca_cert_pem),
          SqlParam(r.to.cert_chain_pem),
          SqlParam(r.to.root_cert_pem),
          SqlParam(r.to.key_ref),
          SqlParam(r.actor),
          SqlParam(int64_t{r.forced ? 1 : 0}),
          SqlParam(absl::ToUnixMicros(r.prepared_at)),
          PhaseTimeParam(r.published_at),
          PhaseTimeParam(r.activated_at),
          PhaseTimeParam(r.retired_at)};
}

absl::StatusOr<std::optional<CaRotationRecord>> ReadCaRotation(SqlTx& tx) {
  MESHID_ASSIGN_OR_RETURN(auto rows, tx.Query(absl::StrCat("SELECT ", kCaRotationColumns, " FROM ca_rotation")));
  if (rows.empty()) return std::nullopt;
  if (rows.size() != 1) return absl::InternalError("datastore: the ca_rotation table must have at most one row");
  const SqlRow& row = rows[0];
  CaRotationRecord r;
  MESHID_ASSIGN_OR_RETURN(r.rotation, ColumnInt(row, 0));
  std::optional<CaRotationPhase> phase = ParseCaRotationPhase(ColumnText(row, 1));
  if (!phase.has_value()) {
    return absl::DataLossError(
        absl::StrCat("datastore: corrupt ca_rotation.phase column (\"", absl::CHexEscape(ColumnText(row, 1)), "\")"));
  }
  r.phase = *phase;
  r.kind = ColumnText(row, 2);
  r.from = StoredCaMaterial{ColumnText(row, 3), ColumnText(row, 4), ColumnText(row, 5), ColumnText(row, 6)};
  r.to = StoredCaMaterial{ColumnText(row, 7), ColumnText(row, 8), ColumnText(row, 9), ColumnText(row, 10)};
  r.actor = ColumnText(row, 11);
  MESHID_ASSIGN_OR_RETURN(int64_t forced, ColumnInt(row, 12));
  r.forced = forced != 0;
  MESHID_ASSIGN_OR_RETURN(int64_t prepared_at, ColumnInt(row, 13));
  r.prepared_at = absl::FromUnixMicros(prepared_at);
  MESHID_ASSIGN_OR_RETURN(r.published_at, DecodePhaseTime(row, 14));
  MESHID_ASSIGN_OR_RETURN(r.activated_at, DecodePhaseTime(row, 15));
  MESHID_ASSIGN_OR_RETURN(r.retired_at, DecodePhaseTime(row, 16));
  return r;
}

constexpr absl::string_view kRevocationColumns =
    "serial, spiffe_id, issuer_serial, not_after_us, reason, revoked_by, revoked_at_us";

absl::StatusOr<RevocationRecord> DecodeRevocation(const SqlRow& row) {
  RevocationRecord r;
  r.serial_hex = ColumnText(row, 0);
  r.spiffe_id = ColumnText(row, 1);
  r.issuer_serial_hex = ColumnText(row, 2);
  MESHID_ASSIGN_OR_RETURN(int64_t not_after, ColumnInt(row, 3));
  r.not_after = absl::FromUnixMicros(not_after);
  MESHID_ASSIGN_OR_RETURN(r.reason, ParseRevocationReason(ColumnText(row, 4)));
  r.revoked_by = ColumnText(row, 5);
  MESHID_ASSIGN_OR_RETURN(int64_t revoked_at, ColumnInt(row, 6));
  r.revoked_at = absl::FromUnixMicros(revoked_at);
  return r;
}

// "$<first>, $<first+1>, ..." for `n` parameters.
std::string Placeholders(size_t first, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) absl::StrAppend(&out, i == 0 ? "$" : ", $", first + i);
  return out;
}

// Byte order of (kind, namespace, name): the same on both backends, whatever PostgreSQL's
// collation (snapshot digests depend on it).
auto PolicyKey(const StoredPolicyDocument& d) { return std::tie(d.kind, d.namespace_, d.name); }

// Entries in byte order of (spiffe_id, parent_id), likewise independent of the collation.
void SortEntries(std::vector<RegistryEntry>& entries) {
  std::sort(entries.begin(), entries.end(), [](const RegistryEntry& a, const RegistryEntry& b) {
    return std::tie(a.spiffe_id, a.parent_id) < std::tie(b.spiffe_id, b.parent_id);
  });
}

// How an entry is named in messages.
std::string DescribeEntry(absl::string_view spiffe_id, absl::string_view parent_id) {
  if (parent_id.empty()) return absl::StrCat("direct registry entry for ", spiffe_id);
  return absl::StrCat("registry entry for ", spiffe_id, " with parent ", parent_id);
}

class SqlStore final : public Store {
 public:
  explicit SqlStore(std::unique_ptr<sql::Database> db) : db_(std::move(db)) {}

  std::string backend() const override { return db_->backend(); }
  std::string description() const override { return db_->description(); }

  absl::Status RecordIssuancesAt(absl::Span<const IssuanceRecord> records,
                                 std::optional<int64_t> registry_generation) override {
    std::set<absl::string_view> serials;
    for (size_t i = 0; i < records.size(); ++i) {
      absl::Status s = ValidateIssuanceRecord(records[i]);
      if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat("records[", i, "].", s.message()));
      if (!serials.insert(records[i].serial_hex).second) {
        return absl::AlreadyExistsError(
            absl::StrCat("serial ", records[i].serial_hex, " appears twice in one batch; nothing was written"));
      }
    }
    if (records.empty()) return absl::OkStatus();
    const TxMode mode = records.size() <= kInsertChunk ? TxMode::kWriteStatement : TxMode::kWrite;
    absl::Status status = db_->Transact(mode, [&](SqlTx& tx) -> absl::Status {
      for (size_t start = 0; start < records.size(); start += kInsertChunk) {
        const size_t n = std::min(kInsertChunk, records.size() - start);
        MESHID_ASSIGN_OR_RETURN(int64_t written, InsertIssuances(tx, records.subspan(start, n), registry_generation));
        // The generation check holds for every row of the statement or for none.
        if (registry_generation.has_value() && written == 0) {
          return absl::AbortedError(absl::StrCat("the identity registry changed since generation ",
                                                 *registry_generation, "; nothing of this batch of ", records.size(),
                                                 " was written"));
        }
      }
      return absl::OkStatus();
    });
    if (absl::IsAlreadyExists(status)) return DescribeDuplicate(records, status);
    return status;
  }

  absl::StatusOr<std::vector<IssuanceRecord>> ListIssuances(const IssuanceQuery& query) override {
    std::string statement = absl::StrCat("SELECT ", kIssuanceColumns, " FROM issuances WHERE 1 = 1");
    std::vector<SqlParam> params;
    if (query.spiffe_id.has_value()) {
      params.emplace_back(*query.spiffe_id);
      absl::StrAppend(&statement, " AND spiffe_id = $", params.size());
    }
    if (query.serial_hex.has_value()) {
      params.emplace_back(*query.serial_hex);
      absl::StrAppend(&statement, " AND serial = $", params.size());
    }
    if (query.expired_only) {
      MESHID_RETURN_IF_ERROR(CheckFiniteTime("now", query.now));
      params.emplace_back(absl::ToUnixMicros(query.now));
      absl::StrAppend(&statement, " AND not_after_us <= $", params.size());
    }
    absl::StrAppend(&statement, " ORDER BY issued_at_us DESC, serial DESC");
    if (query.limit > 0) {
      params.emplace_back(static_cast<int64_t>(std::min<size_t>(query.limit, INT64_MAX)));
      absl::StrAppend(&statement, " LIMIT $", params.size());
    }
    std::vector<IssuanceRecord> out;
    MESHID_RETURN_IF_ERROR(db_->Transact(TxMode::kRead, [&](SqlTx& tx) -> absl::Status {
      out.clear();
      MESHID_ASSIGN_OR_RETURN(auto rows, tx.Query(statement, params));
      out.reserve(rows.size());
      for (const SqlRow& row : rows) {
        MESHID_ASSIGN_OR_RETURN(auto record, DecodeIssuance(row));
        out.push_back(std::move(record));
      }
      return absl::OkStatus();
    }));
    return out;
  }

  absl::StatusOr<int64_t> PruneExpiredBefore(absl::Time cutoff, int64_t limit) override {
    MESHID_RETURN_IF_ERROR(CheckFiniteTime("cutoff", cutoff));
    if (limit <= 0) return absl::InvalidArgumentError("limit: must be positive");
    int64_t deleted = 0;
    MESHID_RETURN_IF_ERROR(db_->Transact(TxMode::kWrite, [&](SqlTx& tx) -> absl::Status {
      MESHID_ASSIGN_OR_RETURN(
          deleted,
          tx.Exec("DELETE FROM issuances WHERE serial IN (SELECT serial FROM issuances WHERE not_after_us < $1 "
                  "ORDER BY not_after_us LIMIT $2)",
                  {SqlParam(absl::ToUnixMicros(cutoff)), SqlParam(limit)}));
      MESHID_ASSIGN_OR_RETURN(
          int64_t revocations,
          tx.Exec("DELETE FROM revocations WHERE serial IN (SELECT serial FROM revocations WHERE not_after_us < $1 "
                  "ORDER BY not_after_us LIMIT $2)",
                  {SqlParam(absl::ToUnixMicros(cutoff)), SqlParam(limit)}));
      deleted = std::max(deleted, revocations);
      return absl::OkStatus();
    }));
    return deleted;
  }

  absl::Status CreateEntry(const RegistryEntry& entry) override {
    MESHID_RETURN_IF_ERROR(ValidateRegistryEntry(entry));
    absl::Status status = db_->Transact(TxMode::kWrite, [&](SqlTx& tx) -> absl::Status {
      MESHID_RETURN_IF_ERROR(
          tx.Exec(absl::StrCat("INSERT INTO registry_entries (", kEntryColumns, ") VALUES (", Placeholders(1, 8), ")"),
                  {SqlParam(entry.spiffe_id), SqlParam(entry.parent_id), SqlParam(ToJson(entry.selectors)),
                   SqlParam(ToJson(entry.allowed_auth)), SqlParam(absl::ToInt64Microseconds(entry.max_ttl)),
                   SqlParam(ToJson(entry.dns_names)), SqlParam(entry.note),
                   SqlParam(absl::ToUnixMicros(entry.created_at))})
              .status());
      return tx.Exec(kBumpRegistryGeneration).status();
    });
    if (absl::IsAlreadyExists(status)) {
      return absl::AlreadyExistsError(
          absl::StrCat("a ", DescribeEntry(entry.spiffe_id, entry.parent_id), " already exists"));
    }
    return status;
  }

  absl::StatusOr<std::vector<RegistryEntry>> ListEntries(const std::optional<std::string>& parent_id) override {
    std::string statement = absl::StrCat("SELECT ", kEntryColumns, " FROM registry_entries");
    std::vector<SqlParam> params;
    if (parent_id.has_value()) {
      params.emplace_back(*parent_id);
      statement += " WHERE parent_id = $1";
    }
    std::vector<RegistryEntry> out;
    MESHID_RETURN_IF_ERROR(db_->Transact(TxMode::kRead, [&](SqlTx& tx) -> absl::Status {
      out.clear();
      MESHID_ASSIGN_OR_RETURN(auto rows, tx.Query(statement, params));
      out.reserve(rows.size());
      for (const SqlRow& row : rows) {
        MESHID_ASSIGN_OR_RETURN(auto entry, DecodeEntry(row, 0));
        out.push_back(std::move(entry));
      }
      return absl::OkStatus();
    }));
    SortEntries(out);
    return out;
  }

  absl::Status DeleteEntry(absl::string_view spiffe_id, absl::string_view parent_id) override {
    return DeleteOne("registry_entries", "spiffe_id = $1 AND parent_id = $2",
                     {SqlParam(std::string(spiffe_id)), SqlParam(std::string(parent_id))},
                     absl::StrCat("no ", DescribeEntry(spiffe_id, parent_id)));
  }

  absl::StatusOr<int64_t> GetRegistryGeneration() override {
    int64_t generation = 0;
    MESHID_RETURN_IF_ERROR(db_->Transact(TxMode::kReadStatement, [&](SqlTx& tx) -> absl::Status {
      MESHID_ASSIGN_OR_RETURN(auto rows, tx.Query("SELECT generation FROM registry_generation"));
      if (rows.size() != 1) return absl::InternalError("datastore: the registry_generation table must have one row");
      MESHID_ASSIGN_OR_RETURN(generation, ColumnInt(rows[0], 0));
      return absl::OkStatus();
    }));
    return generation;
  }

  absl::Status Block(absl::string_view spiffe_id, absl::string_view reason, absl::Time at) override {
    MESHID_RETURN_IF_ERROR(CheckBlock(spiffe_id, reason, at));
    return db_->Transact(TxMode::kWrite, [&](SqlTx& tx) { return BlockIn(tx, spiffe_id, reason, at); });
  }

  absl::Status Unblock(absl::string_view spiffe_id) override {
    return DeleteOne("blocked_identities", "spiffe_id = $1", {SqlParam(std::string(spiffe_id))},
                     absl::StrCat(spiffe_id, " is not blocked"));
  }

  absl::StatusOr<std::vector<BlockedIdentity>> ListBlocked() override {
    std::vector<BlockedIdentity> out;
    MESHID_RETURN_IF_ERROR(db_->Transact(TxMode::kRead, [&](SqlTx& tx) -> absl::Status {
      out.clear();
      MESHID_ASSIGN_OR_RETURN(
          auto rows, tx.Query(absl::StrCat("SELECT ", kBlockColumns, " FROM blocked_identities ORDER BY spiffe_id")));
      for (const SqlRow& row : rows) {
        MESHID_ASSIGN_OR_RETURN(auto block, DecodeBlock(row, 0));
        out.push_back(std::move(block));
      }
      return absl::OkStatus();
    }));
    return out;
  }

  absl::StatusOr<IdentityStatus> GetIdentityStatus(absl::string_view spiffe_id) override {
    const std::vector<SqlParam> params = {SqlParam(std::string(spiffe_id))};
    IdentityStatus status;
    MESHID_RETURN_IF_ERROR(db_->Transact(TxMode::kReadStatement, [&](SqlTx& tx) -> absl::Status {
      status = IdentityStatus();
      MESHID_ASSIGN_OR_RETURN(auto rows, tx.Query(kIdentityStatusQuery, params));
      if (rows.empty()) return absl::InternalError("datastore: the registry_generation table must have one row");
      MESHID_ASSIGN_OR_RETURN(status.registry_generation, ColumnInt(rows[0], 0));
      if (rows[0][kStatusBlockColumn].has_value()) {
        MESHID_ASSIGN_OR_RETURN(status.blocked, DecodeBlock(rows[0], kStatusBlockColumn));
      }
      for (const SqlRow& row : rows) {
        if (!row[kStatusEntryColumn].has_value()) continue;  // no entry at all
        MESHID_ASSIGN_OR_RETURN(RegistryEntry entry, DecodeEntry(row, kStatusEntryColumn));
        if (entry.parent_id.empty()) {
          status.entry = std::move(entry);
        } else {
          status.node_entries.push_back(std::move(entry));
        }
      }
      return absl::OkStatus();
    }));
    SortEntries(status.node_entries);
    return status;
  }

  // ---- RevocationStore ----

  absl::StatusOr<RevocationOutcome> Revoke(absl::Span<const std::string> serials,
                                           const RevocationRequest& request) override {
    MESHID_RETURN_IF_ERROR(ValidateRevocationRequest(request));
    std::set<std::string> wanted;
    for (size_t i = 0; i < serials.size(); ++i) {
      MESHID_RETURN_IF_ERROR(CheckSerialHex(absl::StrCat("serials[", i, "]"), serials[i]));
      wanted.insert(serials[i]);
    }
    const std::vector<std::string> sorted(wanted.begin(), wanted.end());
    RevocationOutcome outcome;
    MESHID_RETURN_IF_ERROR(db_->Transact(TxMode::kWrite, [&](SqlTx& tx) -> absl::Status {
      outcome = RevocationOutcome();
      std::set<std::string> unknown, to_revoke;
      for (size_t start = 0; start < sorted.size(); start += kInsertChunk) {
        const auto chunk = absl::MakeConstSpan(sorted).subspan(start, kInsertChunk);
        const std::vector<SqlParam> params(chunk.begin(), chunk.end());
        std::set<std::string> revoked_before;
        MESHID_ASSIGN_OR_RETURN(auto revoked_rows,
                                tx.Query(absl::StrCat("SELECT serial FROM revocations WHERE serial IN (",
                                                      Placeholders(1, chunk.size()), ")"),
                                         params));
        for (const SqlRow& row : revoked_rows) revoked_before.insert(ColumnText(row, 0));
        MESHID_ASSIGN_OR_RETURN(auto ledger_rows,
                                tx.Query(absl::StrCat("SELECT serial, not_after_us FROM issuances WHERE serial IN (",
                                                      Placeholders(1, chunk.size()), ")"),
                                         params));
        std::map<std::string, int64_t> not_after;
        for (const SqlRow& row : ledger_rows) {
          MESHID_ASSIGN_OR_RETURN(not_after[ColumnText(row, 0)], ColumnInt(row, 1));
        }
        for (const std::string& serial : chunk) {
          if (revoked_before.contains(serial)) continue;
          auto it = not_after.find(serial);
          if (it == not_after.end()) {
            unknown.insert(serial);
          } else if (it->second <= absl::ToUnixMicros(request.at)) {
            outcome.expired.push_back(serial);
          } else {
            to_revoke.insert(serial);
          }
        }
      }
      if (!unknown.empty()) {
        return absl::NotFoundError(
            absl::StrCat("the ledger holds no certificate with serial ", absl::StrJoin(unknown, ", "),
                         " (never issued by this CA, or expired and pruned); nothing was revoked"));
      }
      const std::vector<std::string> targets(to_revoke.begin(), to_revoke.end());
      for (size_t start = 0; start < targets.size(); start += kInsertChunk) {
        const auto chunk = absl::MakeConstSpan(targets).subspan(start, kInsertChunk);
        std::vector<SqlParam> params = RequestParams(request);
        params.insert(params.end(), chunk.begin(), chunk.end());
        MESHID_RETURN_IF_ERROR(
            InsertRevocations(tx, absl::StrCat("serial IN (", Placeholders(4, chunk.size()), ")"), params, outcome));
      }
      // Read after the inserts: a revocation another server committed meanwhile counts too.
      for (size_t start = 0; start < sorted.size(); start += kInsertChunk) {
        const auto chunk = absl::MakeConstSpan(sorted).subspan(start, kInsertChunk);
        MESHID_RETURN_IF_ERROR(CollectAlreadyRevoked(tx,
                                                     absl::StrCat("serial IN (", Placeholders(1, chunk.size()), ")"),
                                                     std::vector<SqlParam>(chunk.begin(), chunk.end()), outcome));
      }
      return FinishRevocation(tx, outcome);
    }));
    return outcome;
  }

  absl::StatusOr<RevocationOutcome> RevokeIdentity(absl::string_view spiffe_id,
                                                   const RevocationRequest& request) override {
    MESHID_RETURN_IF_ERROR(CheckSpiffeIdField("spiffe_id", spiffe_id));
    MESHID_RETURN_IF_ERROR(ValidateRevocationRequest(request));
    RevocationOutcome outcome;
    MESHID_RETURN_IF_ERROR(db_->Transact(TxMode::kWrite, [&](SqlTx& tx) -> absl::Status {
      outcome = RevocationOutcome();
      return RevokeIdentityIn(tx, spiffe_id, request, outcome);
    }));
    return outcome;
  }

  absl::StatusOr<RevocationOutcome> BlockAndRevoke(absl::string_view spiffe_id, absl::string_view block_reason,
                                                   const RevocationRequest& request) override {
    MESHID_RETURN_IF_ERROR(CheckBlock(spiffe_id, block_reason, request.at));
    MESHID_RETURN_IF_ERROR(ValidateRevocationRequest(request));
    RevocationOutcome outcome;
    MESHID_RETURN_IF_ERROR(db_->Transact(TxMode::kWrite, [&](SqlTx& tx) -> absl::Status {
      outcome = RevocationOutcome();
      MESHID_RETURN_IF_ERROR(BlockIn(tx, spiffe_id, block_reason, request.at));
      return RevokeIdentityIn(tx, spiffe_id, request, outcome);
    }));
    return outcome;
  }

  absl::StatusOr<int64_t> CrlNumber() override {
    int64_t number = 0;
    MESHID_RETURN_IF_ERROR(db_->Transact(TxMode::kReadStatement, [&](SqlTx& tx) -> absl::Status {
      MESHID_ASSIGN_OR_RETURN(number, ReadCrlNumber(tx));
      return absl::OkStatus();
    }));
    return number;
  }

  absl::StatusOr<RevocationSnapshot> ListRevocations(absl::Time now) override {
    MESHID_RETURN_IF_ERROR(CheckFiniteTime("now", now));
    RevocationSnapshot snapshot;
    MESHID_RETURN_IF_ERROR(db_->Transact(TxMode::kRead, [&](SqlTx& tx) -> absl::Status {
      snapshot = RevocationSnapshot();
      MESHID_ASSIGN_OR_RETURN(snapshot.crl_number, ReadCrlNumber(tx));
      MESHID_ASSIGN_OR_RETURN(auto rows,
                              tx.Query(absl::StrCat("SELECT ", kRevocationColumns,
                                                    " FROM revocations WHERE not_after_us > $1 ORDER BY serial"),
                                       {SqlParam(absl::ToUnixMicros(now))}));
      snapshot.revocations.reserve(rows.size());
      for (const SqlRow& row : rows) {
        MESHID_ASSIGN_OR_RETURN(auto record, DecodeRevocation(row));
        snapshot.revocations.push_back(std::move(record));
      }
      return absl::OkStatus();
    }));
    return snapshot;
  }

  // ---- CaMaterialStore ----

  absl::StatusOr<CaMaterialRecord> RecordOrGetCaMaterial(const CaMaterialRecord& candidate) override {
    MESHID_RETURN_IF_ERROR(ValidateCaMaterialRecord(candidate));
    CaMaterialRecord in_force;
    MESHID_RETURN_IF_ERROR(db_->Transact(TxMode::kWrite, [&](SqlTx& tx) -> absl::Status {
      // The primary key decides between servers starting at once: one insert wins, every other
      // reads the winner's row.
      MESHID_RETURN_IF_ERROR(tx.Exec(absl::StrCat("INSERT INTO ca_material (", kCaMaterialColumns, ") VALUES (",
                                                  Placeholders(1, 4), ") ON CONFLICT (kind) DO NOTHING"),
                                     CaMaterialParams(candidate))
                                 .status());
      MESHID_ASSIGN_OR_RETURN(std::optional<CaMaterialRecord> row, ReadCaMaterial(tx, candidate.kind));
      if (!row.has_value()) return absl::InternalError("datastore: ca_material row missing after its insert");
      in_force = *std::move(row);
      return absl::OkStatus();
    }));
    return in_force;
  }

  absl::StatusOr<CaMaterialRecord> ReplaceCaMaterial(absl::string_view expected_fingerprint,
                                                     const CaMaterialRecord& replacement) override {
    MESHID_RETURN_IF_ERROR(ValidateCaMaterialRecord(replacement));
    CaMaterialRecord in_force;
    MESHID_RETURN_IF_ERROR(db_->Transact(TxMode::kWrite, [&](SqlTx& tx) -> absl::Status {
      std::vector<SqlParam> params = CaMaterialParams(replacement);
      params.emplace_back(std::string(expected_fingerprint));
      MESHID_RETURN_IF_ERROR(tx.Exec("UPDATE ca_material SET fingerprint = $2, source = $3, recorded_at_us = $4 "
                                     "WHERE kind = $1 AND fingerprint = $5",
                                     params)
                                 .status());
      MESHID_ASSIGN_OR_RETURN(std::optional<CaMaterialRecord> row, ReadCaMaterial(tx, replacement.kind));
      if (!row.has_value()) {
        return absl::NotFoundError(absl::StrCat("the store records no ", replacement.kind, " to replace"));
      }
      in_force = *std::move(row);
      return absl::OkStatus();
    }));
    return in_force;
  }

  absl::StatusOr<std::optional<CaMaterialRecord>> GetCaMaterial(absl::string_view kind) override {
    std::optional<CaMaterialRecord> out;
    MESHID_RETURN_IF_ERROR(db_->Transact(TxMode::kReadStatement, [&](SqlTx& tx) -> absl::Status {
      MESHID_ASSIGN_OR_RETURN(out, ReadCaMaterial(tx, kind));
      return absl::OkStatus();
    }));
    return out;
  }

  // ---- CaRotationStore ----

  absl::StatusOr<std::optional<CaRotationRecord>> GetCaRotation() override {
    std::optional<CaRotationRecord> out;
    MESHID_RETURN_IF_ERROR(db_->Transact(TxMode::kReadStatement, [&](SqlTx& tx) -> absl::Status {
      MESHID_ASSIGN_OR_RETURN(out, ReadCaRotation(tx));
      return absl::OkStatus();
    }));
    return out;
  }

  absl::StatusOr<CaRotationRecord> ReplaceCaRotation(const std::optional<CaRotationKey>& expected,
                                                     const CaRotationRecord& next) override {
    MESHID_RETURN_IF_ERROR(ValidateCaRotationRecord(next));
    if (expected.has_value() && *CaRotationPhaseName(expected->phase) == '\0') {
      return absl::InvalidArgumentError(
          absl::StrCat("expected.phase: ", static_cast<int>(expected->phase), " is not a CA rotation phase"));
    }
    CaRotationRecord in_force;
    MESHID_RETURN_IF_ERROR(db_->Transact(TxMode::kWrite, [&](SqlTx& tx) -> absl::Status {
      std::vector<SqlParam> params = CaRotationParams(next);
      int64_t written = 0;
      if (!expected.has_value()) {
        // The primary key decides between two first prepares at once: one insert wins, the
        // other reads the winner's row.
        MESHID_ASSIGN_OR_RETURN(
            written, tx.Exec(absl::StrCat("INSERT INTO ca_rotation (id, ", kCaRotationColumns, ") VALUES (1, ",
                                          Placeholders(1, kCaRotationColumnCount), ") ON CONFLICT (id) DO NOTHING"),
                             params));
      } else {
        // The key is checked in the UPDATE itself: on PostgreSQL a concurrent one waits for the
        // row lock and then re-checks its WHERE against the row the winner committed, so only
        // one of them moves the record (on SQLite writers are serialized anyway).
        params.emplace_back(expected->rotation);
        params.emplace_back(std::string(CaRotationPhaseName(expected->phase)));
        MESHID_ASSIGN_OR_RETURN(
            written, tx.Exec(absl::StrCat(kUpdateCaRotation, " WHERE id = 1 AND rotation = $",
                                          kCaRotationColumnCount + 1, " AND phase = $", kCaRotationColumnCount + 2),
                             params));
      }
      if (written == 1) {
        in_force = next;
        return absl::OkStatus();
      }
      MESHID_ASSIGN_OR_RETURN(std::optional<CaRotationRecord> row, ReadCaRotation(tx));
      if (!row.has_value() && !expected.has_value()) {
        return absl::InternalError("datastore: ca_rotation row missing after its insert");
      }
      if (!row.has_value()) {
        return absl::NotFoundError(absl::StrCat("the store records no CA rotation to replace (expected rotation ",
                                                expected->rotation, ", ", CaRotationPhaseName(expected->phase), ")"));
      }
      in_force = *std::move(row);
      return absl::OkStatus();
    }));
    return in_force;
  }

  absl::StatusOr<int64_t> CountUnexpiredIssuedByOthers(absl::string_view issuer_serial_hex, absl::Time now) override {
    MESHID_RETURN_IF_ERROR(CheckSerialHex("issuer_serial_hex", issuer_serial_hex));
    MESHID_RETURN_IF_ERROR(CheckFiniteTime("now", now));
    int64_t count = 0;
    MESHID_RETURN_IF_ERROR(db_->Transact(TxMode::kReadStatement, [&](SqlTx& tx) -> absl::Status {
      MESHID_ASSIGN_OR_RETURN(auto rows,
                              tx.Query("SELECT COUNT(*) FROM issuances WHERE not_after_us > $1 AND issuer_serial <> $2",
                                       {SqlParam(absl::ToUnixMicros(now)), SqlParam(std::string(issuer_serial_hex))}));
      if (rows.size() != 1) return absl::InternalError("datastore: COUNT(*) returned no row");
      MESHID_ASSIGN_OR_RETURN(count, ColumnInt(rows[0], 0));
      return absl::OkStatus();
    }));
    return count;
  }

  absl::StatusOr<int> SchemaVersion() override { return sql::ReadSchemaVersion(*db_); }

  absl::StatusOr<int64_t> PolicyHeadVersion() override {
    int64_t head = 0;
    MESHID_RETURN_IF_ERROR(db_->Transact(TxMode::kRead, [&](SqlTx& tx) -> absl::Status {
      MESHID_ASSIGN_OR_RETURN(head, ReadPolicyHead(tx));
      return absl::OkStatus();
    }));
    return head;
  }

  absl::StatusOr<PolicyVersion> GetPolicyVersion(int64_t version) override {
    PolicyVersion out;
    bool found = false;
    std::vector<SqlParam> params = {SqlParam(version)};
    MESHID_RETURN_IF_ERROR(db_->Transact(TxMode::kRead, [&](SqlTx& tx) -> absl::Status {
      out = PolicyVersion{};
      MESHID_ASSIGN_OR_RETURN(
          auto rows,
          tx.Query(absl::StrCat("SELECT ", kPolicyVersionColumns, " FROM policy_versions WHERE version = $1"), params));
      found = !rows.empty();
      if (!found) return absl::OkStatus();
      MESHID_ASSIGN_OR_RETURN(out.info, DecodePolicyVersion(rows[0]));
      MESHID_ASSIGN_OR_RETURN(auto docs,
                              tx.Query("SELECT kind, ns, name, yaml, source FROM policy_documents WHERE "
                                       "first_version <= $1 AND (last_version IS NULL OR last_version >= $1)",
                                       params));
      out.documents.reserve(docs.size());
      for (const SqlRow& row : docs) {
        out.documents.push_back(StoredPolicyDocument{ColumnText(row, 0), ColumnText(row, 1), ColumnText(row, 2),
                                                     ColumnText(row, 3), ColumnText(row, 4)});
      }
      return absl::OkStatus();
    }));
    if (!found) return absl::NotFoundError(absl::StrCat("there is no policy version ", version));
    std::sort(out.documents.begin(), out.documents.end(),
              [](const StoredPolicyDocument& a, const StoredPolicyDocument& b) { return PolicyKey(a) < PolicyKey(b); });
    if (static_cast<int64_t>(out.documents.size()) != out.info.document_count) {
      return absl::DataLossError(absl::StrCat("datastore: policy version ", version, " should have ",
                                              out.info.document_count, " documents but ", out.documents.size(),
                                              " were found"));
    }
    return out;
  }

  absl::StatusOr<std::vector<PolicyVersionInfo>> ListPolicyVersions(size_t limit) override {
    std::string statement =
        absl::StrCat("SELECT ", kPolicyVersionColumns, " FROM policy_versions ORDER BY version DESC");
    std::vector<SqlParam> params;
    if (limit > 0) {
      params.emplace_back(static_cast<int64_t>(std::min<size_t>(limit, INT64_MAX)));
      statement += " LIMIT $1";
    }
    std::vector<PolicyVersionInfo> out;
    MESHID_RETURN_IF_ERROR(db_->Transact(TxMode::kRead, [&](SqlTx& tx) -> absl::Status {
      out.clear();
      MESHID_ASSIGN_OR_RETURN(auto rows, tx.Query(statement, params));
      for (const SqlRow& row : rows) {
        MESHID_ASSIGN_OR_RETURN(auto info, DecodePolicyVersion(row));
        out.push_back(std::move(info));
      }
      return absl::OkStatus();
    }));
    return out;
  }

  absl::StatusOr<int64_t> CommitPolicyVersion(int64_t base_version, const PolicyVersionInfo& info,
                                              absl::Span<const StoredPolicyDocument> documents) override {
    if (base_version < 0) return absl::InvalidArgumentError("base_version: must not be negative");
    MESHID_RETURN_IF_ERROR(CheckFiniteTime("created_at", info.created_at));
    MESHID_RETURN_IF_ERROR(CheckStoredText("created_by", info.created_by, kMaxStoredText, /*required=*/false));
    MESHID_RETURN_IF_ERROR(CheckStoredText("description", info.description, kMaxStoredText, /*required=*/false));
    MESHID_RETURN_IF_ERROR(CheckStoredText("digest", info.digest, 256, /*required=*/false));
    std::map<std::tuple<std::string, std::string, std::string>, const StoredPolicyDocument*> wanted;
    for (size_t i = 0; i < documents.size(); ++i) {
      const StoredPolicyDocument& d = documents[i];
      absl::Status s = ValidatePolicyDocument(d);
      if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat("documents[", i, "].", s.message()));
      if (!wanted.emplace(std::make_tuple(d.kind, d.namespace_, d.name), &d).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("documents[", i, "]: ", d.kind, " ", d.namespace_, "/", d.name, " is listed twice"));
      }
    }
    const int64_t version = base_version + 1;
    absl::Status status = db_->Transact(TxMode::kWrite, [&](SqlTx& tx) -> absl::Status {
      MESHID_ASSIGN_OR_RETURN(int64_t head, ReadPolicyHead(tx));
      if (head != base_version) return Concurrent(base_version, head);
      // The version row first: a concurrent commit of the same number waits here and then
      // fails on the primary key before it touched any document.
      MESHID_RETURN_IF_ERROR(
          tx.Exec(absl::StrCat("INSERT INTO policy_versions (", kPolicyVersionColumns,
                               ") VALUES ($1, $2, $3, $4, $5, $6)"),
                  {SqlParam(version), SqlParam(absl::ToUnixMicros(info.created_at)), SqlParam(info.created_by),
                   SqlParam(info.description), SqlParam(info.digest), SqlParam(static_cast<int64_t>(documents.size()))})
              .status());
      MESHID_ASSIGN_OR_RETURN(auto current,
                              tx.Query("SELECT kind, ns, name, yaml FROM policy_documents WHERE last_version IS NULL"));
      std::set<std::tuple<std::string, std::string, std::string>> unchanged;
      for (const SqlRow& row : current) {
        auto key = std::make_tuple(ColumnText(row, 0), ColumnText(row, 1), ColumnText(row, 2));
        auto it = wanted.find(key);
        if (it != wanted.end() && it->second->yaml == ColumnText(row, 3)) {
          unchanged.insert(key);
          continue;
        }
        MESHID_RETURN_IF_ERROR(tx.Exec("UPDATE policy_documents SET last_version = $1 WHERE kind = $2 AND ns = $3 AND "
                                       "name = $4 AND last_version IS NULL",
                                       {SqlParam(base_version), SqlParam(std::get<0>(key)), SqlParam(std::get<1>(key)),
                                        SqlParam(std::get<2>(key))})
                                   .status());
      }
      std::vector<const StoredPolicyDocument*> inserts;
      for (const auto& [key, doc] : wanted) {
        if (!unchanged.contains(key)) inserts.push_back(doc);
      }
      for (size_t start = 0; start < inserts.size(); start += kInsertChunk) {
        size_t n = std::min(kInsertChunk, inserts.size() - start);
        std::string statement =
            "INSERT INTO policy_documents (kind, ns, name, first_version, last_version, yaml, source) VALUES ";
        std::vector<SqlParam> params;
        for (size_t i = 0; i < n; ++i) {
          const StoredPolicyDocument& d = *inserts[start + i];
          size_t p = i * 6;
          absl::StrAppend(&statement, i == 0 ? "" : ", ", "($", p + 1, ", $", p + 2, ", $", p + 3, ", $", p + 4,
                          ", NULL, $", p + 5, ", $", p + 6, ")");
          params.emplace_back(d.kind);
          params.emplace_back(d.namespace_);
          params.emplace_back(d.name);
          params.emplace_back(version);
          params.emplace_back(d.yaml);
          params.emplace_back(d.source);
        }
        MESHID_RETURN_IF_ERROR(tx.Exec(statement, params).status());
      }
      return absl::OkStatus();
    });
    if (absl::IsAlreadyExists(status)) return Concurrent(base_version, version);
    if (!status.ok()) return status;
    return version;
  }

  absl::Status ReplacePolicyStatus(absl::string_view agent_id, absl::Span<const PolicyStatusRow> rows) override {
    MESHID_RETURN_IF_ERROR(CheckStoredText("agent_id", agent_id, 1024, /*required=*/true));
    std::set<absl::string_view> proxies;
    for (size_t i = 0; i < rows.size(); ++i) {
      absl::Status s = ValidatePolicyStatusRow(agent_id, rows[i]);
      if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat("rows[", i, "].", s.message()));
      if (!proxies.insert(rows[i].proxy_id).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("rows[", i, "].proxy_id: \"", rows[i].proxy_id, "\" is listed twice"));
      }
    }
    return db_->Transact(TxMode::kWrite, [&](SqlTx& tx) -> absl::Status {
      MESHID_RETURN_IF_ERROR(
          tx.Exec("DELETE FROM policy_status WHERE agent_id = $1", {SqlParam(std::string(agent_id))}).status());
      for (size_t start = 0; start < rows.size(); start += kInsertChunk) {
        size_t n = std::min(kInsertChunk, rows.size() - start);
        std::string statement = absl::StrCat("INSERT INTO policy_status (", kPolicyStatusColumns, ") VALUES ");
        std::vector<SqlParam> params;
        for (size_t i = 0; i < n; ++i) {
          const PolicyStatusRow& r = rows[start + i];
          statement += i == 0 ? "(" : ", (";
          statement += Placeholders(i * kPolicyStatusColumnCount + 1, kPolicyStatusColumnCount);
          statement += ")";
          params.emplace_back(r.agent_id);
          params.emplace_back(r.proxy_id);
          params.emplace_back(r.reporter);
          params.emplace_back(r.service);
          params.emplace_back(r.namespace_);
          params.emplace_back(r.applied_version);
          params.emplace_back(r.rejected_version);
          params.emplace_back(r.last_error);
          params.emplace_back(int64_t{r.connected ? 1 : 0});
          params.emplace_back(absl::ToUnixMicros(r.changed_at));
          params.emplace_back(absl::ToUnixMicros(r.reported_at));
          params.emplace_back(r.crl_number);
          params.emplace_back(r.trust_bundle);
        }
        MESHID_RETURN_IF_ERROR(tx.Exec(statement, params).status());
      }
      return absl::OkStatus();
    });
  }

  absl::StatusOr<std::vector<PolicyStatusRow>> ListPolicyStatus() override {
    std::vector<PolicyStatusRow> out;
    MESHID_RETURN_IF_ERROR(db_->Transact(TxMode::kRead, [&](SqlTx& tx) -> absl::Status {
      out.clear();
      MESHID_ASSIGN_OR_RETURN(auto rows,
                              tx.Query(absl::StrCat("SELECT ", kPolicyStatusColumns, " FROM policy_status")));
      for (const SqlRow& row : rows) {
        MESHID_ASSIGN_OR_RETURN(auto r, DecodePolicyStatus(row));
        out.push_back(std::move(r));
      }
      return absl::OkStatus();
    }));
    std::sort(out.begin(), out.end(), [](const PolicyStatusRow& a, const PolicyStatusRow& b) {
      return std::tie(a.agent_id, a.proxy_id) < std::tie(b.agent_id, b.proxy_id);
    });
    return out;
  }

 private:
  // One multi-row INSERT; with a generation, an INSERT ... SELECT that writes the rows only if
  // the registry is still at it. Returns the rows written.
  static absl::StatusOr<int64_t> InsertIssuances(SqlTx& tx, absl::Span<const IssuanceRecord> records,
                                                 std::optional<int64_t> registry_generation) {
    std::string statement = absl::StrCat("INSERT INTO issuances (", kIssuanceColumns, ") ");
    // PostgreSQL types the parameters of a VALUES list in a subquery as text: the BIGINT
    // columns need their casts there.
    const bool checked = registry_generation.has_value();
    const absl::string_view open_bigint = checked ? "CAST($" : "$";
    const absl::string_view close_bigint = checked ? " AS BIGINT)" : "";
    absl::StrAppend(&statement, checked ? "SELECT * FROM (VALUES " : "VALUES ");
    std::vector<SqlParam> params;
    params.reserve(records.size() * kIssuanceColumnCount + 1);
    for (size_t i = 0; i < records.size(); ++i) {
      const IssuanceRecord& r = records[i];
      const size_t p = i * kIssuanceColumnCount;
      absl::StrAppend(&statement, i == 0 ? "(" : ", (", "$", p + 1, ", $", p + 2, ", ", open_bigint, p + 3,
                      close_bigint, ", ", open_bigint, p + 4, close_bigint, ", $", p + 5, ", $", p + 6, ", $", p + 7,
                      ", $", p + 8, ", ", open_bigint, p + 9, close_bigint, ", $", p + 10, ")");
      params.emplace_back(r.serial_hex);
      params.emplace_back(r.spiffe_id);
      params.emplace_back(absl::ToUnixMicros(r.not_before));
      params.emplace_back(absl::ToUnixMicros(r.not_after));
      params.emplace_back(r.public_key_sha256);
      params.emplace_back(r.issuer_serial_hex);
      params.emplace_back(r.auth_method);
      params.emplace_back(r.auth_detail);
      params.emplace_back(absl::ToUnixMicros(r.issued_at));
      params.emplace_back(r.minted_by);
    }
    if (checked) {
      absl::StrAppend(&statement, ") AS v WHERE (SELECT generation FROM registry_generation) = CAST($",
                      params.size() + 1, " AS BIGINT)");
      params.emplace_back(*registry_generation);
    }
    return tx.Exec(statement, params);
  }

  static absl::Status CheckBlock(absl::string_view spiffe_id, absl::string_view reason, absl::Time at) {
    MESHID_RETURN_IF_ERROR(CheckSpiffeIdField("spiffe_id", spiffe_id));
    MESHID_RETURN_IF_ERROR(CheckStoredText("reason", reason, kMaxStoredNote, /*required=*/false));
    return CheckFiniteTime("blocked_at", at);
  }

  static absl::Status BlockIn(SqlTx& tx, absl::string_view spiffe_id, absl::string_view reason, absl::Time at) {
    MESHID_RETURN_IF_ERROR(
        tx.Exec(absl::StrCat("INSERT INTO blocked_identities (", kBlockColumns,
                             ") VALUES ($1, $2, $3) ON CONFLICT (spiffe_id) DO UPDATE SET reason = excluded.reason, "
                             "blocked_at_us = excluded.blocked_at_us"),
                {SqlParam(std::string(spiffe_id)), SqlParam(std::string(reason)), SqlParam(absl::ToUnixMicros(at))})
            .status());
    return tx.Exec(kBumpRegistryGeneration).status();
  }

  // $1 reason, $2 revoked_by, $3 revoked_at (also "now" for expiry).
  static std::vector<SqlParam> RequestParams(const RevocationRequest& request) {
    return {SqlParam(std::string(RevocationReasonName(request.reason))), SqlParam(request.revoked_by),
            SqlParam(absl::ToUnixMicros(request.at))};
  }

  // Revokes the ledger's unexpired certificates matching `where` (over issuances, after the
  // three RequestParams), adding what it revoked to outcome.revoked. A row another transaction
  // revoked meanwhile (PostgreSQL, another server) is left alone and reported as already revoked.
  static absl::Status InsertRevocations(SqlTx& tx, absl::string_view where, const std::vector<SqlParam>& params,
                                        RevocationOutcome& outcome) {
    MESHID_ASSIGN_OR_RETURN(
        auto inserted,
        tx.Query(
            absl::StrCat("INSERT INTO revocations (", kRevocationColumns,
                         ") SELECT serial, spiffe_id, issuer_serial, not_after_us, $1, $2, $3 FROM issuances WHERE ",
                         where, " AND not_after_us > $3 ON CONFLICT (serial) DO NOTHING RETURNING serial"),
            params));
    for (const SqlRow& row : inserted) outcome.revoked.push_back(ColumnText(row, 0));
    return absl::OkStatus();
  }

  static absl::Status RevokeIdentityIn(SqlTx& tx, absl::string_view spiffe_id, const RevocationRequest& request,
                                       RevocationOutcome& outcome) {
    std::vector<SqlParam> params = RequestParams(request);
    params.emplace_back(std::string(spiffe_id));
    MESHID_RETURN_IF_ERROR(InsertRevocations(tx, "spiffe_id = $4", params, outcome));
    MESHID_RETURN_IF_ERROR(
        CollectAlreadyRevoked(tx, "spiffe_id = $1 AND not_after_us > $2",
                              {SqlParam(std::string(spiffe_id)), SqlParam(absl::ToUnixMicros(request.at))}, outcome));
    return FinishRevocation(tx, outcome);
  }

  // Adds the revocations matching `where` that this call did not make to outcome.already_revoked.
  static absl::Status CollectAlreadyRevoked(SqlTx& tx, absl::string_view where, const std::vector<SqlParam>& params,
                                            RevocationOutcome& outcome) {
    const std::set<std::string> ours(outcome.revoked.begin(), outcome.revoked.end());
    MESHID_ASSIGN_OR_RETURN(
        auto rows, tx.Query(absl::StrCat("SELECT ", kRevocationColumns, " FROM revocations WHERE ", where), params));
    for (const SqlRow& row : rows) {
      MESHID_ASSIGN_OR_RETURN(auto record, DecodeRevocation(row));
      if (!ours.contains(record.serial_hex)) outcome.already_revoked.push_back(std::move(record));
    }
    return absl::OkStatus();
  }

  // Sorts the outcome, moves the CRL number on when something was revoked, and reads it.
  static absl::Status FinishRevocation(SqlTx& tx, RevocationOutcome& outcome) {
    std::sort(outcome.revoked.begin(), outcome.revoked.end());
    std::sort(outcome.expired.begin(), outcome.expired.end());
    std::sort(outcome.already_revoked.begin(), outcome.already_revoked.end(),
              [](const RevocationRecord& a, const RevocationRecord& b) { return a.serial_hex < b.serial_hex; });
    if (!outcome.revoked.empty()) {
      MESHID_RETURN_IF_ERROR(tx.Exec("UPDATE crl_number SET number = number + 1").status());
    }
    MESHID_ASSIGN_OR_RETURN(outcome.crl_number, ReadCrlNumber(tx));
    return absl::OkStatus();
  }

  static absl::StatusOr<int64_t> ReadCrlNumber(SqlTx& tx) {
    MESHID_ASSIGN_OR_RETURN(auto rows, tx.Query("SELECT number FROM crl_number"));
    if (rows.size() != 1) return absl::InternalError("datastore: the crl_number table must have one row");
    return ColumnInt(rows[0], 0);
  }

  // Deletes a registry entry or block (the row of `table` matching `where`), moving the registry
  // generation on.
  absl::Status DeleteOne(absl::string_view table, absl::string_view where, const std::vector<SqlParam>& params,
                         std::string not_found) {
    int64_t deleted = 0;
    MESHID_RETURN_IF_ERROR(db_->Transact(TxMode::kWrite, [&](SqlTx& tx) -> absl::Status {
      MESHID_ASSIGN_OR_RETURN(deleted, tx.Exec(absl::StrCat("DELETE FROM ", table, " WHERE ", where), params));
      if (deleted == 0) return absl::OkStatus();
      return tx.Exec(kBumpRegistryGeneration).status();
    }));
    if (deleted == 0) return absl::NotFoundError(not_found);
    return absl::OkStatus();
  }

  static absl::StatusOr<int64_t> ReadPolicyHead(SqlTx& tx) {
    MESHID_ASSIGN_OR_RETURN(auto rows, tx.Query("SELECT max(version) FROM policy_versions"));
    if (rows.empty() || rows[0].empty() || !rows[0][0].has_value()) return int64_t{0};
    return ColumnInt(rows[0], 0);
  }

  static absl::Status Concurrent(int64_t base_version, int64_t head) {
    return absl::AbortedError(absl::StrCat("policy version ", head, " was committed by someone else meanwhile (this ",
                                           "change was based on version ", base_version, "); nothing was written"));
  }

  // After a unique violation: names a serial of the batch that is already in the ledger.
  absl::Status DescribeDuplicate(absl::Span<const IssuanceRecord> records, const absl::Status& original) {
    std::string found;
    for (size_t start = 0; start < records.size() && found.empty(); start += kInsertChunk) {
      size_t n = std::min(kInsertChunk, records.size() - start);
      std::string statement = "SELECT serial FROM issuances WHERE serial IN (";
      std::vector<SqlParam> params;
      for (size_t i = 0; i < n; ++i) {
        absl::StrAppend(&statement, i == 0 ? "$" : ", $", i + 1);
        params.emplace_back(records[start + i].serial_hex);
      }
      statement += ") LIMIT 1";
      absl::Status s = db_->Transact(TxMode::kRead, [&](SqlTx& tx) -> absl::Status {
        MESHID_ASSIGN_OR_RETURN(auto rows, tx.Query(statement, params));
        found = rows.empty() ? "" : ColumnText(rows[0], 0);
        return absl::OkStatus();
      });
      if (!s.ok()) break;
    }
    if (found.empty()) return original;
    return absl::AlreadyExistsError(absl::StrCat("the ledger already has a certificate with serial ", found,
                                                 "; nothing of this batch of ", records.size(), " was written"));
  }

  std::unique_ptr<sql::Database> db_;
};

}  // namespace

namespace sql {

absl::StatusOr<std::unique_ptr<Store>> OpenStoreWithMigrations(const std::string& url, const StoreOptions& options,
                                                               absl::Span<const Migration> migrations,
                                                               const Clock& clock, const LoggerPtr& logger) {
  MESHID_ASSIGN_OR_RETURN(StoreUrl parsed, ParseStoreUrl(url));
  std::unique_ptr<Database> db;
  if (parsed.kind == StoreUrl::Kind::kSqlite) {
    MESHID_ASSIGN_OR_RETURN(db, OpenSqliteDatabase(parsed.path, options));
  } else {
    MESHID_ASSIGN_OR_RETURN(db, OpenPostgresDatabase(parsed, options));
  }
  MESHID_RETURN_IF_ERROR(ApplyMigrations(*db, migrations, clock.Now(), logger));
  return std::make_unique<SqlStore>(std::move(db));
}

}  // namespace sql

absl::StatusOr<std::unique_ptr<Store>> OpenStore(const std::string& url, const StoreOptions& options,
                                                 const Clock& clock, const LoggerPtr& logger) {
  return sql::OpenStoreWithMigrations(url, options, sql::BuiltinMigrations(), clock, logger);
}

absl::StatusOr<std::unique_ptr<Store>> OpenStore(const std::string& url, const Clock& clock, const LoggerPtr& logger) {
  return OpenStore(url, StoreOptions{}, clock, logger);
}

}  // namespace meshid
