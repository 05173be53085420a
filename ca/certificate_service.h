// Istio's CSR API: istio.v1.auth.IstioCertificateService/CreateCertificate.
// authenticate caller → SPIFFE ID → signing limits → validate CSR → check TTL → sign SVID → respond.
//
// A node agent (ztunnel, or any caller) may ask for the certificate of a workload on its node
// instead of its own, with Istio's request metadata "ImpersonatedIdentity". It gets it only when
// the registry has an entry of that identity naming the node agent as its parent, or when the
// node agent is one of the trusted node accounts (Istio's CA_TRUSTED_NODE_ACCOUNTS) and the
// identity has any registry entry. Without Kubernetes meshid cannot check on which node a pod
// runs, so a trusted node account may mint every registered identity.
#pragma once

#include <array>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "ca/authenticator.h"
#include "ca/authority_source.h"
#include "ca/cert_issuer.h"
#include "ca/identity_cache.h"
#include "ca/ledger.h"
#include "ca/signing_limiter.h"
#include "common/clock.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/spiffe_id.h"
#include "istio/security/v1alpha1/ca.grpc.pb.h"
#include "store/identity_registry.h"

namespace meshid {

struct CertificateServiceOptions {
  absl::Duration default_ttl = absl::Hours(1);  // DEFAULT_WORKLOAD_CERT_TTL
  absl::Duration max_ttl = absl::Hours(24);     // MAX_WORKLOAD_CERT_TTL
  bool require_tls = true;                      // without TLS every call is refused (Istio's XDS_AUTH_PLAINTEXT=false)
  bool require_registration = false;            // refuse identities without a registry entry
  // Istio's CA_TRUSTED_NODE_ACCOUNTS, as SPIFFE IDs (TrustedNodeAccountId): callers that may
  // mint any identity that has a registry entry, whether or not an entry names them as parent.
  std::vector<SpiffeId> trusted_node_accounts;
  // Per-caller token buckets and the cap on concurrent signings (ca/signing_limiter.h); by
  // default none (`meshid server` sets them from its flags).
  SigningLimits limits;
};

// "<namespace>/<serviceaccount>", an item of Istio's CA_TRUSTED_NODE_ACCOUNTS, as the SPIFFE ID
// spiffe://<trust_domain>/ns/<namespace>/sa/<serviceaccount>. InvalidArgument saying what is
// wrong (an empty part, a missing or extra '/', a character a SPIFFE ID cannot hold).
absl::StatusOr<SpiffeId> TrustedNodeAccountId(absl::string_view trust_domain, absl::string_view item);

// Istio's request metadata "ImpersonatedIdentity": the SPIFFE ID of the workload a node agent
// asks a certificate for, as received (the CA parses and checks it).
struct ImpersonatedIdentity {
  std::string spiffe_id;
  bool is_string = true;  // false: the metadata value was not a string (a malformed request)
};

// The request's ImpersonatedIdentity, if its metadata has that field.
std::optional<ImpersonatedIdentity> ImpersonatedIdentityFromMetadata(const google::protobuf::Struct& metadata);

// The message of every refused impersonation, whatever the reason (Istio's): a node agent that
// may not mint an identity learns nothing about the registry from the answer. The reason is in
// the server's log and in meshid_ca_impersonation_denied_total{reason}.
inline constexpr char kImpersonationRefused[] = "request impersonation authentication failure";

// The CA's outcome for one request, independent of gRPC so that tests and benchmarks can
// drive it directly. Thread-safe: SignAsync may be called from any thread.
class CertificateAuthority {
 public:
  // `issuer` signs and `authenticator` decides who the caller is. The store is optional, as a
  // pair: without a datastore (`--datastore none`) `registry` and `ledger` are null, and then
  // no registry or deny-list check is made and no certificate is recorded. `registry`,
  // `ledger`, `clock` and `metrics` must outlive the CA; `logger` is not null. Registers the
  // CA's metrics (Istio's citadel_server_* names) in `metrics`.
  CertificateAuthority(CertificateServiceOptions options, std::shared_ptr<const CertIssuer> issuer,
                       std::shared_ptr<const CallerAuthenticator> authenticator, IdentityRegistry* registry,
                       GroupCommitLedger* ledger, const Clock& clock, MetricsRegistry& metrics, LoggerPtr logger);
  // The same with signing material that can be replaced while serving (a reload of the plug-in
  // files): every request signs with, and answers the chain of, the snapshot it read.
  CertificateAuthority(CertificateServiceOptions options, std::shared_ptr<const AuthoritySource> authorities,
                       std::shared_ptr<const CallerAuthenticator> authenticator, IdentityRegistry* registry,
                       GroupCommitLedger* ledger, const Clock& clock, MetricsRegistry& metrics, LoggerPtr logger);

  // Returns the PEM chain (leaf, signing chain, roots) or: Unauthenticated (no acceptable
  // caller, or an impersonation refused: kImpersonationRefused), ResourceExhausted (the caller
  // is over its signing rate or the CA over its concurrent signings, options.limits: nothing is
  // signed or recorded; the message ends "retry after N ms" and the status carries the delay,
  // RetryDelayOf), PermissionDenied (the identity
  // is blocked, unregistered under --require-registration, or its registry entry does not allow
  // this caller), InvalidArgument (bad CSR or TTL; the message says what), Unavailable (the
  // store could not be read or the ledger could not record the certificate: nothing is handed
  // out), Internal (signing failed).
  //
  // With `impersonated`, the certificate is for that identity W, asked for by the authenticated
  // caller N. It is issued only when W is a SPIFFE ID of N's trust domain (the CA's: the
  // authenticators admit no other), neither N nor W is blocked, and either W has a registry
  // entry whose parent is N, or N is a trusted node account and W has any entry; without a
  // registry (no datastore) never. Otherwise Unauthenticated, whatever the reason. The CSR must
  // be for W; the TTL limit and DNS names come from W's entry for N (for a trusted node account
  // from W's direct entry, or the server's limit); the ledger records W, N's authentication and
  // minted_by N.
  //
  // The limits are checked right after authentication, before the registry is read, against
  // the authenticated caller's SPIFFE ID: a node agent minting other identities spends its own
  // bucket. A concurrency slot is held until the certificate is signed, not while the ledger
  // commits it (a certificate signed again because the registry changed takes no new slot).
  //
  // The registry statuses come from an in-memory cache (ca/identity_cache.h); when the ledger
  // reports that the registry changed since, the CA reads them again and signs again (at most
  // kMaxRegistryAttempts times, then Unavailable), so a block is honoured by the next request.
  //
  // `done` runs exactly once: on the calling thread, or after the commit on the thread of the
  // request that led it (ca/ledger.h). It must not block.
  using SignCallback = std::function<void(absl::StatusOr<std::vector<std::string>>)>;
  void SignAsync(const CallerCredentials& credentials, const std::string& csr_pem, int64_t validity_seconds,
                 const std::optional<ImpersonatedIdentity>& impersonated, SignCallback done) const;
  // SignAsync, waiting for the outcome (tests, benchmarks, tools).
  absl::StatusOr<std::vector<std::string>> Sign(const CallerCredentials& credentials, const std::string& csr_pem,
                                                int64_t validity_seconds,
                                                const std::optional<ImpersonatedIdentity>& impersonated = {}) const;

  // Counts of issued certificates, for tests ("no certificate issued for bad input").
  double issued_count() const { return issued_->value(); }

  static constexpr int kMaxRegistryAttempts = 3;

 private:
  struct Request {
    AuthenticatedCaller caller;
    std::optional<SpiffeId> impersonated;  // the identity the caller mints, if not its own
    std::string csr_pem;
    int64_t validity_seconds = 0;
    std::chrono::steady_clock::time_point start;
    SignCallback done;
    SigningLimiter::Permit permit;  // released when signing ends
    int attempts = 0;               // signatures made so far
    // The identity of the certificate.
    const SpiffeId& subject() const { return impersonated.has_value() ? *impersonated : caller.id; }
    // Frees the concurrency slot, then answers: a caller waiting on `done` may ask again at once.
    void Finish(absl::StatusOr<std::vector<std::string>> result) {
      permit.Release();
      done(std::move(result));
    }
  };
  // Why an impersonation was refused: the label of meshid_ca_impersonation_denied_total.
  enum class DenialReason { kMalformed, kBlockedNode, kBlockedIdentity, kNotParent, kNoEntry };
  static constexpr size_t kDenialReasons = 5;
  struct ImpersonationDenial {
    DenialReason reason;
    std::string detail;  // for the server's log only
  };

  // Finds the registry and deny-list status of the certificate's identity, and of the caller
  // when it impersonates (from the cache when `use_cache`, else from the store), then
  // SignChecked.
  void Resolve(std::shared_ptr<Request> request, bool use_cache) const;
  // One identity's status; `*cached` is set when it came from the cache.
  absl::StatusOr<std::shared_ptr<const IdentityStatus>> LookUp(const std::string& spiffe_id, bool use_cache,
                                                               bool* cached) const;
  // The rest of SignAsync once the statuses are known (`identity_status` null: no store, no
  // checks; `node_status` the caller's when it impersonates). A refusal based on a cached
  // status is confirmed against the store first.
  void SignChecked(std::shared_ptr<Request> request, const IdentityStatus* identity_status,
                   const IdentityStatus* node_status, bool cached) const;
  // Registry and deny-list checks; fills the entry's TTL override and DNS names.
  absl::Status CheckIdentity(const AuthenticatedCaller& caller, const IdentityStatus& status, absl::Duration* max_ttl,
                             std::vector<std::string>* dns_names) const;
  // The same for a caller minting another identity; fills the matching entry's TTL override and
  // DNS names, or says why the caller may not.
  std::optional<ImpersonationDenial> CheckImpersonation(const AuthenticatedCaller& node,
                                                        const IdentityStatus& node_status,
                                                        const IdentityStatus& identity_status, absl::Duration* max_ttl,
                                                        std::vector<std::string>* dns_names) const;
  // Logs and counts the reason; returns the answer (Unauthenticated, kImpersonationRefused).
  absl::Status RefuseImpersonation(const AuthenticatedCaller& node, absl::string_view asked_for,
                                   const ImpersonationDenial& denial) const;

  const CertificateServiceOptions options_;
  const std::shared_ptr<const AuthoritySource> authorities_;
  const std::shared_ptr<const CallerAuthenticator> authenticator_;
  IdentityRegistry* const registry_;  // null: no registry checks (no datastore)
  GroupCommitLedger* const ledger_;   // null: nothing is recorded (no datastore)
  const Clock& clock_;
  const LoggerPtr logger_;
  Counter* denied_;
  Counter* requests_;
  Counter* issued_;
  Counter* authn_failures_;
  Counter* csr_errors_;
  Counter* ttl_errors_;
  Counter* cert_gen_errors_;
  Counter* ledger_errors_;
  Counter* registry_changed_;
  std::array<Counter*, kDenialReasons> impersonation_denied_;  // by DenialReason
  mutable IdentityStatusCache identity_cache_;
  mutable SigningLimiter limiter_;
  Histogram* sign_latency_;
};

// Whether `entry.allowed_auth` admits `caller` (an empty list admits every caller).
bool EntryAllows(const RegistryEntry& entry, const AuthenticatedCaller& caller);

// The gRPC face of CertificateAuthority: extracts the caller's credentials from the call. Uses
// gRPC's callback API: a call whose record waits for another request's commit holds no thread.
class CertificateService final : public istio::v1::auth::IstioCertificateService::CallbackService {
 public:
  CertificateService(std::shared_ptr<const CertificateAuthority> ca, bool require_tls)
      : ca_(std::move(ca)), require_tls_(require_tls) {}
  grpc::ServerUnaryReactor* CreateCertificate(grpc::CallbackServerContext* context,
                                              const istio::v1::auth::IstioCertificateRequest* request,
                                              istio::v1::auth::IstioCertificateResponse* response) override;

 private:
  std::shared_ptr<const CertificateAuthority> ca_;
  bool require_tls_;
};

}  // namespace meshid
