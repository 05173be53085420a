// `meshid server`: the certificate authority.
#include <csignal>
#include <iostream>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "cli/ca_key_flags.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "common/duration.h"
#include "common/logging.h"
#include "daemons/server.h"

namespace meshid::cli {
namespace {
struct ServerFlags {
  std::string default_ttl = "1h";
  std::string max_ttl = "24h";
  std::vector<std::string> jwt_issuers;
  std::string token_audiences = "istio-ca";
  std::string log_level = "info";
  std::string retention = "30d";
  std::string commit_interval = "1ms";
  std::string policy_poll_interval = "1s";
  std::string crl_poll_interval = "250ms";
  std::string crl_validity = "24h";
  std::string reload_interval = "5s";
  std::string jwks_refresh_interval = "5m";
  std::string trusted_node_accounts;
};
}  // namespace

void RegisterServerCommands(CLI::App& app, CommandContext& ctx) {
  auto config = std::make_shared<daemons::CaServerConfig>();
  auto opts = std::make_shared<ServerFlags>();
  CLI::App* cmd = app.add_subcommand("server", "Run the certificate authority (Istio CSR gRPC API)");
  cmd->add_option("--data-dir", config->data_dir, "Directory for the CA key, trust bundle and state")
      ->capture_default_str();
  cmd->add_option("--cacerts-dir", config->cacerts_dir,
                  "Istio plug-in CA directory (ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem)")
      ->envname("ROOT_CA_DIR");
  AddCaKeyFlags(cmd, config->ca_key);
  cmd->add_option("--listen", config->listen_address, "gRPC listen address")->capture_default_str();
  cmd->add_option("--monitoring-addr", config->monitoring_address, "/metrics, /healthz, /readyz address")
      ->capture_default_str();
  cmd->add_option("--trust-domain", config->trust_domain, "SPIFFE trust domain")
      ->envname("TRUST_DOMAIN")
      ->capture_default_str();
  cmd->add_option("--self-signed-key", config->self_signed_key,
                  "Key type of a new self-signed root: ecdsa-p256, ecdsa-p384, rsa-2048 (Istio's), rsa-3072, rsa-4096")
      ->capture_default_str();
  cmd->add_option("--server-san", config->server_sans, "Extra DNS name or IP for the CA's serving certificate");
  cmd->add_flag("--insecure-plaintext", config->insecure_plaintext, "Serve without TLS (development only)");
  cmd->add_option("--default-workload-cert-ttl", opts->default_ttl, "TTL when a request asks for none")
      ->envname("DEFAULT_WORKLOAD_CERT_TTL")
      ->capture_default_str();
  cmd->add_option("--max-workload-cert-ttl", opts->max_ttl, "Longest TTL a request may ask for")
      ->envname("MAX_WORKLOAD_CERT_TTL")
      ->capture_default_str();
  cmd->add_option("--jwt-issuer", opts->jwt_issuers,
                  "Trusted token issuer as ISSUER=JWKS_FILE or ISSUER=https://JWKS_URL (repeatable); the file is "
                  "re-read when it changes, the URL fetched every --jwks-refresh-interval");
  cmd->add_option("--reload-interval", opts->reload_interval,
                  "How often the --cacerts-dir files and the --jwt-issuer JWKS files are checked for a change (a "
                  "valid new set is taken without a restart)")
      ->capture_default_str();
  cmd->add_option("--jwks-refresh-interval", opts->jwks_refresh_interval,
                  "How often a --jwt-issuer JWKS URL is fetched again (sooner after a failed fetch)")
      ->capture_default_str();
  cmd->add_option("--token-audience", opts->token_audiences, "Accepted token audiences, comma-separated")
      ->envname("TOKEN_AUDIENCES")
      ->capture_default_str();
  cmd->add_flag("!--no-local-token-issuer", config->local_token_issuer,
                "Do not trust tokens from `meshid token create` on this data dir");
  cmd->add_flag("--replace-store-ca", config->replace_store_ca,
                "The CA or local token key was replaced on purpose: record this server's in the store instead of "
                "refusing to start because it differs from the one the other servers use");
  cmd->add_option("--datastore", config->datastore,
                  "sqlite://PATH or postgresql://user[:pass]@host:port/db (default sqlite://<data-dir>/meshid.db)");
  cmd->add_flag("--require-registration", config->require_registration,
                "Refuse identities that have no registry entry (meshid entry create)");
  cmd->add_option("--trusted-node-accounts", opts->trusted_node_accounts,
                  "Node agents that may mint any registered identity (ImpersonatedIdentity), as comma-separated "
                  "NAMESPACE/SERVICEACCOUNT; others only identities whose entries name them as --parent")
      ->envname("CA_TRUSTED_NODE_ACCOUNTS");
  cmd->add_option("--ledger-retention", opts->retention, "Prune expired ledger rows older than this")
      ->capture_default_str();
  cmd->add_option("--ledger-commit-interval", opts->commit_interval,
                  "The longest a certificate's ledger record waits for certificates still being signed, so "
                  "that they share one commit and fsync (0: commit at once)")
      ->capture_default_str();
  cmd->add_option("--policy-poll-interval", opts->policy_poll_interval,
                  "How often the store is checked for a new policy version (meshid apply) to stream to agents")
      ->capture_default_str();
  cmd->add_option("--crl-poll-interval", opts->crl_poll_interval,
                  "How often the store's CRL number is read: a revocation reaches agents within about this")
      ->capture_default_str();
  cmd->add_option("--crl-validity", opts->crl_validity,
                  "nextUpdate - thisUpdate of every CRL; it is re-signed at half of it")
      ->capture_default_str();
  cmd->add_option("--signing-rate-per-caller", config->signing_rate_per_caller,
                  "Certificates per second each authenticated caller may get on average (a node agent minting "
                  "for its workloads counts as one caller); over it: RESOURCE_EXHAUSTED with a retry delay (0: no "
                  "limit)")
      ->capture_default_str();
  cmd->add_option("--signing-burst-per-caller", config->signing_burst_per_caller,
                  "Certificates a caller that has been idle may get at once, above --signing-rate-per-caller")
      ->capture_default_str();
  cmd->add_option("--max-concurrent-signing", config->max_concurrent_signing,
                  "Requests being checked and signed at once, over all callers; over it: RESOURCE_EXHAUSTED with "
                  "a retry delay (0: no limit; default 4 x hardware threads)")
      ->capture_default_str();
  cmd->add_option("--log-level", opts->log_level, "trace, debug, info, warn, error")->capture_default_str();

  cmd->callback([config, opts, &ctx] {
    auto logger = MakeStderrLogger("server", opts->log_level);
    if (!logger.ok()) return Fail(ctx, "--log-level", logger.status());
    auto default_ttl = ParseDuration(opts->default_ttl);
    if (!default_ttl.ok()) return Fail(ctx, "--default-workload-cert-ttl", default_ttl.status());
    auto max_ttl = ParseDuration(opts->max_ttl);
    if (!max_ttl.ok()) return Fail(ctx, "--max-workload-cert-ttl", max_ttl.status());
    auto retention = ParseDuration(opts->retention);
    if (!retention.ok()) return Fail(ctx, "--ledger-retention", retention.status());
    config->ledger_retention = *retention;
    auto commit_interval = ParseDuration(opts->commit_interval);
    if (!commit_interval.ok()) return Fail(ctx, "--ledger-commit-interval", commit_interval.status());
    config->ledger_commit_interval = *commit_interval;
    auto policy_poll = ParseDuration(opts->policy_poll_interval);
    if (!policy_poll.ok()) return Fail(ctx, "--policy-poll-interval", policy_poll.status());
    config->policy_poll_interval = *policy_poll;
    auto crl_poll = ParseDuration(opts->crl_poll_interval);
    if (!crl_poll.ok()) return Fail(ctx, "--crl-poll-interval", crl_poll.status());
    config->crl_poll_interval = *crl_poll;
    auto crl_validity = ParseDuration(opts->crl_validity);
    if (!crl_validity.ok()) return Fail(ctx, "--crl-validity", crl_validity.status());
    config->crl_validity = *crl_validity;
    auto reload_interval = ParseDuration(opts->reload_interval);
    if (!reload_interval.ok()) return Fail(ctx, "--reload-interval", reload_interval.status());
    config->reload_interval = *reload_interval;
    auto jwks_refresh = ParseDuration(opts->jwks_refresh_interval);
    if (!jwks_refresh.ok()) return Fail(ctx, "--jwks-refresh-interval", jwks_refresh.status());
    config->jwks_refresh_interval = *jwks_refresh;
    ReadPinFromEnvironment(config->ca_key);
    config->default_workload_ttl = *default_ttl;
    config->max_workload_ttl = *max_ttl;
    config->token_audiences = absl::StrSplit(opts->token_audiences, ',', absl::SkipEmpty());
    for (absl::string_view item : absl::StrSplit(opts->trusted_node_accounts, ',', absl::SkipWhitespace())) {
      config->trusted_node_accounts.emplace_back(absl::StripAsciiWhitespace(item));
    }
    for (const std::string& spec : opts->jwt_issuers) {
      std::pair<std::string, std::string> kv = absl::StrSplit(spec, absl::MaxSplits('=', 1));
      config->jwt_issuers.push_back(kv);
    }
    BlockTerminationSignals();
    auto server = daemons::CaServer::Start(*config, SystemClock::Instance(), *logger);
    if (!server.ok()) return Fail(ctx, "meshid server", server.status());
    std::thread waiter([&] {
      WaitForTerminationSignal();
      (*logger)->info("shutting down");
      (*server)->Shutdown();
    });
    (*server)->Wait();
    waiter.join();
  });
}

}  // namespace meshid::cli
