// `meshid agent`: the node agent (secret cache + Envoy SDS on a Unix socket).
#include <grp.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include <cstdlib>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "common/duration.h"
#include "common/keys.h"
#include "common/logging.h"
#include "daemons/agent.h"

namespace meshid::cli {
namespace {

struct AgentFlags {
  std::string secret_ttl = "0";
  double grace_ratio = 0.5;
  double grace_ratio_jitter = 0.01;
  std::string key_type;
  std::string socket_group;
  std::string root_push_timeout = "10s";
  std::string log_level = "info";
  std::string mode = "workload";
  std::string workload_api_socket;
};

// Beside the SDS socket, so that agents with their own SDS sockets never share one.
std::string DefaultWorkloadApiSocket(const std::string& sds_socket) {
  const size_t slash = sds_socket.rfind('/');
  return slash == std::string::npos ? "workload-api.sock" : sds_socket.substr(0, slash + 1) + "workload-api.sock";
}

// SPIFFE_ENDPOINT_SOCKET's forms ("unix:///run/api.sock", "unix:/run/api.sock") or a plain path.
absl::StatusOr<std::string> WorkloadApiSocketPath(const std::string& value) {
  absl::string_view v = value;
  if (absl::ConsumePrefix(&v, "unix://")) {
    if (!absl::StartsWith(v, "/")) {
      return absl::InvalidArgumentError(absl::StrCat("\"", value, "\": a unix:// address names an absolute path"));
    }
  } else if (absl::ConsumePrefix(&v, "unix:")) {
  } else if (v.find("://") != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("\"", value, "\": only unix sockets are served"));
  }
  if (v.empty()) return absl::InvalidArgumentError("empty socket path");
  return std::string(v);
}

// --key-type, else Istio's variables (ECC_SIGNATURE_ALGORITHM/ECC_CURVE, WORKLOAD_RSA_KEY_SIZE),
// else ECDSA P-256.
std::string KeyTypeFromEnvironment() {
  const char* ecc = std::getenv("ECC_SIGNATURE_ALGORITHM");
  if (ecc != nullptr && std::string(ecc) == "ECDSA") {
    const char* curve = std::getenv("ECC_CURVE");
    return curve != nullptr && std::string(curve) == "P384" ? "ecdsa-p384" : "ecdsa-p256";
  }
  if (const char* rsa = std::getenv("WORKLOAD_RSA_KEY_SIZE"); rsa != nullptr && *rsa != '\0') {
    return absl::StrCat("rsa-", rsa);
  }
  return "ecdsa-p256";
}

absl::StatusOr<gid_t> ResolveGroup(const std::string& group) {
  uint32_t gid = 0;
  if (absl::SimpleAtoi(group, &gid)) return static_cast<gid_t>(gid);
  struct group* entry = ::getgrnam(group.c_str());
  if (entry == nullptr) return absl::InvalidArgumentError(absl::StrCat("no group named \"", group, "\""));
  return entry->gr_gid;
}

// Keys live only in this process's memory: no core dumps, no ptrace by other users' tools.
void MakeNonDumpable() {
  ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  struct rlimit none {};
  ::setrlimit(RLIMIT_CORE, &none);
}

}  // namespace

void RegisterAgentCommands(CLI::App& app, CommandContext& ctx) {
  auto config = std::make_shared<daemons::AgentConfig>();
  auto flags = std::make_shared<AgentFlags>();
  CLI::App* cmd = app.add_subcommand(
      "agent", "Run the node agent: workload keys and certificates in memory, served to proxies over Envoy SDS");
  cmd->add_option("--ca-addr", config->ca_address,
                  "CA address (meshid server or istiod): host:port, or replicas as IP:port,IP:port (failover)")
      ->envname("CA_ADDR")
      ->capture_default_str();
  cmd->add_option("--ca-root", config->ca_root_file,
                  "Trust bundle for the CA's TLS certificate, re-read on every request")
      ->envname("CA_ROOT_CA")
      ->capture_default_str();
  cmd->add_option("--ca-server-name", config->ca_server_name, "Name to check in the CA's certificate")
      ->envname("ISTIOD_SAN");
  cmd->add_flag("--ca-insecure-plaintext", config->ca_insecure_plaintext,
                "Talk to a CA started with --insecure-plaintext (development only)");
  cmd->add_option("--token-file", config->token_file,
                  "The agent's own token for the CA, re-read on every request (projected tokens rotate)")
      ->capture_default_str();
  cmd->add_option("--sds-socket", config->sds.socket_path, "Unix socket for Envoy SDS")->capture_default_str();
  cmd->add_option("--sds-socket-group", flags->socket_group,
                  "Group (name or id) allowed to use the socket (mode 0660)");
  cmd->add_option("--mode", flags->mode,
                  "workload: one agent per workload, a token-free SDS stream gets the agent's own identity; "
                  "node: one agent for the node, a token-free caller gets its attested identity or none")
      ->capture_default_str();
  cmd->add_option("--workload-api-socket", flags->workload_api_socket,
                  "Unix socket of the SPIFFE Workload API (a path or unix:///path; \"none\" serves none) "
                  "[default: workload-api.sock beside --sds-socket]")
      ->envname("SPIFFE_ENDPOINT_SOCKET");
  cmd->add_option("--monitoring-addr", config->monitoring_address, "/metrics, /healthz, /readyz address")
      ->capture_default_str();
  cmd->add_option("--secret-ttl", flags->secret_ttl,
                  "Certificate lifetime to ask the CA for; 0 asks for none: the CA's default (meshid server: 1h)")
      ->envname("SECRET_TTL")
      ->capture_default_str();
  cmd->add_option("--grace-ratio", flags->grace_ratio, "Renew when this fraction of the lifetime remains")
      ->envname("SECRET_GRACE_PERIOD_RATIO")
      ->capture_default_str();
  cmd->add_option("--grace-ratio-jitter", flags->grace_ratio_jitter,
                  "Random ± spread of the grace ratio, so workloads started together renew apart")
      ->envname("SECRET_GRACE_PERIOD_RATIO_JITTER")
      ->capture_default_str();
  cmd->add_option("--key-type", flags->key_type,
                  "ecdsa-p256 (default), ecdsa-p384, rsa-2048, rsa-3072, rsa-4096 (or Istio's ECC_SIGNATURE_ALGORITHM, "
                  "ECC_CURVE, WORKLOAD_RSA_KEY_SIZE)");
  cmd->add_option("--trust-anchors", config->trust_anchors_file,
                  "PEM file of extra roots ROOTCA always carries (watched for changes)");
  cmd->add_option("--root-push-timeout", flags->root_push_timeout,
                  "How long a certificate from a new root waits for every proxy to apply the new ROOTCA")
      ->capture_default_str();
  cmd->add_option("--workers", config->worker_threads, "Threads making CA requests")->capture_default_str();
  config->policy.enabled = true;
  config->policy.agent_id = policy::DefaultAgentId();
  cmd->add_flag("!--no-policy-relay", config->policy.enabled,
                "Do not relay policy snapshots from the server to proxies on the SDS socket");
  cmd->add_option("--policy-server", config->policy.server_address,
                  "Where policy snapshots come from (meshid server; default: --ca-addr)");
  cmd->add_flag("!--no-revocations", config->revocations,
                "Do not take the server's CRL (revocations are then not enforced on this node)");
  cmd->add_option("--crl-file", config->crl_state_file,
                  "Where the last good CRL from the server is kept, so a restart while the server is away keeps "
                  "enforcing it (\"\": nowhere)")
      ->capture_default_str();
  cmd->add_option("--trust-bundle-file", config->trust_bundle_state_file,
                  "Where the CA's trust bundle pushed by the server is kept; trusted beside --ca-root, so a CA "
                  "rotation's new root reaches this node before anything is signed under it")
      ->capture_default_str();
  cmd->add_option("--agent-id", config->policy.agent_id, "This agent's name in `meshid status`")->capture_default_str();
  cmd->add_option("--log-level", flags->log_level, "trace, debug, info, warn, error")->capture_default_str();

  cmd->callback([config, flags, &ctx] {
    auto logger = MakeStderrLogger("agent", flags->log_level);
    if (!logger.ok()) return Fail(ctx, "--log-level", logger.status());
    auto ttl = ParseDuration(flags->secret_ttl);
    if (!ttl.ok()) return Fail(ctx, "--secret-ttl", ttl.status());
    auto push_timeout = ParseDuration(flags->root_push_timeout);
    if (!push_timeout.ok()) return Fail(ctx, "--root-push-timeout", push_timeout.status());
    auto key = ParseKeyAlgorithm(flags->key_type.empty() ? KeyTypeFromEnvironment() : flags->key_type);
    if (!key.ok()) return Fail(ctx, "--key-type", key.status());
    config->cache.secret_ttl = *ttl;
    config->cache.grace_ratio = flags->grace_ratio;
    config->cache.grace_ratio_jitter = flags->grace_ratio_jitter;
    config->cache.key_algorithm = *key;
    config->cache.root_push_timeout = *push_timeout;
    if (flags->mode == "node") {
      config->mode = daemons::AgentMode::kNode;
    } else if (flags->mode != "workload") {
      return Fail(ctx, "--mode",
                  absl::InvalidArgumentError(absl::StrCat("\"", flags->mode, "\": must be workload or node")));
    }
    if (flags->workload_api_socket == "none") {
      config->workload_api_socket.clear();
    } else if (!flags->workload_api_socket.empty()) {
      auto path = WorkloadApiSocketPath(flags->workload_api_socket);
      if (!path.ok()) return Fail(ctx, "--workload-api-socket", path.status());
      config->workload_api_socket = *path;
    } else {
      config->workload_api_socket = DefaultWorkloadApiSocket(config->sds.socket_path);
    }
    if (!flags->socket_group.empty()) {
      auto gid = ResolveGroup(flags->socket_group);
      if (!gid.ok()) return Fail(ctx, "--sds-socket-group", gid.status());
      config->sds.socket_group = *gid;
      config->sds.socket_mode = 0660;
    }
    MakeNonDumpable();
    BlockTerminationSignals();
    auto agent = daemons::Agent::Start(*config, SystemClock::Instance(), *logger);
    if (!agent.ok()) return Fail(ctx, "meshid agent", agent.status());
    WaitForTerminationSignal();
    (*logger)->info("shutting down");
    agent->reset();
  });
}

}  // namespace meshid::cli
