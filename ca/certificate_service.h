// Istio's CSR API: istio.v1.auth.IstioCertificateService/CreateCertificate.
// authenticate caller → SPIFFE ID → validate CSR → check TTL → sign SVID → respond.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "ca/authenticator.h"
#include "ca/cert_issuer.h"
#include "ca/identity_cache.h"
#include "ca/ledger.h"
#include "common/clock.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "istio/security/v1alpha1/ca.grpc.pb.h"
#include "store/identity_registry.h"

namespace meshid {

struct CertificateServiceOptions {
  absl::Duration default_ttl = absl::Hours(1);  // DEFAULT_WORKLOAD_CERT_TTL
  absl::Duration max_ttl = absl::Hours(24);     // MAX_WORKLOAD_CERT_TTL
  bool require_tls = true;                      // without TLS every call is refused (Istio's XDS_AUTH_PLAINTEXT=false)
  bool require_registration = false;            // refuse identities without a registry entry
};

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

  // Returns the PEM chain (leaf, signing chain, roots) or: Unauthenticated (no acceptable
  // caller), PermissionDenied (the identity is blocked, unregistered under
  // --require-registration, or its registry entry does not allow this caller), InvalidArgument
  // (bad CSR or TTL; the message says what), Unavailable (the store could not be read or the
  // ledger could not record the certificate: nothing is handed out), Internal (signing failed).
  //
  // The registry status comes from an in-memory cache (ca/identity_cache.h); when the ledger
  // reports that the registry changed since, the CA reads it again and signs again (at most
  // kMaxRegistryAttempts times, then Unavailable), so a block is honoured by the next request.
  //
  // `done` runs exactly once: on the calling thread, or on the ledger's writer thread after the
  // commit. It must not block.
  using SignCallback = std::function<void(absl::StatusOr<std::vector<std::string>>)>;
  void SignAsync(const CallerCredentials& credentials, const std::string& csr_pem, int64_t validity_seconds,
                 SignCallback done) const;
  // SignAsync, waiting for the outcome (tests, benchmarks, tools).
  absl::StatusOr<std::vector<std::string>> Sign(const CallerCredentials& credentials, const std::string& csr_pem,
                                                int64_t validity_seconds) const;

  // Counts of issued certificates, for tests ("no certificate issued for bad input").
  double issued_count() const { return issued_->value(); }

  static constexpr int kMaxRegistryAttempts = 3;

 private:
  struct Request {
    AuthenticatedCaller caller;
    std::string csr_pem;
    int64_t validity_seconds = 0;
    std::chrono::steady_clock::time_point start;
    SignCallback done;
    int attempts = 0;  // signatures made so far
  };
  // Finds the identity's registry and deny-list status (from the cache when `use_cache`, else
  // from the store), then SignChecked.
  void Resolve(std::shared_ptr<Request> request, bool use_cache) const;
  // The rest of SignAsync once the status is known (`identity_status` null: no store, no
  // checks). A refusal based on a cached status is confirmed against the store first.
  void SignChecked(std::shared_ptr<Request> request, const IdentityStatus* identity_status, bool cached) const;
  // Registry and deny-list checks; fills the entry's TTL override and DNS names.
  absl::Status CheckIdentity(const AuthenticatedCaller& caller, const IdentityStatus& status, absl::Duration* max_ttl,
                             std::vector<std::string>* dns_names) const;

  const CertificateServiceOptions options_;
  const std::shared_ptr<const CertIssuer> issuer_;
  const std::shared_ptr<const CallerAuthenticator> authenticator_;
  IdentityRegistry* const registry_;  // null: no registry checks (no datastore)
  GroupCommitLedger* const ledger_;   // null: nothing is recorded (no datastore)
  const Clock& clock_;
  const LoggerPtr logger_;
  std::string issuer_serial_;
  Counter* denied_;
  Counter* requests_;
  Counter* issued_;
  Counter* authn_failures_;
  Counter* csr_errors_;
  Counter* ttl_errors_;
  Counter* cert_gen_errors_;
  Counter* ledger_errors_;
  Counter* registry_changed_;
  mutable IdentityStatusCache identity_cache_;
  Histogram* sign_latency_;
};

// Whether `entry.allowed_auth` admits `caller` (an empty list admits every caller).
bool EntryAllows(const RegistryEntry& entry, const AuthenticatedCaller& caller);

// The gRPC face of CertificateAuthority: extracts the caller's credentials from the call. Uses
// gRPC's callback API so that calls waiting for the ledger hold no thread.
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
