#include "cli/authn_cmd.h"

#include <iostream>
#include <memory>

#include "authz/tls_check.h"
#include "cli/authz_flags.h"
#include "cli/flags.h"

namespace meshid::cli {

void RegisterAuthnCommands(CLI::App* authn, CommandContext& ctx) {
  struct Options {
    PolicyFlags policy;
    std::string filter;
    bool json = false;
    bool auto_mtls = false;
  };
  auto opts = std::make_shared<Options>();
  CLI::App* tls = authn->add_subcommand(
      "tls-check",
      "Compare server mTLS (Policy/MeshPolicy/PeerAuthentication) with DestinationRule TLS, as istioctl 1.5");
  tls->add_option("host", opts->filter, "Only HOST (its FQDN; also its subsets) or HOST:PORT");
  opts->policy.Add(tls, /*several_per_flag=*/false);
  tls->add_flag("--json", opts->json, "Print JSON (the fields of Pilot's /debug/authenticationz)");
  tls->add_flag("--auto-mtls", opts->auto_mtls, "meshConfig.enableAutoMtls is on (status AUTO for unset client TLS)");
  tls->callback([opts, &ctx] {
    auto set = LoadPolicies(opts->policy);
    if (!set.ok()) return Fail(ctx, "authn tls-check", set.status());
    authz::TlsCheckOptions options;
    options.root_namespace = opts->policy.root_namespace;
    options.auto_mtls = opts->auto_mtls;
    auto rows = authz::ComputeTlsCheck(*set, options);
    if (!opts->filter.empty()) {
      auto filtered = authz::FilterTlsCheck(rows, opts->filter);
      if (!filtered.ok()) return Fail(ctx, "authn tls-check", filtered.status());
      rows = std::move(*filtered);
    }
    std::cout << (opts->json ? authz::FormatTlsCheckJson(rows) : authz::FormatTlsCheckTable(rows)) << std::flush;
  });
}

}  // namespace meshid::cli
