// The store behind `meshid server`: the issuance ledger, the identity registry and the deny
// list, revocations, policy versions and status, the CA the replicas share and its staged
// rotation, on SQLite (embedded default) or PostgreSQL (several servers on one database).
//
// Every method is thread-safe and blocks until the database answered. Errors: Unavailable when
// the database cannot be reached or a transaction could not commit (callers may retry),
// InvalidArgument for bad input (naming the field), NotFound / AlreadyExists for registry
// operations, NotFound for a compare-and-swap of CA material or of a CA rotation (expecting a
// record) when there is no record, FailedPrecondition for a schema newer than this binary. Nothing is half-written:
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
#include "store/ca_material_store.h"
#include "store/ca_rotation_store.h"
#include "store/identity_registry.h"
#include "store/issuance_store.h"
#include "store/policy_repository.h"
#include "store/policy_status.h"
#include "store/records.h"
#include "store/revocation_store.h"

namespace meshid {

// The whole store of a database: every narrow interface of store/ on one backend. Only the
// composition roots (daemons/, cli/) hold it; every component takes the interface it needs.
class Store : public IssuanceStore,
              public IdentityRegistry,
              public RevocationStore,
              public PolicyRepository,
              public PolicyStatusSink,
              public CaMaterialStore,
              public CaRotationStore {
 public:
  ~Store() override = default;

  // "sqlite" or "postgresql", and a description without credentials for logs.
  virtual std::string backend() const = 0;
  virtual std::string description() const = 0;

  // The schema version this database is at.
  virtual absl::StatusOr<int> SchemaVersion() = 0;

  // Every policy status row, by agent_id then proxy_id (`meshid status`).
  virtual absl::StatusOr<std::vector<PolicyStatusRow>> ListPolicyStatus() = 0;
};

struct StoreOptions {
  // SQLite: create the database file if it does not exist (never its directory). When false, a
  // missing file is NotFound (read-only tools should not leave empty databases behind).
  bool create_if_missing = true;
  // Most connections kept open (PostgreSQL: also the most concurrent transactions; SQLite:
  // concurrent readers, writers are serialized).
  int max_connections = 8;
  // SQLite: how long a writer waits for another process holding the write lock.
  absl::Duration busy_timeout = absl::Seconds(10);
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
// sql/postgres_database.h, and docs/operations.md (Storage).
//
// `clock` stamps the applied_at of the migrations applied here, which are logged to `logger`
// (not null); neither is kept.
absl::StatusOr<std::unique_ptr<Store>> OpenStore(const std::string& url, const Clock& clock, const LoggerPtr& logger);
absl::StatusOr<std::unique_ptr<Store>> OpenStore(const std::string& url, const StoreOptions& options,
                                                 const Clock& clock, const LoggerPtr& logger);

// The default store of a data directory: "sqlite://<data_dir>/meshid.db".
std::string DefaultStoreUrl(const std::string& data_dir);
// The store URL for the `--data-dir` / `--datastore` flags: `datastore` if given (it wins),
// else DefaultStoreUrl(data_dir).
std::string StoreUrlFromFlags(const std::string& data_dir, const std::string& datastore);

}  // namespace meshid
