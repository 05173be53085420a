#include "ca/certificate_service.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "ca/csr_validator.h"
#include "common/grpc_status.h"
#include "common/keys.h"
#include "common/sha256.h"
#include "common/x509.h"

namespace meshid {

bool EntryAllows(const RegistryEntry& entry, const AuthenticatedCaller& caller) {
  if (entry.allowed_auth.empty()) return true;
  for (const std::string& rule : entry.allowed_auth) {
    if (rule == "*") return true;
    bool jwt = caller.method == AuthenticatedCaller::Method::kJwt;
    if (rule == "client-cert" && !jwt) return true;
    if (jwt && rule == absl::StrCat("jwt-sub:", caller.jwt_subject)) return true;
    if (jwt && rule == absl::StrCat("jwt-iss:", caller.jwt_issuer)) return true;
  }
  return false;
}

CertificateAuthority::CertificateAuthority(CertificateServiceOptions options, std::shared_ptr<const CertIssuer> issuer,
                                           std::shared_ptr<const CallerAuthenticator> authenticator,
                                           IdentityRegistry* registry, GroupCommitLedger* ledger, const Clock& clock,
                                           MetricsRegistry& metrics, LoggerPtr logger)
    : options_(options),
      issuer_(std::move(issuer)),
      authenticator_(std::move(authenticator)),
      registry_(registry),
      ledger_(ledger),
      clock_(clock),
      logger_(std::move(logger)) {
  issuer_serial_ = SerialHex(issuer_->authority().cert.get());
  denied_ = &metrics.AddCounter("meshid_ca_identity_denied_count",
                                "Requests refused by the deny list or the identity registry.");
  // Istio's metric names (security/pkg/server/ca/monitoring.go), so existing dashboards work.
  requests_ = &metrics.AddCounter("citadel_server_csr_count", "CreateCertificate requests received.");
  issued_ = &metrics.AddCounter("citadel_server_success_cert_issuance_count", "Certificates issued.");
  authn_failures_ = &metrics.AddCounter("citadel_server_authentication_failure_count",
                                        "Requests whose caller failed authentication.");
  const char* err_help = "CSR signing errors by reason.";
  csr_errors_ = &metrics.AddCounter("citadel_server_csr_sign_err_count", err_help, {{"error", "CSR_ERROR"}});
  ttl_errors_ = &metrics.AddCounter("citadel_server_csr_sign_err_count", err_help, {{"error", "TTL_ERROR"}});
  cert_gen_errors_ = &metrics.AddCounter("citadel_server_csr_sign_err_count", err_help, {{"error", "CERT_GEN_ERROR"}});
  ledger_errors_ =
      &metrics.AddCounter("citadel_server_csr_sign_err_count", err_help, {{"error", "LEDGER_UNAVAILABLE"}});
  registry_changed_ = &metrics.AddCounter(
      "meshid_ca_registry_changed_resigns",
      "Certificates dropped before their ledger row was written because the identity registry changed; signed again.");
  sign_latency_ = &metrics.AddHistogram(
      "meshid_ca_sign_latency_seconds", "Time to handle a CreateCertificate request, from receipt to signed chain.",
      {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1});
}

void CertificateAuthority::SignAsync(const CallerCredentials& credentials, const std::string& csr_pem,
                                     int64_t validity_seconds, SignCallback done) const {
  auto start = std::chrono::steady_clock::now();
  requests_->Increment();
  auto caller = authenticator_->Authenticate(credentials);
  if (!caller.ok()) {
    authn_failures_->Increment();
    return done(caller.status());
  }
  Resolve(std::make_shared<Request>(Request{*std::move(caller), csr_pem, validity_seconds, start, std::move(done)}),
          /*use_cache=*/true);
}

void CertificateAuthority::Resolve(std::shared_ptr<Request> request, bool use_cache) const {
  if (registry_ == nullptr) return SignChecked(std::move(request), nullptr, /*cached=*/false);
  std::string id = request->caller.id.ToString();
  if (use_cache) {
    if (std::shared_ptr<const IdentityStatus> cached = identity_cache_.Find(id)) {
      return SignChecked(std::move(request), cached.get(), /*cached=*/true);
    }
  }
  // The first request of an identity, the first after a registry change, or a refusal to
  // confirm.
  absl::StatusOr<IdentityStatus> status = registry_->GetIdentityStatus(id);
  if (!status.ok()) {
    return request->done(
        absl::UnavailableError(absl::StrCat("the identity registry is unavailable: ", status.status().message())));
  }
  identity_cache_.Put(id, *status);
  SignChecked(std::move(request), &*status, /*cached=*/false);
}

void CertificateAuthority::SignChecked(std::shared_ptr<Request> request, const IdentityStatus* identity_status,
                                       bool cached) const {
  const AuthenticatedCaller& caller = request->caller;
  const int64_t validity_seconds = request->validity_seconds;
  absl::Duration max_ttl = options_.max_ttl;
  std::vector<std::string> dns_names;
  absl::Status refusal;
  if (identity_status != nullptr) refusal = CheckIdentity(caller, *identity_status, &max_ttl, &dns_names);
  absl::Duration ttl =
      validity_seconds <= 0 ? std::min(options_.default_ttl, max_ttl) : absl::Seconds(validity_seconds);
  if (refusal.ok() && ttl > max_ttl) {
    refusal = absl::InvalidArgumentError(absl::StrCat("requested TTL ", validity_seconds,
                                                      "s is greater than the max allowed TTL ",
                                                      absl::ToInt64Seconds(max_ttl), "s"));
  }
  if (!refusal.ok()) {
    // A cached status would never learn of the unblock or the new entry that lifts it.
    if (cached) return Resolve(std::move(request), /*use_cache=*/false);
    if (absl::IsPermissionDenied(refusal)) denied_->Increment();
    if (absl::IsInvalidArgument(refusal)) ttl_errors_->Increment();
    return request->done(refusal);
  }
  auto csr = ValidateCsr(request->csr_pem, caller.id);
  if (!csr.ok()) {
    csr_errors_->Increment();
    return request->done(csr.status());
  }
  auto cert = issuer_->IssueSvid(csr->spki_der, csr->algorithm, caller.id, ttl, dns_names);
  if (!cert.ok()) {
    cert_gen_errors_->Increment();
    logger_->error("signing for {} failed: {}", caller.id.ToString(), cert.status().message());
    return request->done(absl::InternalError(absl::StrCat("certificate generation failed: ", cert.status().message())));
  }
  ++request->attempts;
  const std::optional<int64_t> generation =
      identity_status != nullptr ? std::optional<int64_t>(identity_status->registry_generation) : std::nullopt;
  // Hands the chain out; runs once the ledger row is durable (or at once without a ledger).
  auto finish = [this, request, generation, pem = std::move(cert->pem), serial = cert->serial_hex,
                 not_before = cert->not_before, not_after = cert->not_after](absl::Status recorded) mutable {
    const std::string id = request->caller.id.ToString();
    if (absl::IsAborted(recorded) && generation.has_value()) {
      // The registry changed after its status was read: this certificate is dropped unrecorded
      // and never handed out; the request is checked and signed again under the new status.
      registry_changed_->Increment();
      identity_cache_.Forget(*generation);
      if (request->attempts < kMaxRegistryAttempts) return Resolve(std::move(request), /*use_cache=*/true);
      recorded =
          absl::UnavailableError(absl::StrCat("the identity registry changed ", request->attempts,
                                              " times while a certificate for ", id, " was being issued; try again"));
    }
    if (!recorded.ok()) {
      ledger_errors_->Increment();
      logger_->error("not issuing {} serial {}: {}", id, serial, recorded.message());
      return request->done(recorded);
    }
    const SigningAuthority& authority = issuer_->authority();
    std::vector<std::string> chain;
    chain.reserve(1 + authority.chain_pems.size());
    chain.push_back(std::move(pem));
    chain.insert(chain.end(), authority.chain_pems.begin(), authority.chain_pems.end());
    issued_->Increment();
    sign_latency_->Observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - request->start).count());
    logger_->info("issued certificate spiffe_id={} serial={} ttl={}s not_after={} auth=\"{}\"", id, serial,
                  absl::ToInt64Seconds(not_after - not_before),
                  absl::FormatTime(absl::RFC3339_sec, not_after, absl::UTCTimeZone()), request->caller.Describe());
    request->done(std::move(chain));
  };
  if (ledger_ == nullptr) return finish(absl::OkStatus());
  IssuanceRecord record;
  record.serial_hex = cert->serial_hex;
  record.spiffe_id = caller.id.ToString();
  record.not_before = cert->not_before;
  record.not_after = cert->not_after;
  record.public_key_sha256 = Sha256Hex(csr->spki_der);
  record.issuer_serial_hex = issuer_serial_;
  bool jwt = caller.method == AuthenticatedCaller::Method::kJwt;
  record.auth_method = jwt ? "jwt" : "client-cert";
  record.auth_detail = jwt ? absl::StrCat("iss=", caller.jwt_issuer, " sub=", caller.jwt_subject)
                           : absl::StrCat("serial=", caller.client_cert_serial);
  record.issued_at = clock_.Now();
  ledger_->RecordAsync(std::move(record), generation, std::move(finish));
}

absl::StatusOr<std::vector<std::string>> CertificateAuthority::Sign(const CallerCredentials& credentials,
                                                                    const std::string& csr_pem,
                                                                    int64_t validity_seconds) const {
  absl::StatusOr<std::vector<std::string>> result;
  absl::Notification finished;
  SignAsync(credentials, csr_pem, validity_seconds, [&](absl::StatusOr<std::vector<std::string>> r) {
    result = std::move(r);
    finished.Notify();
  });
  finished.WaitForNotification();
  return result;
}

absl::Status CertificateAuthority::CheckIdentity(const AuthenticatedCaller& caller, const IdentityStatus& status,
                                                 absl::Duration* max_ttl, std::vector<std::string>* dns_names) const {
  if (status.blocked.has_value()) {
    return absl::PermissionDeniedError(absl::StrCat("identity ", caller.id.ToString(), " is blocked",
                                                    status.blocked->reason.empty() ? "" : ": ",
                                                    status.blocked->reason));
  }
  if (!status.entry.has_value()) {
    if (!options_.require_registration) return absl::OkStatus();
    return absl::PermissionDeniedError(
        absl::StrCat("identity ", caller.id.ToString(), " is not registered (the server requires registration)"));
  }
  const RegistryEntry& entry = *status.entry;
  if (!EntryAllows(entry, caller)) {
    return absl::PermissionDeniedError(absl::StrCat("the registry entry of ", caller.id.ToString(),
                                                    " does not allow a caller with ", caller.Describe()));
  }
  if (entry.max_ttl > absl::ZeroDuration()) *max_ttl = entry.max_ttl;
  *dns_names = entry.dns_names;
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* CertificateService::CreateCertificate(grpc::CallbackServerContext* context,
                                                                const istio::v1::auth::IstioCertificateRequest* request,
                                                                istio::v1::auth::IstioCertificateResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  CallerCredentials credentials;
  std::shared_ptr<const grpc::AuthContext> auth = context->auth_context();
  bool tls = false;
  if (auth != nullptr) {
    for (const auto& v : auth->FindPropertyValues("transport_security_type")) tls = tls || v == "ssl";
    for (const auto& v : auth->FindPropertyValues("x509_pem_cert"))
      credentials.peer_cert_pem.assign(v.data(), v.size());
    for (const auto& v : auth->FindPropertyValues("x509_pem_cert_chain"))
      credentials.peer_chain_pems.emplace_back(v.data(), v.size());
  }
  if (require_tls_ && !tls) {
    reactor->Finish(
        grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "request authenticate failure: the connection is not TLS"));
    return reactor;
  }
  auto range = context->client_metadata().equal_range("authorization");
  for (auto it = range.first; it != range.second; ++it)
    credentials.authorization.emplace_back(it->second.data(), it->second.size());
  // The reactor finishes when the ledger has the certificate, on the ledger's thread; no gRPC
  // thread waits for the commit.
  ca_->SignAsync(credentials, request->csr(), request->validity_duration(),
                 [reactor, response](absl::StatusOr<std::vector<std::string>> chain) {
                   if (!chain.ok()) return reactor->Finish(ToGrpcStatus(chain.status()));
                   for (auto& pem : *chain) response->add_cert_chain(std::move(pem));
                   reactor->Finish(grpc::Status::OK);
                 });
  return reactor;
}

}  // namespace meshid
