// `meshid authz check|serve|convert` and (through authn_cmd.cc) `meshid authn tls-check`.
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "authz/ext_authz_service.h"
#include "authz/request_json.h"
#include "cli/authn_cmd.h"
#include "cli/authz_flags.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "common/clock.h"
#include "common/duration.h"
#include "common/http_status_server.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "policy/file_watcher.h"
#include "rbac/convert.h"

namespace meshid::cli {
namespace {

struct CheckOptions {
  PolicyFlags policy;
  std::string request = "-";
};

// Evaluates every request line; returns the number of lines that could not be evaluated.
size_t RunCheck(const authz::PolicyEngine& engine, std::istream& in, std::ostream& out) {
  size_t failures = 0;
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view text = absl::StripAsciiWhitespace(line);
    if (text.empty()) continue;
    auto request = authz::ParseRequestJson(text);
    if (!request.ok()) {
      out << authz::ErrorDecisionJson(request.status()) << "\n";
      ++failures;
      continue;
    }
    auto decision = engine.Check(*request);
    if (!decision.ok()) {
      out << authz::ErrorDecisionJson(decision.status()) << "\n";
      ++failures;
      continue;
    }
    out << authz::DecisionToJson(*decision) << "\n";
  }
  out.flush();
  return failures;
}

void RegisterCheck(CLI::App* authz_cmd, CommandContext& ctx) {
  auto opts = std::make_shared<CheckOptions>();
  CLI::App* check = authz_cmd->add_subcommand(
      "check", "Decide JSON requests (one per line) against Istio policies; prints one JSON decision per line");
  opts->policy.Add(check);
  opts->policy.AddEngine(check);
  check->add_option("--request,-r", opts->request, "File with one JSON request per line (\"-\" = stdin)")
      ->capture_default_str();
  check->footer(
      "Request: {\"protocol\":\"http\"|\"tcp\",\"destination\":{\"service\":\"b.ns.svc.cluster.local\","
      "\"namespace\":\"ns\",\"labels\":{},\"ip\":\"\",\"port\":80,\"principal\":\"spiffe://...\"},"
      "\"source\":{\"principal\":\"spiffe://...\",\"ip\":\"\"},\"connection\":{\"mtls\":true,\"sni\":\"\"},"
      "\"request\":{\"method\":\"GET\",\"path\":\"/\",\"host\":\"\",\"headers\":{}}}\n"
      "Decision: {\"allowed\":bool,\"status\":200|401|403,\"policy\":\"ns/name\",\"rule\":\"...\",\"reason\":\"...\"}\n"
      "Exit status: 0 all lines decided, 1 some lines could not be evaluated (denied), 2 bad configuration.");
  check->callback([opts, &ctx] {
    auto clock = ClockFor(opts->policy.now);
    if (!clock.ok()) return Fail(ctx, "authz check", clock.status());
    auto set = LoadPolicies(opts->policy);
    if (!set.ok()) return Fail(ctx, "authz check", set.status());
    auto engine = BuildEngine(std::move(*set), opts->policy, **clock);
    if (!engine.ok()) return Fail(ctx, "authz check", engine.status());
    size_t failures = 0;
    if (opts->request == "-") {
      failures = RunCheck(**engine, std::cin, std::cout);
    } else {
      std::ifstream in(opts->request);
      if (!in) return Fail(ctx, "authz check", absl::NotFoundError(absl::StrCat("cannot open ", opts->request)));
      failures = RunCheck(**engine, in, std::cout);
    }
    if (failures > 0) {
      std::cerr << "meshid: authz check: " << failures << " request(s) could not be evaluated and were denied\n";
      ctx.exit_code = 1;
    }
  });
}

struct ServeOptions {
  PolicyFlags policy;
  std::string listen = "127.0.0.1:9191";
  std::string service;
  std::string service_namespace;
  std::vector<std::string> labels;
  std::string principal;
  std::string reload_interval = "2s";
  std::string monitoring;
  std::string log_level = "info";
};

void RegisterServe(CLI::App* authz_cmd, CommandContext& ctx) {
  auto opts = std::make_shared<ServeOptions>();
  CLI::App* serve = authz_cmd->add_subcommand(
      "serve", "Serve Envoy's ext_authz v3 (envoy.service.auth.v3.Authorization/Check) from Istio policies");
  opts->policy.Add(serve);
  serve->add_option("--trust-domain", opts->policy.trust_domain, "Local trust domain for the peer trust-domain check");
  opts->policy.AddProviders(serve);
  serve->add_option("--listen", opts->listen, "host:port (port 0 picks one) or unix:PATH")->capture_default_str();
  serve->add_option("--service", opts->service,
                    "Destination service FQDN when Envoy sends no context_extensions[service]");
  serve->add_option("--service-namespace", opts->service_namespace, "Destination namespace (default: from the FQDN)");
  serve->add_option("--label", opts->labels, "Destination workload label key=value (repeatable)");
  serve->add_option("--principal", opts->principal, "The destination workload's SPIFFE ID");
  serve->add_option("--reload-interval", opts->reload_interval, "How often to check the policy files for changes")
      ->capture_default_str();
  serve->add_option("--monitoring", opts->monitoring, "host:port for /metrics, /healthz and /readyz (off if empty)");
  serve->add_option("--log-level", opts->log_level, "trace, debug, info, warn, error")->capture_default_str();
  serve->callback([opts, &ctx] {
    auto logger = MakeStderrLogger("authz", opts->log_level);
    if (!logger.ok()) return Fail(ctx, "--log-level", logger.status());
    auto interval = ParseDuration(opts->reload_interval);
    if (!interval.ok()) return Fail(ctx, "--reload-interval", interval.status());
    authz::ExtAuthzDefaults defaults;
    defaults.service = opts->service;
    defaults.namespace_ = opts->service_namespace;
    defaults.principal = opts->principal;
    for (const auto& kv : opts->labels) {
      std::pair<std::string, std::string> p = absl::StrSplit(kv, absl::MaxSplits('=', 1));
      if (p.first.empty() || !absl::StrContains(kv, "=")) {
        return Fail(ctx, "--label", absl::InvalidArgumentError(absl::StrCat("\"", kv, "\" is not key=value")));
      }
      defaults.labels[p.first] = p.second;
    }
    MetricsRegistry metrics;
    policy::PolicyWatcher::Options wopts;
    wopts.paths = opts->policy.config;
    wopts.load = opts->policy.Load();
    wopts.engine.root_namespace = opts->policy.root_namespace;
    wopts.engine.trust_domain = opts->policy.trust_domain;
    auto custom = CustomProviders(opts->policy);
    if (!custom.ok()) return Fail(ctx, "--ext-authz-provider", custom.status());
    wopts.engine.custom = *custom;
    wopts.interval = *interval;
    auto watcher = policy::PolicyWatcher::Create(std::move(wopts), SystemClock::Instance(), metrics, *logger);
    if (!watcher.ok()) return Fail(ctx, "authz serve", watcher.status());
    policy::PolicyWatcher* w = watcher->get();
    authz::ExtAuthzService service([w] { return w->Current(); }, defaults, metrics, *logger);

    std::string address = opts->listen;
    if (absl::StartsWith(address, "unix:")) {
      // A stale socket file from a previous run would make bind fail.
      const std::string path = address.substr(5);
      struct stat st;
      if (lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) unlink(path.c_str());
    }
    BlockTerminationSignals();
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service);
    std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
    if (!server) {
      return Fail(ctx, "authz serve", absl::UnavailableError(absl::StrCat("cannot listen on ", address)));
    }
    std::unique_ptr<HttpStatusServer> monitoring;
    if (!opts->monitoring.empty()) {
      std::map<std::string, HttpHandler> handlers;
      handlers["/metrics"] = [&metrics](const std::string&) {
        return HttpReply{200, "text/plain; version=0.0.4", metrics.RenderPrometheus()};
      };
      handlers["/healthz"] = [](const std::string&) { return HttpReply{200, "text/plain", "ok\n"}; };
      handlers["/readyz"] = [w](const std::string&) {
        return w->Current() ? HttpReply{200, "text/plain", "ready\n"} : HttpReply{503, "text/plain", "no policy\n"};
      };
      auto m = HttpStatusServer::Create(opts->monitoring, std::move(handlers));
      if (!m.ok()) return Fail(ctx, "--monitoring", m.status());
      monitoring = std::move(*m);
      std::cout << "monitoring on " << opts->monitoring.substr(0, opts->monitoring.rfind(':')) << ":"
                << monitoring->port() << std::endl;
    }
    w->Start();
    if (absl::StartsWith(address, "unix:")) {
      std::cout << "listening on " << address << std::endl;
    } else {
      std::cout << "listening on " << address.substr(0, address.rfind(':')) << ":" << port << std::endl;
    }
    std::thread waiter([&] {
      WaitForTerminationSignal();
      (*logger)->info("shutting down");
      server->Shutdown();
    });
    server->Wait();
    waiter.join();
  });
}

void RegisterConvert(CLI::App* authz_cmd, CommandContext& ctx) {
  auto opts = std::make_shared<PolicyFlags>();
  CLI::App* convert = authz_cmd->add_subcommand(
      "convert", "Print v1beta1 AuthorizationPolicy YAML equivalent to the v1alpha1 RBAC in --config");
  opts->Add(convert);
  convert->footer(
      "Kubernetes Service documents for the enforced services must be in --config: their selectors become the\n"
      "policies' workload selectors. Conversion notes go to stderr; the YAML goes to stdout.");
  convert->callback([opts, &ctx] {
    auto set = LoadPolicies(*opts);
    if (!set.ok()) return Fail(ctx, "authz convert", set.status());
    rbac::ConvertOptions options;
    options.root_namespace = opts->root_namespace;
    auto result = rbac::ConvertToV1beta1(set->rbac, options);
    if (!result.ok()) return Fail(ctx, "authz convert", result.status());
    for (const auto& note : result->notes) std::cerr << "note: " << note << "\n";
    std::cout << "# Generated by meshid authz convert from v1alpha1 RBAC (" << result->policies
              << " AuthorizationPolicies).\n"
              << result->yaml << std::flush;
  });
}

}  // namespace

void RegisterPolicyCommands(CLI::App& app, CommandContext& ctx) {
  CLI::App* authz_cmd = app.add_subcommand("authz", "Authorization: Istio RBAC / AuthorizationPolicy decisions");
  authz_cmd->require_subcommand(1);
  RegisterCheck(authz_cmd, ctx);
  RegisterServe(authz_cmd, ctx);
  RegisterConvert(authz_cmd, ctx);
  CLI::App* authn_cmd = app.add_subcommand("authn", "Authentication: Istio mTLS / JWT policy tools");
  authn_cmd->require_subcommand(1);
  RegisterAuthnCommands(authn_cmd, ctx);
}

}  // namespace meshid::cli
