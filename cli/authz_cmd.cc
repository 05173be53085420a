// `meshid authz check|serve|convert` and (through authn_cmd.cc) `meshid authn tls-check`.
#include <fstream>
#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "authz/request_json.h"
#include "cli/authn_cmd.h"
#include "cli/authz_flags.h"
#include "cli/commands.h"
#include "cli/flags.h"

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
    auto engine = BuildEngine(std::move(*set), opts->policy, clock->get());
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

}  // namespace

void RegisterPolicyCommands(CLI::App& app, CommandContext& ctx) {
  CLI::App* authz_cmd = app.add_subcommand("authz", "Authorization: Istio RBAC / AuthorizationPolicy decisions");
  authz_cmd->require_subcommand(1);
  RegisterCheck(authz_cmd, ctx);
  CLI::App* authn_cmd = app.add_subcommand("authn", "Authentication: Istio mTLS / JWT policy tools");
  authn_cmd->require_subcommand(1);
  RegisterAuthnCommands(authn_cmd, ctx);
}

}  // namespace meshid::cli
