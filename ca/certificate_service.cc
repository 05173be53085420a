#include "ca/certificate_service.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "ca/csr_validator.h"
#include "common/grpc_peer.h"
#include "common/grpc_status.h"
#include "common/keys.h"
#include "common/sha256.h"
#include "common/x509.h"
#include "google/rpc/status.pb.h"

namespace meshid {

namespace {

// The label values of meshid_ca_impersonation_denied_total, by DenialReason.
constexpr const char* kDenialReasonNames[] = {"malformed", "blocked_node", "blocked_identity", "not_parent",
                                              "no_entry"};

// Untrusted text as it may appear in a log line: control characters escaped (no forged
// lines), cut short.
std::string ForLog(absl::string_view text) {
  constexpr size_t kMax = 256;
  std::string out;
  for (char c : text.substr(0, kMax)) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      absl::StrAppend(&out, "\\x", absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2));
    } else {
      out.push_back(c);
    }
  }
  if (text.size() > kMax) absl::StrAppend(&out, "...");
  return out;
}

// ToGrpcStatus, plus the retry delay a refusal carries (RetryDelayOf) as a google.rpc.Status
// with a google.rpc.RetryInfo detail, in the grpc-status-details-bin trailer, where gRPC clients
// look for it (Go: status.FromError(err).Details()).
grpc::Status ToGrpcStatusWithRetryInfo(const absl::Status& status) {
  grpc::Status out = ToGrpcStatus(status);
  auto retry_info = status.GetPayload(kRetryInfoTypeUrl);
  if (!retry_info.has_value()) return out;
  google::rpc::Status details;
  details.set_code(static_cast<int32_t>(status.code()));
  details.set_message(out.error_message());
  google::protobuf::Any* any = details.add_details();
  any->set_type_url(kRetryInfoTypeUrl);
  any->set_value(std::string(*retry_info));
  return grpc::Status(out.error_code(), out.error_message(), details.SerializeAsString());
}

}  // namespace

absl::StatusOr<SpiffeId> TrustedNodeAccountId(absl::string_view trust_domain, absl::string_view item) {
  std::vector<absl::string_view> parts = absl::StrSplit(item, '/');
  if (parts.size() != 2 || parts[0].empty() || parts[1].empty()) {
    return absl::InvalidArgumentError(absl::StrCat("\"", item, "\" is not <namespace>/<serviceaccount>"));
  }
  absl::StatusOr<SpiffeId> id = SpiffeId::ForServiceAccount(trust_domain, parts[0], parts[1]);
  if (!id.ok()) return absl::InvalidArgumentError(absl::StrCat("\"", item, "\": ", id.status().message()));
  return id;
}

std::optional<ImpersonatedIdentity> ImpersonatedIdentityFromMetadata(const google::protobuf::Struct& metadata) {
  auto it = metadata.fields().find("ImpersonatedIdentity");
  if (it == metadata.fields().end()) return std::nullopt;
  if (it->second.kind_case() != google::protobuf::Value::kStringValue) {
    return ImpersonatedIdentity{.spiffe_id = "", .is_string = false};
  }
  return ImpersonatedIdentity{.spiffe_id = it->second.string_value()};
}

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
    : CertificateAuthority(std::move(options), std::make_shared<const AuthoritySource>(std::move(issuer)),
                           std::move(authenticator), registry, ledger, clock, metrics, std::move(logger)) {}

CertificateAuthority::CertificateAuthority(CertificateServiceOptions options,
                                           std::shared_ptr<const AuthoritySource> authorities,
                                           std::shared_ptr<const CallerAuthenticator> authenticator,
                                           IdentityRegistry* registry, GroupCommitLedger* ledger, const Clock& clock,
                                           MetricsRegistry& metrics, LoggerPtr logger)
    : options_(options),
      authorities_(std::move(authorities)),
      authenticator_(std::move(authenticator)),
      registry_(registry),
      ledger_(ledger),
      clock_(clock),
      logger_(std::move(logger)),
      limiter_(options_.limits, clock, metrics) {
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
  static_assert(std::size(kDenialReasonNames) == kDenialReasons);
  for (size_t i = 0; i < kDenialReasons; ++i) {
    impersonation_denied_[i] = &metrics.AddCounter(
        "meshid_ca_impersonation_denied_total",
        "ImpersonatedIdentity requests refused, by reason (the caller is told only that it failed).",
        {{"reason", kDenialReasonNames[i]}});
  }
  sign_latency_ = &metrics.AddHistogram(
      "meshid_ca_sign_latency_seconds", "Time to handle a CreateCertificate request, from receipt to signed chain.",
      {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1});
}

void CertificateAuthority::SignAsync(const CallerCredentials& credentials, const std::string& csr_pem,
                                     int64_t validity_seconds, const std::optional<ImpersonatedIdentity>& impersonated,
                                     SignCallback done) const {
  auto start = std::chrono::steady_clock::now();
  requests_->Increment();
  auto caller = authenticator_->Authenticate(credentials);
  if (!caller.ok()) {
    authn_failures_->Increment();
    return done(caller.status());
  }
  // Before anything else is read or signed, and keyed by who the caller is, never by what it
  // asks for: a node agent minting its workloads' certificates spends its own bucket.
  absl::StatusOr<SigningLimiter::Permit> permit = limiter_.Admit(caller->id.ToString());
  if (!permit.ok()) {
    logger_->debug("{}", permit.status().message());
    return done(permit.status());
  }
  std::optional<SpiffeId> impersonated_id;
  if (impersonated.has_value()) {
    absl::StatusOr<SpiffeId> id = absl::InvalidArgumentError("the ImpersonatedIdentity metadata is not a string");
    if (impersonated->is_string) id = SpiffeId::Parse(impersonated->spiffe_id);
    if (id.ok() && id->trust_domain() != caller->id.trust_domain()) {
      id = absl::InvalidArgumentError(absl::StrCat("it is not in trust domain ", caller->id.trust_domain()));
    }
    if (!id.ok()) {
      permit->Release();
      // The message may quote what the caller sent.
      return done(RefuseImpersonation(*caller, impersonated->spiffe_id,
                                      ImpersonationDenial{DenialReason::kMalformed, ForLog(id.status().message())}));
    }
    impersonated_id = *std::move(id);
  }
  Resolve(std::make_shared<Request>(Request{*std::move(caller), std::move(impersonated_id), csr_pem, validity_seconds,
                                            start, std::move(done), *std::move(permit)}),
          /*use_cache=*/true);
}

absl::StatusOr<std::shared_ptr<const IdentityStatus>> CertificateAuthority::LookUp(const std::string& spiffe_id,
                                                                                   bool use_cache, bool* cached) const {
  if (use_cache) {
    if (std::shared_ptr<const IdentityStatus> status = identity_cache_.Find(spiffe_id)) {
      *cached = true;
      return status;
    }
  }
  // The first request of an identity, the first after a registry change, or a refusal to
  // confirm.
  absl::StatusOr<IdentityStatus> status = registry_->GetIdentityStatus(spiffe_id);
  if (!status.ok()) {
    return absl::UnavailableError(absl::StrCat("the identity registry is unavailable: ", status.status().message()));
  }
  identity_cache_.Put(spiffe_id, *status);
  return std::make_shared<const IdentityStatus>(*std::move(status));
}

void CertificateAuthority::Resolve(std::shared_ptr<Request> request, bool use_cache) const {
  if (registry_ == nullptr) return SignChecked(std::move(request), nullptr, nullptr, /*cached=*/false);
  bool cached = false;
  absl::StatusOr<std::shared_ptr<const IdentityStatus>> identity =
      LookUp(request->subject().ToString(), use_cache, &cached);
  if (!identity.ok()) return request->Finish(identity.status());
  std::shared_ptr<const IdentityStatus> node;  // the caller's, when it mints another identity
  if (request->impersonated.has_value()) {
    absl::StatusOr<std::shared_ptr<const IdentityStatus>> read =
        LookUp(request->caller.id.ToString(), use_cache, &cached);
    if (!read.ok()) return request->Finish(read.status());
    node = *std::move(read);
  }
  SignChecked(std::move(request), identity->get(), node.get(), cached);
}

void CertificateAuthority::SignChecked(std::shared_ptr<Request> request, const IdentityStatus* identity_status,
                                       const IdentityStatus* node_status, bool cached) const {
  const AuthenticatedCaller& caller = request->caller;
  const SpiffeId& subject = request->subject();
  const int64_t validity_seconds = request->validity_seconds;
  absl::Duration max_ttl = options_.max_ttl;
  std::vector<std::string> dns_names;
  if (request->impersonated.has_value()) {
    std::optional<ImpersonationDenial> denial;
    if (identity_status == nullptr) {
      denial = ImpersonationDenial{DenialReason::kNoEntry, "there is no identity registry (--datastore none)"};
    } else {
      denial = CheckImpersonation(caller, *node_status, *identity_status, &max_ttl, &dns_names);
    }
    if (denial.has_value()) {
      // As below: a cached status would never learn of the entry or unblock that lifts it.
      if (cached) return Resolve(std::move(request), /*use_cache=*/false);
      return request->Finish(RefuseImpersonation(caller, subject.ToString(), *denial));
    }
  }
  absl::Status refusal;
  if (identity_status != nullptr && !request->impersonated.has_value()) {
    refusal = CheckIdentity(caller, *identity_status, &max_ttl, &dns_names);
  }
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
    return request->Finish(refusal);
  }
  // The ledger's next commit waits for this certificate's record (ca/ledger.h); a return before
  // RecordAsync ends the wait.
  std::optional<GroupCommitLedger::Expectation> expectation;
  if (ledger_ != nullptr) expectation.emplace(ledger_->ExpectRecord());
  auto csr = ValidateCsr(request->csr_pem, subject);
  if (!csr.ok()) {
    csr_errors_->Increment();
    if (!request->impersonated.has_value()) return request->Finish(csr.status());
    return request->Finish(absl::InvalidArgumentError(
        absl::StrCat(csr.status().message(), " (the ImpersonatedIdentity asked for by ", caller.id.ToString(), ")")));
  }
  // One snapshot for the signature, the chain and the ledger's issuer: a reload in between
  // changes none of them.
  std::shared_ptr<const AuthoritySnapshot> authority = authorities_->Current();
  auto cert = authority->issuer->IssueSvid(csr->spki_der, csr->algorithm, subject, ttl, dns_names);
  if (!cert.ok()) {
    cert_gen_errors_->Increment();
    logger_->error("signing for {} failed: {}", subject.ToString(), cert.status().message());
    // A CA key whose token is gone is a condition to retry (elsewhere, or later), not a bug.
    const absl::StatusCode code =
        absl::IsUnavailable(cert.status()) ? absl::StatusCode::kUnavailable : absl::StatusCode::kInternal;
    return request->Finish(
        absl::Status(code, absl::StrCat("certificate generation failed: ", cert.status().message())));
  }
  ++request->attempts;
  // The ledger row is written only if the registry is still at this generation. With two
  // statuses (the node's and the identity's) the older one's: if they differ, the registry has
  // moved past it and the request is checked and signed again under statuses read at one
  // generation.
  std::optional<int64_t> generation;
  if (identity_status != nullptr) {
    generation = identity_status->registry_generation;
    if (node_status != nullptr) generation = std::min(*generation, node_status->registry_generation);
  }
  // Hands the chain out; runs once the ledger row is durable (or at once without a ledger).
  auto finish = [this, request, generation, authority, pem = std::move(cert->pem), serial = cert->serial_hex,
                 not_before = cert->not_before, not_after = cert->not_after](absl::Status recorded) mutable {
    const std::string id = request->subject().ToString();
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
      return request->Finish(recorded);
    }
    const std::vector<std::string>& chain_pems = authority->authority().chain_pems;
    std::vector<std::string> chain;
    chain.reserve(1 + chain_pems.size());
    chain.push_back(std::move(pem));
    chain.insert(chain.end(), chain_pems.begin(), chain_pems.end());
    issued_->Increment();
    sign_latency_->Observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - request->start).count());
    logger_->info("issued certificate spiffe_id={} serial={} ttl={}s not_after={} auth=\"{}\"{}", id, serial,
                  absl::ToInt64Seconds(not_after - not_before),
                  absl::FormatTime(absl::RFC3339_sec, not_after, absl::UTCTimeZone()), request->caller.Describe(),
                  request->impersonated.has_value() ? " minted by " + request->caller.id.ToString() : "");
    request->Finish(std::move(chain));
  };
  // Signing is over: the wait for the commit holds no slot.
  request->permit.Release();
  if (ledger_ == nullptr) return finish(absl::OkStatus());
  IssuanceRecord record;
  record.serial_hex = cert->serial_hex;
  record.spiffe_id = subject.ToString();
  record.not_before = cert->not_before;
  record.not_after = cert->not_after;
  record.public_key_sha256 = Sha256Hex(csr->spki_der);
  record.issuer_serial_hex = authority->issuer->signing_serial_hex();
  bool jwt = caller.method == AuthenticatedCaller::Method::kJwt;
  record.auth_method = jwt ? "jwt" : "client-cert";
  record.auth_detail = jwt ? absl::StrCat("iss=", caller.jwt_issuer, " sub=", caller.jwt_subject)
                           : absl::StrCat("serial=", caller.client_cert_serial);
  record.issued_at = clock_.Now();
  if (request->impersonated.has_value()) record.minted_by = caller.id.ToString();
  ledger_->RecordAsync(*std::move(expectation), std::move(record), generation, std::move(finish));
}

absl::StatusOr<std::vector<std::string>> CertificateAuthority::Sign(
    const CallerCredentials& credentials, const std::string& csr_pem, int64_t validity_seconds,
    const std::optional<ImpersonatedIdentity>& impersonated) const {
  absl::StatusOr<std::vector<std::string>> result;
  absl::Notification finished;
  SignAsync(credentials, csr_pem, validity_seconds, impersonated, [&](absl::StatusOr<std::vector<std::string>> r) {
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
    if (!status.node_entries.empty()) {
      // Entries with a parent let node agents mint the identity; they do not let it ask itself.
      return absl::PermissionDeniedError(absl::StrCat("identity ", caller.id.ToString(),
                                                      " has no direct registry entry, only entries for node agents "
                                                      "(the server requires registration)"));
    }
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

std::optional<CertificateAuthority::ImpersonationDenial> CertificateAuthority::CheckImpersonation(
    const AuthenticatedCaller& node, const IdentityStatus& node_status, const IdentityStatus& identity_status,
    absl::Duration* max_ttl, std::vector<std::string>* dns_names) const {
  const std::string node_id = node.id.ToString();
  if (node_status.blocked.has_value()) {
    return ImpersonationDenial{DenialReason::kBlockedNode,
                               absl::StrCat("the node agent is blocked: ", node_status.blocked->reason)};
  }
  if (identity_status.blocked.has_value()) {
    return ImpersonationDenial{DenialReason::kBlockedIdentity,
                               absl::StrCat("the identity is blocked: ", identity_status.blocked->reason)};
  }
  for (const RegistryEntry& entry : identity_status.node_entries) {
    if (entry.parent_id != node_id) continue;
    if (entry.max_ttl > absl::ZeroDuration()) *max_ttl = entry.max_ttl;
    *dns_names = entry.dns_names;
    return std::nullopt;
  }
  const bool registered = identity_status.entry.has_value() || !identity_status.node_entries.empty();
  const bool trusted = std::find(options_.trusted_node_accounts.begin(), options_.trusted_node_accounts.end(),
                                 node.id) != options_.trusted_node_accounts.end();
  if (trusted && registered) {
    // A trusted node account stands for every node: the identity's own terms apply.
    if (identity_status.entry.has_value()) {
      if (identity_status.entry->max_ttl > absl::ZeroDuration()) *max_ttl = identity_status.entry->max_ttl;
      *dns_names = identity_status.entry->dns_names;
    }
    return std::nullopt;
  }
  if (!registered) {
    return ImpersonationDenial{DenialReason::kNoEntry, "the identity has no registry entry"};
  }
  return ImpersonationDenial{DenialReason::kNotParent,
                             "no registry entry of the identity names the node agent as its parent, and the node "
                             "agent is not a trusted node account"};
}

absl::Status CertificateAuthority::RefuseImpersonation(const AuthenticatedCaller& node, absl::string_view asked_for,
                                                       const ImpersonationDenial& denial) const {
  authn_failures_->Increment();  // as Istio counts a refused impersonation
  impersonation_denied_[static_cast<size_t>(denial.reason)]->Increment();
  logger_->warn("impersonation refused ({}): {} ({}) asked for \"{}\": {}",
                kDenialReasonNames[static_cast<size_t>(denial.reason)], node.id.ToString(), node.Describe(),
                ForLog(asked_for), denial.detail);
  return absl::UnauthenticatedError(kImpersonationRefused);
}

grpc::ServerUnaryReactor* CertificateService::CreateCertificate(grpc::CallbackServerContext* context,
                                                                const istio::v1::auth::IstioCertificateRequest* request,
                                                                istio::v1::auth::IstioCertificateResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  CallerCredentials credentials;
  GrpcPeer peer = PeerOf(context->auth_context());
  const bool tls = peer.tls;
  credentials.peer_cert_pem = std::move(peer.cert_pem);
  credentials.peer_chain_pems = std::move(peer.chain_pems);
  if (require_tls_ && !tls) {
    reactor->Finish(
        grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "request authenticate failure: the connection is not TLS"));
    return reactor;
  }
  auto range = context->client_metadata().equal_range("authorization");
  for (auto it = range.first; it != range.second; ++it)
    credentials.authorization.emplace_back(it->second.data(), it->second.size());
  // The reactor finishes when the ledger has the certificate, on the thread that led the commit
  // (this one, or another request's): no thread waits for another's commit.
  ca_->SignAsync(credentials, request->csr(), request->validity_duration(),
                 ImpersonatedIdentityFromMetadata(request->metadata()),
                 [reactor, response](absl::StatusOr<std::vector<std::string>> chain) {
                   if (!chain.ok()) return reactor->Finish(ToGrpcStatusWithRetryInfo(chain.status()));
                   for (auto& pem : *chain) response->add_cert_chain(std::move(pem));
                   reactor->Finish(grpc::Status::OK);
                 });
  return reactor;
}

}  // namespace meshid
