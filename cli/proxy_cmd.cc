// `meshid proxy`: the sidecar (meshproxy/): inbound mTLS + policy in front of an app,
// outbound mTLS to named upstreams, certificates from the node agent over SDS.
#include <csignal>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cli/authz_flags.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "common/duration.h"
#include "common/logging.h"
#include "daemons/sidecar.h"

namespace meshid::cli {
namespace {

struct ProxyFlags {
  std::string sds_socket = "./var/run/secrets/workload-spiffe-uds/socket";
  std::string token_file;
  std::string service;
  std::string namespace_ = "default";
  std::string domain = "cluster.local";
  std::string root_namespace = "istio-system";
  std::vector<std::string> inbound;
  std::vector<std::string> app;
  std::string outbound = "127.0.0.1:15001";
  std::vector<std::string> upstreams;
  std::vector<std::string> config;
  std::vector<std::string> labels;
  std::vector<std::string> ext_authz_providers;
  std::string admin_address = "127.0.0.1:15000";
  std::string reload_interval = "2s";
  std::string idle_timeout = "1h";
  std::string connect_timeout = "10s";
  std::string detection_timeout = "1s";
  int workers = 0;
  int max_request_headers_kb = 60;
  uint64_t max_request_body_bytes = 0;
  std::string log_level = "info";
  bool policy_from_agent = false;
};

absl::Status Flag(absl::string_view flag, const absl::Status& s) {
  return absl::Status(s.code(), absl::StrCat(flag, ": ", s.message()));
}

absl::StatusOr<absl::Duration> DurationFlag(absl::string_view flag, const std::string& value) {
  auto d = ParseDuration(value);
  if (!d.ok()) return Flag(flag, d.status());
  if (*d <= absl::ZeroDuration()) return absl::InvalidArgumentError(absl::StrCat(flag, ": must be positive"));
  return *d;
}

// Validates every flag and builds the sidecar configuration.
absl::StatusOr<daemons::SidecarConfig> BuildConfig(const ProxyFlags& f, bool outbound_given) {
  daemons::SidecarConfig config;
  meshproxy::ProxyOptions& o = config.proxy;
  config.sds_socket = f.sds_socket;
  config.token_file = f.token_file;
  config.admin_address = f.admin_address;
  if (f.service.empty()) return absl::InvalidArgumentError("--service: required");
  o.service = f.service;
  o.namespace_ = f.namespace_;
  o.domain = f.domain;
  o.root_namespace = f.root_namespace;
  o.workers = f.workers;
  for (const auto& l : f.labels) {
    std::pair<std::string, std::string> kv = absl::StrSplit(l, absl::MaxSplits('=', 1));
    if (kv.first.empty() || l.find('=') == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("--label \"", l, "\" is not KEY=VALUE"));
    }
    o.labels[kv.first] = kv.second;
  }
  // --inbound pairs with --app by position; one --app may use the default inbound address.
  std::vector<std::string> inbound = f.inbound;
  if (inbound.empty() && f.app.size() == 1) inbound.push_back("0.0.0.0:15006");
  if (inbound.size() != f.app.size()) {
    return absl::InvalidArgumentError(absl::StrCat("--inbound and --app pair up by position: got ", inbound.size(),
                                                   " --inbound and ", f.app.size(), " --app"));
  }
  for (size_t i = 0; i < inbound.size(); ++i) {
    auto listen = ParseHostPort(inbound[i]);
    if (!listen.ok()) return Flag("--inbound", listen.status());
    auto app = ParseHostPort(f.app[i]);
    if (!app.ok()) return Flag("--app", app.status());
    if (app->port == 0) return absl::InvalidArgumentError("--app: the app's port cannot be 0");
    o.inbound.push_back({*listen, *app});
  }
  for (const auto& u : f.upstreams) {
    auto upstream = meshproxy::ParseUpstreamFlag(u, f.namespace_, f.domain);
    if (!upstream.ok()) return Flag("--upstream", upstream.status());
    o.upstreams.push_back(*upstream);
  }
  const bool http_upstreams =
      std::any_of(o.upstreams.begin(), o.upstreams.end(), [](const meshproxy::Upstream& u) { return !u.tcp_listen; });
  if (outbound_given || http_upstreams) {
    auto outbound = ParseHostPort(f.outbound);
    if (!outbound.ok()) return Flag("--outbound", outbound.status());
    o.outbound = *outbound;
  }
  if (f.max_request_headers_kb < 1 || f.max_request_headers_kb > 8192) {
    return absl::InvalidArgumentError("--max-request-headers-kb: must be 1-8192");
  }
  o.limits.max_head_bytes = static_cast<size_t>(f.max_request_headers_kb) * 1024;
  o.limits.max_body_bytes = f.max_request_body_bytes;
  auto idle = DurationFlag("--idle-timeout", f.idle_timeout);
  if (!idle.ok()) return idle.status();
  o.idle_timeout = *idle;
  auto connect = DurationFlag("--connect-timeout", f.connect_timeout);
  if (!connect.ok()) return connect.status();
  o.connect_timeout = *connect;
  auto detection = DurationFlag("--protocol-detection-timeout", f.detection_timeout);
  if (!detection.ok()) return detection.status();
  o.protocol_detection_timeout = *detection;
  return config;
}

}  // namespace

void RegisterProxyCommands(CLI::App& app, CommandContext& ctx) {
  auto f = std::make_shared<ProxyFlags>();
  CLI::App* cmd = app.add_subcommand(
      "proxy", "Run the sidecar: mTLS and policy in front of an app, mTLS to its upstreams, certificates over SDS");
  cmd->add_option("--sds-socket", f->sds_socket, "The node agent's SDS socket")->capture_default_str();
  cmd->add_option("--token-file", f->token_file,
                  "The workload's token, sent on the SDS streams (authorization: Bearer) so the agent serves its "
                  "identity; without it the agent serves its own");
  cmd->add_option("--service", f->service, "This workload's service name (short)")->required();
  cmd->add_option("--namespace,-n", f->namespace_, "This workload's namespace (also for documents that name none)")
      ->capture_default_str();
  cmd->add_option("--label", f->labels, "Workload label KEY=VALUE (repeatable; added to the Service's selector)");
  cmd->add_option("--inbound", f->inbound,
                  "Inbound listener (repeatable, pairs with --app by position; default 0.0.0.0:15006 for one app)");
  cmd->add_option("--app", f->app, "The local app behind the inbound listener; its port is the workload port");
  cmd->add_option("--outbound", f->outbound, "Outbound HTTP listener for the app (routes by Host to --upstream)")
      ->capture_default_str();
  cmd->add_option("--upstream", f->upstreams,
                  "NAME=ADDR[,spiffe://ID][,listen=ADDR]: an upstream proxy; the ID its certificate must carry "
                  "(default spiffe://<our trust domain>/ns/<ns>/sa/<name>); listen= adds a TCP listener for it")
      ->allow_extra_args(false);
  cmd->add_option("--config,-c", f->config, "Policy YAML file or directory, watched for changes (repeatable)")
      ->allow_extra_args(false);
  cmd->add_option("--reload-interval", f->reload_interval, "How often --config files are checked")
      ->capture_default_str();
  cmd->add_flag("--policy-from-agent", f->policy_from_agent,
                "Take policy from the agent's policy stream on --sds-socket (meshid apply on the server) instead of "
                "--config files");
  cmd->add_option("--ext-authz-provider", f->ext_authz_providers,
                  "NAME=host:port|unix:PATH for CUSTOM policies (repeatable)")
      ->allow_extra_args(false);
  cmd->add_option("--domain", f->domain, "Cluster domain: services are <name>.<ns>.svc.<domain>")
      ->capture_default_str();
  cmd->add_option("--root-namespace", f->root_namespace, "meshConfig.rootNamespace")->capture_default_str();
  cmd->add_option("--admin-addr", f->admin_address, "/stats, /ready, /certs, /policy (empty: none)")
      ->capture_default_str();
  cmd->add_option("--workers", f->workers, "Worker threads (0: one per core)")->capture_default_str();
  cmd->add_option("--idle-timeout", f->idle_timeout, "Close connections idle this long")->capture_default_str();
  cmd->add_option("--connect-timeout", f->connect_timeout, "Connect + TLS handshake limit")->capture_default_str();
  cmd->add_option("--protocol-detection-timeout", f->detection_timeout,
                  "On ports without a declared protocol, silence this long means TCP (server-first protocols)")
      ->capture_default_str();
  cmd->add_option("--max-request-headers-kb", f->max_request_headers_kb, "Largest request line + headers (431 above)")
      ->capture_default_str();
  cmd->add_option("--max-request-body-bytes", f->max_request_body_bytes,
                  "Largest request body (413 above; 0: no limit)")
      ->capture_default_str();
  cmd->add_option("--log-level", f->log_level, "trace, debug, info, warn, error")->capture_default_str();

  cmd->callback([f, cmd, &ctx] {
    auto logger = MakeStderrLogger("proxy", f->log_level);
    if (!logger.ok()) return Fail(ctx, "--log-level", logger.status());
    auto config = BuildConfig(*f, cmd->get_option("--outbound")->count() > 0);
    if (!config.ok()) return Fail(ctx, "meshid proxy", config.status());
    auto reload = DurationFlag("--reload-interval", f->reload_interval);
    if (!reload.ok()) return Fail(ctx, "meshid proxy", reload.status());
    PolicyFlags policy_flags;
    policy_flags.ext_authz_providers = f->ext_authz_providers;
    auto custom = CustomProviders(policy_flags);
    if (!custom.ok()) return Fail(ctx, "--ext-authz-provider", custom.status());

    policy::PolicyWatcher::Options watch;
    watch.paths = f->config;
    watch.load.read.default_namespace = f->namespace_;
    watch.load.domain = f->domain;
    watch.engine.root_namespace = f->root_namespace;
    watch.engine.custom = *custom;
    watch.interval = *reload;

    std::signal(SIGPIPE, SIG_IGN);  // a peer closing mid-write is an error code, not a signal
    BlockTerminationSignals();
    MetricsRegistry metrics;
    if (f->policy_from_agent && !f->config.empty()) {
      return Fail(ctx, "--policy-from-agent",
                  absl::InvalidArgumentError("policy comes from the agent or --config, not both"));
    }
    config->policy_from_agent = f->policy_from_agent;
    config->policy_files = std::move(watch);
    auto sidecar = daemons::Sidecar::Start(std::move(*config), *logger, metrics, SystemClock::Instance());
    if (!sidecar.ok()) return Fail(ctx, "meshid proxy", sidecar.status());
    meshproxy::Proxy& proxy = (*sidecar)->proxy();
    const auto inbound = proxy.inbound_addresses();
    for (size_t i = 0; i < inbound.size(); ++i) {
      (*logger)->info("inbound listening on {} for app {}", inbound[i].ToString(), f->app[i]);
    }
    if (auto outbound = proxy.outbound_address()) (*logger)->info("outbound listening on {}", outbound->ToString());
    for (const auto& a : proxy.upstream_tcp_addresses()) (*logger)->info("outbound tcp listening on {}", a.ToString());
    if ((*sidecar)->admin_port() != 0) (*logger)->info("admin on port {}", (*sidecar)->admin_port());
    WaitForTerminationSignal();
    (*logger)->info("shutting down");
    sidecar->reset();
  });
}

}  // namespace meshid::cli
