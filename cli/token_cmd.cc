// `meshid token create`: sign a service-account token with the server's local issuer key.
#include <iostream>

#include "absl/strings/str_split.h"
#include "ca/local_issuer.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "common/clock.h"
#include "common/duration.h"

namespace meshid::cli {
namespace {
struct TokenFlags {
  std::string data_dir = "./var/lib/meshid";
  std::string ns;
  std::string service_account;
  std::string ttl = "12h";
  std::string audience = "istio-ca";
};
}  // namespace

void RegisterTokenCommands(CLI::App& app, CommandContext& ctx) {
  CLI::App* token = app.add_subcommand("token", "Local token issuer (no Kubernetes needed)");
  token->require_subcommand(1);
  auto opts = std::make_shared<TokenFlags>();
  CLI::App* create = token->add_subcommand("create", "Print a JWT that `meshid server` on the same data dir accepts");
  create->add_option("--data-dir", opts->data_dir, "The server's data directory")->capture_default_str();
  create->add_option("--namespace,-n", opts->ns, "Kubernetes-style namespace")->required();
  create->add_option("--service-account,-s", opts->service_account, "Service account name")->required();
  create->add_option("--ttl", opts->ttl, "Token lifetime (Istio's projected tokens: 12h)")->capture_default_str();
  create->add_option("--audience", opts->audience, "Audience(s), comma-separated")->capture_default_str();
  create->callback([opts, &ctx] {
    auto ttl = ParseDuration(opts->ttl);
    if (!ttl.ok()) return Fail(ctx, "--ttl", ttl.status());
    auto issuer = LocalTokenIssuer::Load(opts->data_dir, /*create=*/false);
    if (!issuer.ok()) return Fail(ctx, "--data-dir", issuer.status());
    std::vector<std::string> audiences = absl::StrSplit(opts->audience, ',', absl::SkipEmpty());
    auto jwt = issuer->CreateToken(opts->ns, opts->service_account, audiences, *ttl, SystemClock::Instance());
    if (!jwt.ok()) return Fail(ctx, "token create", jwt.status());
    std::cout << *jwt << std::endl;
  });
}

}  // namespace meshid::cli
