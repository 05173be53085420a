// `meshid hello`: the demo app behind a proxy — a tiny HTTP server answering "HELLO <version>"
// (on /, /hello and /admin, so a policy, not the app, decides about /admin) and /healthz.
#include <iostream>

#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "common/http_status_server.h"
#include "common/net.h"

namespace meshid::cli {
namespace {
struct HelloFlags {
  std::string listen = "127.0.0.1:8080";
  std::string version = "v1";
};
}  // namespace

void RegisterHelloCommands(CLI::App& app, CommandContext& ctx) {
  auto f = std::make_shared<HelloFlags>();
  CLI::App* cmd = app.add_subcommand("hello", "Run the demo app: HTTP answering \"HELLO <version>\" and /healthz");
  cmd->add_option("--listen", f->listen, "Address to listen on (port 0: any free port)")->capture_default_str();
  cmd->add_option("--version", f->version, "What to answer after HELLO")->capture_default_str();
  cmd->callback([f, &ctx] {
    if (auto hp = ParseHostPort(f->listen); !hp.ok()) return Fail(ctx, "--listen", hp.status());
    const std::string body = absl::StrCat("HELLO ", f->version, "\n");
    auto hello = [body](const std::string&) { return HttpReply{200, "text/plain; charset=utf-8", body}; };
    std::map<std::string, HttpHandler> handlers = {
        {"/", hello},
        {"/hello", hello},
        {"/admin", hello},
        {"/healthz",
         [](const std::string&) {
           return HttpReply{200, "text/plain; charset=utf-8", "ok\n"};
         }},
    };
    BlockTerminationSignals();
    auto server = HttpStatusServer::Create(f->listen, std::move(handlers));
    if (!server.ok()) return Fail(ctx, "--listen", server.status());
    HostPort bound = *ParseHostPort(f->listen);
    bound.port = (*server)->port();
    std::cerr << "hello " << f->version << " listening on " << bound.ToString() << std::endl;
    WaitForTerminationSignal();
  });
}

}  // namespace meshid::cli
