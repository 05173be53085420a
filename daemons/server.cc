#include "daemons/server.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "authz/jwks_fetcher.h"
#include "ca/authenticator.h"
#include "ca/authority.h"
#include "ca/authority_source.h"
#include "ca/cert_issuer.h"
#include "ca/certificate_service.h"
#include "ca/crl_publisher.h"
#include "ca/ledger.h"
#include "ca/local_issuer.h"
#include "ca/reloader.h"
#include "ca/rotation_follower.h"
#include "ca/rotation_plan.h"
#include "ca/serving_certificate.h"
#include "ca/shared_ca.h"
#include "common/file_poller.h"
#include "common/files.h"
#include "common/http_status_server.h"
#include "common/metrics.h"
#include "common/net.h"
#include "common/random.h"
#include "common/secret.h"
#include "common/spiffe_id.h"
#include "common/status_macros.h"
#include "common/x509.h"
#include "pkcs11/token_key.h"
#include "pkcs11/uri.h"
#include "policy/server.h"
#include "registration/server.h"
#include "revocation/server.h"
#include "sql/pruner.h"
#include "sql/store.h"
#include "trustbundle/server.h"
#include "trustbundle/wire.h"

namespace meshid::daemons {

absl::Status CaServerConfig::Validate() const {
  std::vector<std::string> problems;
  auto check = [&](const absl::Status& s, absl::string_view flag) {
    if (!s.ok()) problems.push_back(absl::StrCat(flag, ": ", s.message()));
  };
  if (data_dir.empty()) problems.push_back("--data-dir: must not be empty");
  check(ValidateTrustDomain(trust_domain), "--trust-domain");
  check(ParseHostPort(listen_address).status(), "--listen");
  check(ParseHostPort(monitoring_address).status(), "--monitoring-addr");
  check(ParseKeyAlgorithm(self_signed_key).status(), "--self-signed-key");
  if (default_workload_ttl <= absl::ZeroDuration()) problems.push_back("DEFAULT_WORKLOAD_CERT_TTL: must be positive");
  if (max_workload_ttl <= absl::ZeroDuration()) problems.push_back("MAX_WORKLOAD_CERT_TTL: must be positive");
  if (default_workload_ttl > max_workload_ttl) {
    problems.push_back("DEFAULT_WORKLOAD_CERT_TTL: must not exceed MAX_WORKLOAD_CERT_TTL");
  }
  if (require_registration && datastore == "none") {
    problems.push_back("--require-registration: needs a datastore (not --datastore none)");
  }
  if (!trusted_node_accounts.empty() && datastore == "none") {
    problems.push_back("--trusted-node-accounts: needs a datastore (not --datastore none)");
  }
  if (ValidateTrustDomain(trust_domain).ok()) {  // else already reported
    for (const std::string& item : trusted_node_accounts) {
      check(TrustedNodeAccountId(trust_domain, item).status(), "--trusted-node-accounts");
    }
  }
  if (ledger_retention < absl::ZeroDuration()) problems.push_back("--ledger-retention: must not be negative");
  if (ledger_commit_interval < absl::ZeroDuration() || ledger_commit_interval > absl::Seconds(1)) {
    problems.push_back("--ledger-commit-interval: must be between 0 and 1s");
  }
  if (policy_poll_interval <= absl::ZeroDuration()) problems.push_back("--policy-poll-interval: must be positive");
  if (crl_poll_interval <= absl::ZeroDuration()) problems.push_back("--crl-poll-interval: must be positive");
  if (crl_validity < absl::Minutes(2)) problems.push_back("--crl-validity: must be at least 2m");
  if (!(signing_rate_per_caller >= 0)) problems.push_back("--signing-rate-per-caller: must be 0 (no limit) or more");
  if (!(signing_burst_per_caller >= 1) && signing_rate_per_caller > 0) {
    problems.push_back("--signing-burst-per-caller: must be at least 1 when --signing-rate-per-caller is set");
  }
  if (max_concurrent_signing < 0) problems.push_back("--max-concurrent-signing: must be 0 (no limit) or more");
  if (token_audiences.empty()) problems.push_back("--token-audience: at least one audience is required");
  for (const auto& [issuer, jwks] : jwt_issuers) {
    if (issuer.empty() || jwks.empty()) problems.push_back("--jwt-issuer: want ISSUER=JWKS_FILE or ISSUER=JWKS_URL");
  }
  if (reload_interval <= absl::ZeroDuration()) problems.push_back("--reload-interval: must be positive");
  if (jwks_refresh_interval <= absl::ZeroDuration()) problems.push_back("--jwks-refresh-interval: must be positive");
  ca_key.Validate(problems);
  if (!cacerts_dir.empty() && !std::filesystem::is_directory(cacerts_dir)) {
    problems.push_back(absl::StrCat("--cacerts-dir: ", cacerts_dir, " is not a directory"));
  }
  if (problems.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrJoin(problems, "; "));
}

void CaTokenKeyConfig::Validate(std::vector<std::string>& problems) const {
  // Without --ca-key, a module and PIN serve a `meshid ca rotate` key in a token.
  if (!uri.empty()) {
    if (absl::Status parsed = pkcs11::ParseUri(uri).status(); !parsed.ok()) {
      problems.push_back(absl::StrCat("--ca-key: ", parsed.message()));
    }
  }
}

absl::StatusOr<std::shared_ptr<const pkcs11::TokenKey>> OpenCaTokenKey(const CaTokenKeyConfig& config,
                                                                       const Clock& clock) {
  pkcs11::TokenKeyOptions options;
  options.uri = config.uri;
  options.module_path = config.module;
  options.sessions = config.sessions;
  options.pin_file = config.pin_file;
  if (config.pin_file.empty()) options.pin = SecretString(config.pin);
  auto key = pkcs11::TokenKey::Open(std::move(options), clock);
  if (!key.ok()) return absl::Status(key.status().code(), absl::StrCat("--ca-key: ", key.status().message()));
  return std::shared_ptr<const pkcs11::TokenKey>(*std::move(key));
}

namespace {

class CaServerImpl final : public CaServer {
 public:
  int port() const override { return port_; }
  int monitoring_port() const override { return monitoring_ ? monitoring_->port() : 0; }
  void Wait() override { grpc_server_->Wait(); }
  void Shutdown(absl::Duration grace) override {
    ready_ = false;
    if (policy_ != nullptr) policy_->Shutdown();  // ends the agents' long-lived streams
    if (revocation_ != nullptr) revocation_->Shutdown();
    if (trust_bundles_ != nullptr) trust_bundles_->Shutdown();
    if (registration_ != nullptr) registration_->Shutdown();
    grpc_server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
  }

  // Declared in dependency order: members are destroyed bottom-up, so the endpoints stop before
  // the service, and the ledger drains before the store closes.
  std::unique_ptr<MetricsRegistry> metrics_;
  OpenSslRandom random_;
  std::shared_ptr<const pkcs11::TokenKey> ca_token_key_;  // null unless --ca-key pkcs11:...
  std::unique_ptr<Store> store_;
  std::unique_ptr<GroupCommitLedger> ledger_;
  std::unique_ptr<LedgerPruner> pruner_;
  std::unique_ptr<revocation::RevocationDistributionServer> revocation_;
  std::unique_ptr<trustbundle::TrustBundleDistributionServer> trust_bundles_;
  std::unique_ptr<registration::RegistrationDistributionServer> registration_;
  std::unique_ptr<CrlPublisher> crl_;
  std::unique_ptr<CertificateService> service_;
  std::unique_ptr<policy::PolicyDistributionServer> policy_;
  std::unique_ptr<grpc::Server> grpc_server_;
  std::unique_ptr<HttpStatusServer> monitoring_;
  // Live reload of the plug-in files and the JWKS: the thread stops first, then the reloaders.
  std::unique_ptr<PluggedInCaReloader> cacerts_reloader_;  // null without --cacerts-dir
  std::unique_ptr<CaRotationFollower> rotation_;           // null without a store
  uint64_t bundle_generation_ = 0;                         // of the snapshot whose roots agents have
  std::unique_ptr<ServingCertificateFiles> serving_;       // null with --insecure-plaintext
  std::unique_ptr<JwksReloader> jwks_reloader_;
  std::unique_ptr<PollingThread> reload_thread_;
  int port_ = 0;
  std::atomic<bool> ready_{false};

  // Hands the roots of `snapshot` to the agents' trust bundle streams, once per snapshot.
  absl::Status PublishTrustBundle(const AuthoritySnapshot& snapshot, const std::string& trust_domain) {
    if (bundle_generation_ == snapshot.generation + 1) return absl::OkStatus();
    MESHID_ASSIGN_OR_RETURN(auto bundle,
                            trustbundle::MakeTrustBundle(trust_domain, snapshot.authority().root_bundle_pem));
    MESHID_RETURN_IF_ERROR(trust_bundles_->Publish(bundle));
    bundle_generation_ = snapshot.generation + 1;
    return absl::OkStatus();
  }
};

// The configured issuers, without keys for the --jwt-issuer ones (JwksReloader::Create loads
// them), and the local issuer with its key, which must be the one the store records for every
// replica (`store` null: none to agree with).
absl::StatusOr<std::vector<JwtIssuer>> LoadIssuers(const CaServerConfig& config, CaMaterialStore* store,
                                                   const Clock& clock, const LoggerPtr& logger) {
  std::vector<JwtIssuer> issuers;
  for (const auto& [issuer, location] : config.jwt_issuers) {
    issuers.push_back(JwtIssuer{issuer, Jwks(), config.token_audiences});
  }
  if (config.local_token_issuer) {
    const std::string key_file = (std::filesystem::path(config.data_dir) / kLocalTokenKeyFile).string();
    if (store != nullptr && !std::filesystem::exists(key_file)) {
      MESHID_RETURN_IF_ERROR(
          RefuseToCreateWhatTheStoreHas(*store, kCaMaterialLocalTokenKey, key_file, config.replace_store_ca));
    }
    MESHID_ASSIGN_OR_RETURN(LocalTokenIssuer local, LocalTokenIssuer::Load(config.data_dir, /*create=*/true));
    if (store != nullptr) {
      MESHID_ASSIGN_OR_RETURN(std::string fingerprint, PublicKeyFingerprint(local.key()));
      MESHID_RETURN_IF_ERROR(AgreeWithStoredCa(
          *store, SharedCaCheck{kCaMaterialLocalTokenKey, fingerprint, key_file, config.replace_store_ca}, clock,
          logger));
    }
    MESHID_ASSIGN_OR_RETURN(JwtIssuer issuer, local.AsJwtIssuer(config.token_audiences));
    issuers.push_back(std::move(issuer));
  }
  return issuers;
}

}  // namespace

absl::StatusOr<std::unique_ptr<CaServer>> CaServer::Start(const CaServerConfig& config, const Clock& clock,
                                                          LoggerPtr logger) {
  MESHID_RETURN_IF_ERROR(config.Validate());
  auto server = std::make_unique<CaServerImpl>();
  RandomSource& random = server->random_;
  server->metrics_ = std::make_unique<MetricsRegistry>();
  // The store first: a bad --datastore must fail before any key is written to the data dir.
  MESHID_RETURN_IF_ERROR(EnsureDirectory(config.data_dir, 0700));
  if (config.datastore == "none") {
    logger->warn("--datastore none: no issuance ledger, registry or deny list (benchmarking only)");
  } else {
    std::string url = StoreUrlFromFlags(config.data_dir, config.datastore);
    auto store = OpenStore(url, clock, logger);
    if (!store.ok())
      return absl::Status(store.status().code(), absl::StrCat("--datastore: ", store.status().message()));
    server->store_ = std::move(*store);
    // PostgreSQL overlaps concurrent commits (ca/ledger.h); 4 ledger writers of the pool's
    // connections (8 by default) leave room for registry reads and the policy poller.
    const bool postgres = server->store_->backend() == "postgresql";
    GroupCommitOptions ledger_options;
    ledger_options.writers = postgres ? 4 : 1;
    ledger_options.commit_interval = config.ledger_commit_interval;
    server->ledger_ = std::make_unique<GroupCommitLedger>(*server->store_, *server->metrics_, ledger_options);
    LedgerPrunerOptions prune;
    prune.horizon = config.ledger_retention;
    MESHID_ASSIGN_OR_RETURN(server->pruner_, LedgerPruner::Create(*server->store_, clock, logger, prune));
    server->pruner_->Start();
    logger->info("store: {}{}", server->store_->description(),
                 config.require_registration ? "; identities must be registered" : "");
  }

  if (!config.ca_key.uri.empty()) {
    CaTokenKeyConfig key_config = config.ca_key;
    // A session per signing in progress, up to 16.
    key_config.sessions = config.max_concurrent_signing > 0 ? std::clamp(config.max_concurrent_signing, 2, 16) : 16;
    MESHID_ASSIGN_OR_RETURN(server->ca_token_key_, OpenCaTokenKey(key_config, clock));
    logger->info("CA key in a PKCS#11 token: {}", server->ca_token_key_->description());
  }
  std::shared_ptr<const SigningAuthority> authority;
  std::optional<PluggedInFiles> plugged_in;  // what the plug-in material was read from
  if (config.cacerts_dir.empty()) {
    SelfSignedOptions options;
    options.data_dir = config.data_dir;
    options.trust_domain = config.trust_domain;
    options.key_algorithm = *ParseKeyAlgorithm(config.self_signed_key);
    options.token_key = server->ca_token_key_;
    // What a first start creates: the key file, or (key in a token) the root certificate.
    const std::string created_file =
        (std::filesystem::path(config.data_dir) / (config.ca_key.uri.empty() ? "ca-key.pem" : "ca-cert.pem")).string();
    if (server->store_ != nullptr && !std::filesystem::exists(created_file)) {
      MESHID_RETURN_IF_ERROR(
          RefuseToCreateWhatTheStoreHas(*server->store_, kCaMaterialSigningCa, created_file, config.replace_store_ca));
    }
    MESHID_ASSIGN_OR_RETURN(authority, LoadOrCreateSelfSignedAuthority(options, clock, random));
  } else {
    MESHID_ASSIGN_OR_RETURN(plugged_in, ReadPluggedInFiles(config.cacerts_dir, server->ca_token_key_ != nullptr));
    MESHID_ASSIGN_OR_RETURN(authority, ParsePluggedInAuthority(*plugged_in, clock, server->ca_token_key_));
  }
  // The store's CA rotation record, when there is one, decides the material (a replica started
  // during or after `meshid ca rotate` signs as its peers do).
  std::function<absl::Status(const SigningAuthority&)> agree_with_replicas;
  if (server->store_ != nullptr) {
    agree_with_replicas = [store = server->store_.get(), &clock, logger](const SigningAuthority& next) {
      return AgreeWithStoredCa(*store, SharedCaCheck{kCaMaterialSigningCa, TrustAnchorFingerprint(next), next.source},
                               clock, logger);
    };
    CaRotationFollowerOptions rotation_options;
    rotation_options.trust_bundle_file = config.data_dir + "/root-cert.pem";
    rotation_options.approve_new_roots = agree_with_replicas;
    rotation_options.open_token_key = [key_config = config.ca_key,
                                       &clock](const std::string& uri) -> absl::StatusOr<CaTokenKey> {
      CaTokenKeyConfig c = key_config;
      c.uri = uri;
      return OpenCaTokenKey(c, clock);
    };
    MESHID_ASSIGN_OR_RETURN(server->rotation_,
                            CaRotationFollower::Create(std::move(rotation_options), *server->store_, authority, clock,
                                                       random, *server->metrics_, logger));
    authority = server->rotation_->initial();
  }
  if (server->store_ != nullptr) {
    // Replicas on one store are one CA: the first records its roots, the others must match.
    MESHID_RETURN_IF_ERROR(AgreeWithStoredCa(*server->store_,
                                             SharedCaCheck{kCaMaterialSigningCa, TrustAnchorFingerprint(*authority),
                                                           authority->source, config.replace_store_ca},
                                             clock, logger));
  }
  MESHID_RETURN_IF_ERROR(WriteTrustBundle(*authority, config.data_dir));
  logger->info("CA ready: {}, signing cert serial {} valid until {}; trust bundle written to {}/root-cert.pem",
               authority->source, SerialHex(authority->cert.get()),
               absl::FormatTime(absl::RFC3339_sec, NotAfter(authority->cert.get()), absl::UTCTimeZone()),
               config.data_dir);

  MetricsRegistry& metrics = *server->metrics_;
  if (server->ca_token_key_ != nullptr) {
    metrics.AddComputedGauge("meshid_ca_key_available",
                             "1 while the CA key's PKCS#11 token answers, 0 while it is gone (a scrape may reconnect)",
                             [key = server->ca_token_key_] { return key->Health().ok() ? 1.0 : 0.0; });
  }
  MESHID_ASSIGN_OR_RETURN(std::shared_ptr<const CertIssuer> issuer, CertIssuer::Create(authority, clock, random));
  // Every consumer of the signing material reads it from here per request; a reload of the
  // plug-in files replaces it (ca/reloader.h).
  auto authorities = std::make_shared<AuthoritySource>(issuer);
  if (plugged_in.has_value()) {
    PluggedInCaReloaderOptions reload_options;
    reload_options.cacerts_dir = config.cacerts_dir;
    reload_options.trust_bundle_file = config.data_dir + "/root-cert.pem";
    reload_options.token_key = server->ca_token_key_;
    reload_options.approve_new_roots = agree_with_replicas;
    server->cacerts_reloader_ = std::make_unique<PluggedInCaReloader>(reload_options, *std::move(plugged_in),
                                                                      *authorities, clock, random, metrics, logger);
  }

  MESHID_ASSIGN_OR_RETURN(std::vector<JwtIssuer> issuers, LoadIssuers(config, server->store_.get(), clock, logger));
  std::vector<std::string> issuer_names;
  for (const auto& i : issuers) issuer_names.push_back(i.issuer);
  auto jwt_authenticator = std::make_unique<JwtAuthenticator>(config.trust_domain, std::move(issuers), clock);
  JwksReloaderOptions jwks_options;
  for (const auto& [issuer_name, location] : config.jwt_issuers)
    jwks_options.issuers.push_back({issuer_name, location});
  jwks_options.url_refresh_interval = config.jwks_refresh_interval;
  // https verifies the identity provider against the system trust store.
  auto fetch_jwks = [fetcher = std::make_shared<authz::DefaultJwksFetcher>()](const std::string& url) {
    return fetcher->Fetch(url);
  };
  MESHID_ASSIGN_OR_RETURN(server->jwks_reloader_, JwksReloader::Create(jwks_options, *jwt_authenticator, fetch_jwks,
                                                                       clock, random, metrics, logger));
  auto authenticator = std::make_shared<const CompositeAuthenticator>(
      std::make_unique<ClientCertAuthenticator>(authorities, config.trust_domain, clock), std::move(jwt_authenticator));

  // Agents and proxies authenticate to the streams as callers of the CSR API do.
  const bool require_tls = !config.insecure_plaintext;
  auto authenticate = [authenticator, require_tls](const xds::Caller& c) -> absl::StatusOr<std::string> {
    if (require_tls && !c.tls) return absl::UnauthenticatedError("the connection is not TLS");
    MESHID_ASSIGN_OR_RETURN(AuthenticatedCaller caller, authenticator->Authenticate(CallerCredentials{
                                                            c.authorization, c.peer_cert_pem, c.peer_chain_pems}));
    return caller.id.ToString();
  };
  // The trust bundle, pushed to every agent when the roots change (a CA rotation's publish).
  server->trust_bundles_ = trustbundle::TrustBundleDistributionServer::Create(authenticate, metrics, logger);
  MESHID_RETURN_IF_ERROR(server->PublishTrustBundle(*authorities->Current(), config.trust_domain));
  if (server->store_ != nullptr) {
    // The CRL, rebuilt on every revocation, pushed to every agent (meshid.revocation.v1).
    server->revocation_ = revocation::RevocationDistributionServer::Create(authenticate, metrics, logger);
    CrlPublisherOptions crl_options;
    crl_options.output_file = config.data_dir + "/crl.pem";
    crl_options.poll_interval = config.crl_poll_interval;
    crl_options.validity = config.crl_validity;
    crl_options.on_publish = [raw = server->revocation_.get(), logger](const std::shared_ptr<const PublishedCrl>& crl) {
      // The chain from the CRL's signer up to a root, for agents to check it with.
      meshid::revocation::v1::RevocationList list;
      if (!IsSelfSigned(crl->signer->cert.get())) {
        list.add_issuer_chain_der(CertToDer(crl->signer->cert.get()));
        for (const auto& c : crl->signer->intermediates) list.add_issuer_chain_der(CertToDer(c.get()));
      }
      list.set_crl_der(crl->der);
      list.set_crl_number(crl->number);
      if (auto s = raw->Publish(list); !s.ok()) logger->error("pushing CRL {}: {}", crl->number, s.message());
    };
    MESHID_ASSIGN_OR_RETURN(server->crl_, CrlPublisher::Create(authorities, *server->store_, clock, *server->metrics_,
                                                               logger, crl_options));
    server->crl_->Start();
  }

  CertificateServiceOptions service_options;
  service_options.default_ttl = config.default_workload_ttl;
  service_options.max_ttl = config.max_workload_ttl;
  service_options.require_tls = !config.insecure_plaintext;
  service_options.require_registration = config.require_registration;
  service_options.limits.rate_per_caller = config.signing_rate_per_caller;
  service_options.limits.burst_per_caller = config.signing_burst_per_caller;
  service_options.limits.max_concurrent = config.max_concurrent_signing;
  for (const std::string& item : config.trusted_node_accounts) {
    MESHID_ASSIGN_OR_RETURN(SpiffeId id, TrustedNodeAccountId(config.trust_domain, item));
    service_options.trusted_node_accounts.push_back(std::move(id));
  }
  if (!config.trusted_node_accounts.empty()) {
    // Without Kubernetes there is no pod-to-node binding to check a trusted node account against.
    logger->info("trusted node accounts (may mint any registered identity): {}",
                 absl::StrJoin(config.trusted_node_accounts, ", "));
  }
  logger->info("signing limits: {} certificates/s per caller (burst {}), {} concurrent signings (0: no limit)",
               config.signing_rate_per_caller, config.signing_burst_per_caller, config.max_concurrent_signing);
  // Without a datastore both are null: no registry checks, nothing recorded.
  auto ca = std::make_shared<const CertificateAuthority>(
      service_options, authorities, authenticator, server->store_.get(), server->ledger_.get(), clock, metrics, logger);
  server->service_ = std::make_unique<CertificateService>(ca, service_options.require_tls);

  // Expiry gauges (Istio's names): seconds left, negative once expired; of the material in force.
  auto root_expiry = [authorities] {
    absl::Time expiry = absl::InfiniteFuture();
    for (const auto& r : authorities->Current()->authority().roots) expiry = std::min(expiry, NotAfter(r.get()));
    return expiry;
  };
  auto chain_expiry = [authorities] {
    const SigningAuthority& a = authorities->Current()->authority();
    absl::Time expiry = NotAfter(a.cert.get());
    for (const auto& c : a.intermediates) expiry = std::min(expiry, NotAfter(c.get()));
    return expiry;
  };
  metrics.AddComputedGauge("citadel_server_root_cert_expiry_timestamp", "Unix time when the first root expires.",
                           [root_expiry] { return static_cast<double>(absl::ToUnixSeconds(root_expiry())); });
  metrics.AddComputedGauge("citadel_server_root_cert_expiry_seconds", "Seconds until the first root expires.",
                           [&clock, root_expiry] { return absl::ToDoubleSeconds(root_expiry() - clock.Now()); });
  metrics.AddComputedGauge("citadel_server_cert_chain_expiry_timestamp", "Unix time when the signing chain expires.",
                           [chain_expiry] { return static_cast<double>(absl::ToUnixSeconds(chain_expiry())); });
  metrics.AddComputedGauge("citadel_server_cert_chain_expiry_seconds", "Seconds until the signing chain expires.",
                           [&clock, chain_expiry] { return absl::ToDoubleSeconds(chain_expiry() - clock.Now()); });
  if (server->store_ != nullptr) {
    // Who holds a CA rotation back, from what the agents reported to any replica: the agents and
    // proxies that can or cannot validate the new CA yet (both 0 unless a rotation is published
    // or active; -1 while the store cannot be read). Read from the store on each scrape.
    auto adoption = [store = server->store_.get()](bool can_validate) -> double {
      auto record = store->GetCaRotation();
      if (!record.ok()) return -1;
      if (!record->has_value() ||
          ((*record)->phase != CaRotationPhase::kPublished && (*record)->phase != CaRotationPhase::kActive)) {
        return 0;
      }
      auto rows = store->ListPolicyStatus();
      if (!rows.ok()) return -1;
      double count = 0;
      for (const AdoptionRow& row : RotationAdoption(**record, *rows)) {
        if (row.counts && row.can_validate_new_ca == can_validate) ++count;
      }
      return count;
    };
    const char* help = "Agents and connected proxies that can (or cannot) validate the CA rotation's new CA";
    metrics.AddComputedGauge("meshid_ca_rotation_adoption", help, [adoption] { return adoption(true); },
                             {{"state", "can_validate"}});
    metrics.AddComputedGauge("meshid_ca_rotation_adoption", help, [adoption] { return adoption(false); },
                             {{"state", "cannot_validate"}});
  }

  grpc::ServerBuilder builder;
  std::shared_ptr<grpc::ServerCredentials> creds;
  if (config.insecure_plaintext) {
    logger->warn("--insecure-plaintext: serving the CA WITHOUT TLS on {}; tokens travel in the clear",
                 config.listen_address);
    creds = grpc::InsecureServerCredentials();
  } else {
    // The serving certificate is issued by the CA itself, fresh on every start, and again after
    // a reload of the plug-in CA or at half its lifetime (the reload thread below); gRPC re-reads
    // its files every second.
    ServingCertificateOptions serving;
    serving.dir = config.data_dir + "/serving";
    serving.names = {"localhost", "istiod.istio-system.svc", "127.0.0.1"};
    serving.names.insert(serving.names.end(), config.server_sans.begin(), config.server_sans.end());
    MESHID_ASSIGN_OR_RETURN(ServingCertificateFiles files, ServingCertificateFiles::Create(serving));
    MESHID_RETURN_IF_ERROR(files.Renew(*issuer));
    auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
        files.key_file(), files.chain_file(), /*refresh_interval_sec=*/1);
    grpc::experimental::TlsServerCredentialsOptions tls(provider);
    tls.watch_identity_key_cert_pairs();
    // Client certificates are verified by ClientCertAuthenticator, which can say what is wrong.
    tls.set_cert_request_type(GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_BUT_DONT_VERIFY);
    creds = grpc::experimental::TlsServerCredentials(tls);
    server->serving_ = std::make_unique<ServingCertificateFiles>(std::move(files));
    logger->info("serving certificate serial {}, SANs: {}", server->serving_->serial_hex(),
                 absl::StrJoin(serving.names, ", "));
  }
  builder.AddListeningPort(config.listen_address, creds, &server->port_);
  builder.RegisterService(server->service_.get());
  builder.RegisterService(server->trust_bundles_->service());
  if (server->store_ != nullptr) {
    // Policy snapshots for agents (meshid.policy.v1).
    policy::PolicyDistributionServerOptions policy_options;
    policy_options.poll_interval = config.policy_poll_interval;
    MESHID_ASSIGN_OR_RETURN(server->policy_,
                            policy::PolicyDistributionServer::Create(policy_options, *server->store_, *server->store_,
                                                                     authenticate, clock, metrics, logger));
    builder.RegisterService(server->policy_->service());
    builder.RegisterService(server->revocation_->service());
    // Each node agent's registration entries (meshid.registration.v1).
    registration::RegistrationServerOptions registration_options;
    registration_options.poll_interval = config.registration_poll_interval;
    MESHID_ASSIGN_OR_RETURN(server->registration_,
                            registration::RegistrationDistributionServer::Create(registration_options, authenticate,
                                                                                 *server->store_, metrics, logger));
    builder.RegisterService(server->registration_->service());
    server->registration_->Start();
  }
  builder.SetMaxReceiveMessageSize(1 << 20);
  server->grpc_server_ = builder.BuildAndStart();
  if (!server->grpc_server_ || server->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("--listen: cannot listen on ", config.listen_address));
  }

  CaServerImpl* raw = server.get();
  std::map<std::string, HttpHandler> handlers;
  handlers["/metrics"] = [&metrics](const std::string&) {
    return HttpReply{200, "text/plain; version=0.0.4; charset=utf-8", metrics.RenderPrometheus()};
  };
  handlers["/healthz"] = [](const std::string&) { return HttpReply{200, "text/plain; charset=utf-8", "ok\n"}; };
  if (server->crl_ != nullptr) {
    handlers["/crl"] = [raw](const std::string&) {
      return HttpReply{200, "application/pkix-crl", raw->crl_->current()->der};
    };
  }
  handlers["/readyz"] = [raw](const std::string&) {
    if (!raw->ready_) return HttpReply{503, "text/plain; charset=utf-8", "not ready\n"};
    // A CA whose key's token is gone cannot sign; asking also brings the token back when due.
    if (raw->ca_token_key_ != nullptr) {
      if (absl::Status health = raw->ca_token_key_->Health(); !health.ok()) {
        return HttpReply{503, "text/plain; charset=utf-8", absl::StrCat("not ready: ", health.message(), "\n")};
      }
    }
    return HttpReply{200, "text/plain; charset=utf-8", "ready\n"};
  };
  auto monitoring = HttpStatusServer::Create(config.monitoring_address, std::move(handlers));
  if (!monitoring.ok()) {
    server->grpc_server_->Shutdown();
    return absl::Status(monitoring.status().code(), absl::StrCat("--monitoring-addr: ", monitoring.status().message()));
  }
  server->monitoring_ = std::move(*monitoring);
  server->reload_thread_ = std::make_unique<PollingThread>(
      config.reload_interval, [raw, authorities, &clock, logger, trust_domain = config.trust_domain] {
        // Each logs and counts its own refusals; the material in force stays. Once a CA rotation is
        // recorded, the record decides the material, not the plug-in files.
        if (raw->rotation_ != nullptr) {
          if (absl::StatusOr<bool> moved = raw->rotation_->RunOne(*authorities);
              !moved.ok() && absl::IsUnavailable(moved.status())) {
            logger->warn("reading the CA rotation record: {}", moved.status().message());
          }
        }
        const bool following_rotation = raw->rotation_ != nullptr && raw->rotation_->following();
        if (raw->cacerts_reloader_ != nullptr && !following_rotation) (void)raw->cacerts_reloader_->RunOne();
        (void)raw->jwks_reloader_->RunOne();
        if (absl::Status s = raw->PublishTrustBundle(*authorities->Current(), trust_domain); !s.ok()) {
          logger->error("pushing the trust bundle: {}", s.message());
        }
        if (raw->serving_ != nullptr) {
          // A serving certificate of the material in force: one from a replaced chain stops
          // verifying at agents once its root leaves their bundle.
          const std::shared_ptr<const AuthoritySnapshot> current = authorities->Current();
          const CertIssuer& issuer = *current->issuer;
          absl::StatusOr<bool> renewed = raw->serving_->RenewIfDue(issuer, clock);
          if (!renewed.ok()) {
            logger->error("renewing the serving certificate: {}", renewed.status().message());
          } else if (*renewed) {
            logger->info("serving certificate renewed: serial {}, signed by serial {}", raw->serving_->serial_hex(),
                         issuer.signing_serial_hex());
          }
        }
      });
  server->ready_ = true;
  HostPort listen = *ParseHostPort(config.listen_address);
  listen.port = static_cast<uint16_t>(server->port_);
  logger->info("trusted token issuers: {}; accepted audiences: {}", absl::StrJoin(issuer_names, ", "),
               absl::StrJoin(config.token_audiences, ", "));
  logger->info("listening on {} ({}), monitoring on port {}", listen.ToString(),
               config.insecure_plaintext ? "plaintext" : "TLS", server->monitoring_port());
  return std::unique_ptr<CaServer>(std::move(server));
}

}  // namespace meshid::daemons
