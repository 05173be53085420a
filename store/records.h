// The records meshid stores, as values independent of any backend: issued certificates, the
// identity registry and deny list, policy versions and the agents' policy status. The narrow
// interfaces in store/*.h speak these types; sql/ implements them on SQLite and PostgreSQL.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace meshid {

// One issued certificate.
struct IssuanceRecord {
  std::string serial_hex;  // upper-case hex, unique
  std::string spiffe_id;
  absl::Time not_before;
  absl::Time not_after;
  std::string public_key_sha256;  // lower-case hex SHA-256 of the DER SubjectPublicKeyInfo
  std::string issuer_serial_hex;  // serial of the CA certificate that signed it
  std::string auth_method;        // "jwt" or "client-cert"
  std::string auth_detail;        // "iss=<issuer> sub=<subject>" or "serial=<hex>"
  absl::Time issued_at;
  // The node agent that asked for it on the workload's behalf (Istio's ImpersonatedIdentity):
  // its SPIFFE ID; "" when the workload asked itself.
  std::string minted_by;
  friend bool operator==(const IssuanceRecord&, const IssuanceRecord&) = default;
};

struct IssuanceQuery {
  std::optional<std::string> spiffe_id;
  std::optional<std::string> serial_hex;
  bool expired_only = false;  // not_after <= now
  absl::Time now;
  size_t limit = 1000;  // newest (by issued_at) first; 0: no limit
};

// An identity the CA may issue for (with --require-registration, only these). An entry is
// named by (spiffe_id, parent_id): one identity may have one direct entry (parent_id "") and
// one entry per node agent that may mint it.
struct RegistryEntry {
  std::string spiffe_id;
  // "" : the workload asks for itself (allowed_auth says how it must authenticate).
  // Otherwise the SPIFFE ID of the node agent allowed to mint this identity for the workloads on
  // its node that match every selector (CreateCertificate with ImpersonatedIdentity).
  std::string parent_id;
  // With a parent, at least one; without, none. Canonical "unix:<key>:<value>" forms
  // (common/selector.h), sorted and unique.
  std::vector<std::string> selectors;
  // Which callers may obtain this identity, matched against the authenticated caller:
  //   "*"                      any caller already mapped to this SPIFFE ID
  //   "jwt-sub:<subject>"      a JWT with exactly this sub
  //   "jwt-iss:<issuer>"       any JWT from this issuer
  //   "client-cert"            renewal with a certificate of this identity
  // An entry may list several, any of which suffices. An entry with a parent lists none: the
  // parent's authentication stands for the workload's.
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
  std::optional<RegistryEntry> entry;       // the direct entry (parent_id "")
  std::vector<RegistryEntry> node_entries;  // entries with a parent, by parent_id
  std::optional<BlockedIdentity> blocked;
  // The registry generation this status was read at: a counter that every CreateEntry,
  // DeleteEntry, Block and Unblock increments (sql/migrations/0003_registry_generation.sql).
  int64_t registry_generation = 0;
};

// ---- revocation (meshid certs revoke, meshid identity block; the CRL) ----

// RFC 5280 CRLReason codes a revocation may carry. certificateHold and removeFromCRL are left
// out: a revocation here is permanent.
enum class RevocationReason {
  kUnspecified = 0,
  kKeyCompromise = 1,
  kCaCompromise = 2,
  kAffiliationChanged = 3,
  kSuperseded = 4,
  kCessationOfOperation = 5,
  kPrivilegeWithdrawn = 9,
};

// One revoked certificate.
struct RevocationRecord {
  std::string serial_hex;         // upper-case hex, a serial of the ledger
  std::string spiffe_id;          // the certificate's
  std::string issuer_serial_hex;  // the CA certificate that signed it (whose CRL lists it)
  absl::Time not_after;           // the certificate's: it leaves the CRL then
  RevocationReason reason = RevocationReason::kUnspecified;
  std::string revoked_by;
  absl::Time revoked_at;
  friend bool operator==(const RevocationRecord&, const RevocationRecord&) = default;
};

// Who revokes, why and when: the part of a revocation the caller says.
struct RevocationRequest {
  RevocationReason reason = RevocationReason::kUnspecified;
  std::string revoked_by;  // non-empty
  absl::Time at;           // revocation time; also "now" for telling expired certificates apart
};

// What a revoking call did, serial by serial (each list in ascending serial order).
struct RevocationOutcome {
  std::vector<std::string> revoked;               // newly revoked by this call
  std::vector<RevocationRecord> already_revoked;  // revoked before (unchanged: idempotent)
  std::vector<std::string> expired;               // not revoked: expired already at `at`
  int64_t crl_number = 0;                         // the CRL number after the call
};

// The revocations a CRL lists: every revoked certificate unexpired at a time, and the CRL number,
// read in one snapshot.
struct RevocationSnapshot {
  int64_t crl_number = 0;
  std::vector<RevocationRecord> revocations;  // by serial
};

// ---- policy distribution (meshid apply / meshid status; policy/) ----

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
  std::string digest;       // opaque to the store (policy/wire.h computes it over the documents)
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
  int64_t crl_number = 0;  // the CRL it enforces (0: none or not known)
  // The roots it trusts: "sha256:<hex>" of each (DER), sorted, comma-separated, as
  // ca/shared_ca.h's TrustAnchorFingerprint; "" not known (an older agent, or a proxy that has
  // not acknowledged a ROOTCA).
  std::string trust_bundle;
  friend bool operator==(const PolicyStatusRow&, const PolicyStatusRow&) = default;
};

// The kinds of CaMaterialRecord (store/ca_material_store.h).
inline constexpr char kCaMaterialSigningCa[] = "signing-ca";           // the CA's trust anchors
inline constexpr char kCaMaterialLocalTokenKey[] = "local-token-key";  // the meshid-local token issuer

// The CA material every replica on one database must share.
struct CaMaterialRecord {
  std::string kind;  // kCaMaterialSigningCa or kCaMaterialLocalTokenKey
  // signing-ca: "sha256:<hex>" of each root certificate (DER), sorted, comma-separated;
  // local-token-key: "sha256:<hex>" of the public key (DER SubjectPublicKeyInfo).
  std::string fingerprint;
  std::string source;  // where the recording server took it from, for messages
  absl::Time recorded_at;
  friend bool operator==(const CaMaterialRecord&, const CaMaterialRecord&) = default;
};

// The phases of a staged CA rotation (`meshid ca rotate`), in the order they are reached.
enum class CaRotationPhase {
  kPrepared,   // the new material exists; nothing changed for anyone
  kPublished,  // every server's trust bundle holds the old and the new roots; agents get it
  kActive,     // every server signs with the new material; the old roots are still trusted
  kRetired,    // the old roots have left the trust bundle: the rotation is complete
};
// "prepared", "published", "active", "retired".
const char* CaRotationPhaseName(CaRotationPhase phase);
// The inverse of CaRotationPhaseName; nullopt for anything else.
std::optional<CaRotationPhase> ParseCaRotationPhase(const std::string& name);

inline constexpr char kCaRotationRoot[] = "root";                  // a new self-signed root
inline constexpr char kCaRotationIntermediate[] = "intermediate";  // a new signing CA under the root

// Signing material as Istio's plug-in layout holds it, with the private key by reference.
struct StoredCaMaterial {
  std::string ca_cert_pem;     // the signing certificate
  std::string cert_chain_pem;  // the signing certificate, its intermediates and its root
  std::string root_cert_pem;   // the roots it chains to
  // Where the private key is: a file path that every replica can read (a shared mount, as a
  // Kubernetes Secret is for Istio's cacerts), or a pkcs11: URI (RFC 7512) of a key in a token
  // every replica reaches with its --pkcs11-module.
  std::string key_ref;
  bool empty() const { return ca_cert_pem.empty(); }
  friend bool operator==(const StoredCaMaterial&, const StoredCaMaterial&) = default;
};

// The store's one CA rotation record: the newest rotation and how far it has gone. Every
// server follows it (ca/rotation_follower.h); `meshid ca rotate` moves it one phase at a time.
struct CaRotationRecord {
  int64_t rotation = 0;  // 1 for the first rotation on this database, one more for each later one
  CaRotationPhase phase = CaRotationPhase::kPrepared;
  std::string kind;       // kCaRotationRoot or kCaRotationIntermediate
  StoredCaMaterial from;  // in force before the rotation; empty: each server's own files
  StoredCaMaterial to;    // in force after it
  std::string actor;      // who moved it last (the operator's user name), for messages
  bool forced = false;    // activated with --force although some agent or proxy had not adopted
  absl::Time prepared_at = absl::InfinitePast();
  absl::Time published_at = absl::InfinitePast();  // InfinitePast: not reached yet (and below)
  absl::Time activated_at = absl::InfinitePast();
  absl::Time retired_at = absl::InfinitePast();
  friend bool operator==(const CaRotationRecord&, const CaRotationRecord&) = default;
};

}  // namespace meshid
