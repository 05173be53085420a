// The store behind `meshid server`: the issuance ledger, the identity registry and the deny
// list, on SQLite (embedded default) or PostgreSQL (several servers on one database).
//
// Every method is thread-safe and blocks until the database answered. Errors: Unavailable when
// the database cannot be reached or a transaction could not commit (callers may retry),
// InvalidArgument for bad input (naming the field), NotFound / AlreadyExists for registry
// operations, FailedPrecondition for a schema newer than this binary. Nothing is half-written:
// every mutating call is one transaction.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/clock.h"
#include "common/logging.h"

namespace meshid {

// One issued certificate.
struct IssuanceRecord {
  std::string serial_hex;         // upper-case hex, unique
  std::string spiffe_id;
  absl::Time not_before;
  absl::Time not_after;
  std::string public_key_sha256;  // lower-case hex SHA-256 of the DER SubjectPublicKeyInfo
  std::string issuer_serial_hex;  // serial of the CA certificate that signed it
  std::string auth_method;        // "jwt" or "client-cert"
  std::string auth_detail;        // "iss=<issuer> sub=<subject>" or "serial=<hex>"
  absl::Time issued_at;
  friend bool operator==(const IssuanceRecord&, const IssuanceRecord&) = default;
};

struct IssuanceQuery {
  std::optional<std::string> spiffe_id;
  std::optional<std::string> serial_hex;
  bool expired_only = false;  // not_after <= now
  absl::Time now;
  size_t limit = 1000;        // newest (by issued_at) first; 0: no limit
};

// An identity the CA may issue for (with --require-registration, only these).
struct RegistryEntry {
  std::string spiffe_id;
  // Which callers may obtain this identity, matched against the authenticated caller:
  //   "*"                      any caller already mapped to this SPIFFE ID
  //   "jwt-sub:<subject>"      a JWT with exactly this sub
  //   "jwt-iss:<issuer>"       any JWT from this issuer
  //   "client-cert"            renewal with a certificate of this identity
  // An entry may list several, any of which suffices.
  std::vector<std::string> allowed_auth;
  absl::Duration max_ttl = absl::ZeroDuration();  // zero: the server's maximum applies
  std::vector<std::string> dns_names;             // added to the certificate as DNS SANs
  std::string note;
  absl::Time created_at;
  friend bool operator==(const RegistryEntry&, const RegistryEntry&) = default;
};

struct BlockedIdentity {
  std::string spiffe_id;
  std::string reason;
  absl::Time blocked_at;
};

// What the CA needs to know about an identity before it signs: one round trip.
struct IdentityStatus {
  std::optional<RegistryEntry> entry;
  std::optional<BlockedIdentity> blocked;
  // The registry generation this status was read at: a counter that every CreateEntry,
  // DeleteEntry, Block and Unblock increments (sql/migrations/0003_registry_generation.sql).
  int64_t registry_generation = 0;
};

// ---- policy distribution (meshid apply / meshid status; authz/policy_distribution*.h) ----

// One policy object of a version: a single validated YAML document.
struct StoredPolicyDocument {
  std::string kind;
  std::string namespace_;  // "" for cluster-scoped kinds
  std::string name;
  std::string yaml;
  std::string source;  // where it was applied from ("dir/file.yaml:12")
  friend bool operator==(const StoredPolicyDocument&, const StoredPolicyDocument&) = default;
};

struct PolicyVersionInfo {
  int64_t version = 0;  // 1, 2, 3, ...
  absl::Time created_at;
  std::string created_by;   // user@host
  std::string description;  // what the apply did
  std::string digest;       // opaque to the store (authz computes it over the documents)
  int64_t document_count = 0;
  friend bool operator==(const PolicyVersionInfo&, const PolicyVersionInfo&) = default;
};

// A version: the whole policy set, documents sorted by (kind, namespace_, name).
struct PolicyVersion {
  PolicyVersionInfo info;
  std::vector<StoredPolicyDocument> documents;
};

// What an agent reported for itself (proxy_id "") or for one of its proxies.
struct PolicyStatusRow {
  std::string agent_id;
  std::string proxy_id;
  std::string reporter;  // the SPIFFE ID the agent authenticated as
  std::string service;
  std::string namespace_;
  int64_t applied_version = 0;   // 0: none yet
  int64_t rejected_version = 0;  // the latest version NACKed, 0: none
  std::string last_error;
  bool connected = false;
  absl::Time changed_at;   // agent's clock
  absl::Time reported_at;  // the storing server's clock
  friend bool operator==(const PolicyStatusRow&, const PolicyStatusRow&) = default;
};

class Store {
 public:
  virtual ~Store() = default;

  // "sqlite" or "postgresql", and a description without credentials for logs.
  virtual std::string backend() const = 0;
  virtual std::string description() const = 0;

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
  // Deletes up to `limit` rows whose not_after is before `cutoff`; returns how many.
  virtual absl::StatusOr<int64_t> PruneExpiredBefore(absl::Time cutoff, int64_t limit) = 0;

  virtual absl::Status CreateEntry(const RegistryEntry& entry) = 0;  // AlreadyExists if present
  virtual absl::StatusOr<std::vector<RegistryEntry>> ListEntries() = 0;
  virtual absl::Status DeleteEntry(absl::string_view spiffe_id) = 0;  // NotFound if absent

  virtual absl::Status Block(absl::string_view spiffe_id, absl::string_view reason, absl::Time at) = 0;
  virtual absl::Status Unblock(absl::string_view spiffe_id) = 0;  // NotFound if not blocked
  virtual absl::StatusOr<std::vector<BlockedIdentity>> ListBlocked() = 0;

  // The registry entry and block of one identity and the registry generation, read in one
  // query.
  virtual absl::StatusOr<IdentityStatus> GetIdentityStatus(absl::string_view spiffe_id) = 0;

  // The schema version this database is at.
  virtual absl::StatusOr<int> SchemaVersion() = 0;

  // Policy versions. Stores that do not keep policies (test fakes) answer Unimplemented.
  //
  // The newest version number, 0 when none was ever committed. One indexed read: servers poll it.
  virtual absl::StatusOr<int64_t> PolicyHeadVersion();
  // Version `version` with all its documents; NotFound if there is no such version.
  virtual absl::StatusOr<PolicyVersion> GetPolicyVersion(int64_t version);
  // Up to `limit` versions, newest first (0: all).
  virtual absl::StatusOr<std::vector<PolicyVersionInfo>> ListPolicyVersions(size_t limit);
  // Commits `documents` as the complete policy set of version base_version + 1 (info.version is
  // ignored and the new number returned): objects absent from `documents` are deleted in the
  // new version, objects whose yaml changed get a new row, unchanged ones are kept. Aborted when
  // the newest version is no longer `base_version` (another apply committed first: re-read,
  // re-validate, retry); InvalidArgument naming the field for a document with an empty or
  // invalid kind/name/yaml, or an object listed twice. Nothing is written on any error.
  virtual absl::StatusOr<int64_t> CommitPolicyVersion(int64_t base_version, const PolicyVersionInfo& info,
                                                      absl::Span<const StoredPolicyDocument> documents);

  // Replaces every status row of `agent_id` by `rows` (each must carry that agent_id).
  virtual absl::Status ReplacePolicyStatus(absl::string_view agent_id, absl::Span<const PolicyStatusRow> rows);
  // Every status row, by agent_id then proxy_id.
  virtual absl::StatusOr<std::vector<PolicyStatusRow>> ListPolicyStatus();
};

// Checks a record before it is written; InvalidArgument naming the field. serial_hex and
// issuer_serial_hex: upper-case hex; public_key_sha256: 64 lower-case hex digits; spiffe_id,
// auth_method: non-empty; text valid UTF-8 without NUL; times finite, not_before <= not_after.
absl::Status ValidateIssuanceRecord(const IssuanceRecord& record);
// Checks an entry: a valid SPIFFE ID, at least one allowed_auth of the forms above, max_ttl not
// negative, DNS names that are host names (optionally "*." + host name), a note of at most
// 1024 bytes. InvalidArgument naming the field.
absl::Status ValidateRegistryEntry(const RegistryEntry& entry);

struct StoreOptions {
  // SQLite: create the database file if it does not exist (never its directory). When false, a
  // missing file is NotFound (read-only tools should not leave empty databases behind).
  bool create_if_missing = true;
  // Most connections kept open (PostgreSQL: also the most concurrent transactions; SQLite:
  // concurrent readers, writers are serialized).
  int max_connections = 8;
  // SQLite: how long a writer waits for another process holding the write lock.
  absl::Duration busy_timeout = absl::Seconds(10);
  // Migrations applied at open are logged here (nullptr: not logged).
  LoggerPtr logger;
  // Stamps the applied_at of migrations (nullptr: the system clock). Not owned.
  const Clock* clock = nullptr;
};

// Opens a store and brings its schema up to date (migrations from sql/migrations, applied in
// one transaction and recorded in a schema-version table). URLs:
//   sqlite://<path>            relative or absolute (sqlite:///abs/path); WAL mode
//   postgresql://user[:password]@host:port/database[?sslmode=...]
// Errors are one line naming the problem (never the password): a malformed URL
// (InvalidArgument), an unreachable server (Unavailable), refused credentials
// (PermissionDenied), a missing PostgreSQL database or SQLite directory (NotFound), a read-only
// SQLite file or directory (PermissionDenied), a file that is not a SQLite database or a
// database newer than this binary (FailedPrecondition). A failed migration leaves the database
// as it was. Backend details (durability, pooling, reconnects): sql/sqlite_database.h,
// sql/postgres_database.h, and the README (Storage).
absl::StatusOr<std::unique_ptr<Store>> OpenStore(const std::string& url);
absl::StatusOr<std::unique_ptr<Store>> OpenStore(const std::string& url, const StoreOptions& options);

// The default store of a data directory: "sqlite://<data_dir>/meshid.db".
std::string DefaultStoreUrl(const std::string& data_dir);
// The store URL for the `--data-dir` / `--datastore` flags: `datastore` if given (it wins),
// else DefaultStoreUrl(data_dir).
std::string StoreUrlFromFlags(const std::string& data_dir, const std::string& datastore);

}  // namespace meshid
