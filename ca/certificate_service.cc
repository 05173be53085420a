#include "ca/certificate_service.h"

#include <grpcpp/grpcpp.h>

#include <chrono>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "ca/csr_validator.h"
#include "common/grpc_status.h"

namespace meshid {

CertificateAuthority::CertificateAuthority(CertificateServiceOptions options, std::shared_ptr<const CertIssuer> issuer,
                                           std::shared_ptr<const CallerAuthenticator> authenticator,
                                           MetricsRegistry& metrics, LoggerPtr logger)
    : options_(options), issuer_(std::move(issuer)), authenticator_(std::move(authenticator)), logger_(std::move(logger)) {
  // Istio's metric names (security/pkg/server/ca/monitoring.go), so existing dashboards work.
  requests_ = &metrics.AddCounter("citadel_server_csr_count", "CreateCertificate requests received.");
  issued_ = &metrics.AddCounter("citadel_server_success_cert_issuance_count", "Certificates issued.");
  authn_failures_ = &metrics.AddCounter("citadel_server_authentication_failure_count", "Requests whose caller failed authentication.");
  const char* err_help = "CSR signing errors by reason.";
  csr_errors_ = &metrics.AddCounter("citadel_server_csr_sign_err_count", err_help, {{"error", "CSR_ERROR"}});
  ttl_errors_ = &metrics.AddCounter("citadel_server_csr_sign_err_count", err_help, {{"error", "TTL_ERROR"}});
  cert_gen_errors_ = &metrics.AddCounter("citadel_server_csr_sign_err_count", err_help, {{"error", "CERT_GEN_ERROR"}});
  sign_latency_ = &metrics.AddHistogram("meshid_ca_sign_latency_seconds",
                                        "Time to handle a CreateCertificate request, from receipt to signed chain.",
                                        {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1});
}

absl::StatusOr<std::vector<std::string>> CertificateAuthority::Sign(const CallerCredentials& credentials,
                                                                    const std::string& csr_pem,
                                                                    int64_t validity_seconds) const {
  auto start = std::chrono::steady_clock::now();
  requests_->Increment();
  auto caller = authenticator_->Authenticate(credentials);
  if (!caller.ok()) {
    authn_failures_->Increment();
    return caller.status();
  }
  absl::Duration ttl = validity_seconds <= 0 ? options_.default_ttl : absl::Seconds(validity_seconds);
  if (ttl > options_.max_ttl) {
    ttl_errors_->Increment();
    return absl::InvalidArgumentError(absl::StrCat("requested TTL ", validity_seconds, "s is greater than the max allowed TTL ",
                                                   absl::ToInt64Seconds(options_.max_ttl), "s"));
  }
  auto csr = ValidateCsr(csr_pem, caller->id);
  if (!csr.ok()) {
    csr_errors_->Increment();
    return csr.status();
  }
  auto cert = issuer_->IssueSvid(csr->spki_der, csr->algorithm, caller->id, ttl);
  if (!cert.ok()) {
    cert_gen_errors_->Increment();
    logger_->error("signing for {} failed: {}", caller->id.ToString(), cert.status().message());
    return absl::InternalError(absl::StrCat("certificate generation failed: ", cert.status().message()));
  }
  std::vector<std::string> chain;
  chain.reserve(1 + issuer_->authority().chain_pems.size());
  chain.push_back(std::move(cert->pem));
  for (const std::string& pem : issuer_->authority().chain_pems) chain.push_back(pem);
  issued_->Increment();
  sign_latency_->Observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  logger_->info("issued certificate spiffe_id={} serial={} ttl={}s not_after={} auth=\"{}\"", caller->id.ToString(),
                cert->serial_hex, absl::ToInt64Seconds(cert->not_after - cert->not_before),
                absl::FormatTime(absl::RFC3339_sec, cert->not_after, absl::UTCTimeZone()), caller->Describe());
  return chain;
}

grpc::Status CertificateService::CreateCertificate(grpc::ServerContext* context,
                                                   const istio::v1::auth::IstioCertificateRequest* request,
                                                   istio::v1::auth::IstioCertificateResponse* response) {
  CallerCredentials credentials;
  std::shared_ptr<const grpc::AuthContext> auth = context->auth_context();
  bool tls = false;
  if (auth != nullptr) {
    for (const auto& v : auth->FindPropertyValues("transport_security_type")) tls = tls || v == "ssl";
    for (const auto& v : auth->FindPropertyValues("x509_pem_cert")) credentials.peer_cert_pem.assign(v.data(), v.size());
    for (const auto& v : auth->FindPropertyValues("x509_pem_cert_chain")) credentials.peer_chain_pems.emplace_back(v.data(), v.size());
  }
  if (require_tls_ && !tls) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "request authenticate failure: the connection is not TLS");
  }
  auto range = context->client_metadata().equal_range("authorization");
  for (auto it = range.first; it != range.second; ++it) credentials.authorization.emplace_back(it->second.data(), it->second.size());
  auto chain = ca_->Sign(credentials, request->csr(), request->validity_duration());
  if (!chain.ok()) return ToGrpcStatus(chain.status());
  for (auto& pem : *chain) response->add_cert_chain(std::move(pem));
  return grpc::Status::OK;
}

}  // namespace meshid
