#include <iostream>

#include "absl/synchronization/mutex.h"
#include "cli/commands.h"

int main(int argc, char** argv) {
#ifdef NDEBUG
  // Debian's Abseil is built with Mutex deadlock detection on, which keeps a lock graph on
  // every acquisition (~3% of the CA's CPU per certificate). The tests keep it on.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif
  CLI::App app{"meshid: workload identity and policy for service meshes"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "meshid 0.1.0");
  meshid::cli::CommandContext ctx;
  meshid::cli::RegisterServerCommands(app, ctx);
  meshid::cli::RegisterTokenCommands(app, ctx);
  meshid::cli::RegisterCertsCommands(app, ctx);
  meshid::cli::RegisterAgentCommands(app, ctx);
  meshid::cli::RegisterProxyCommands(app, ctx);
  meshid::cli::RegisterPolicyCommands(app, ctx);
  meshid::cli::RegisterApplyCommands(app, ctx);
  meshid::cli::RegisterStatusCommands(app, ctx);
  meshid::cli::RegisterHelloCommands(app, ctx);
  meshid::cli::RegisterSvidCommands(app, ctx);
  meshid::cli::RegisterStoreCommands(app, ctx);  // after RegisterCertsCommands: adds `certs list`
  meshid::cli::RegisterCaCommands(app, ctx);
  CLI11_PARSE(app, argc, argv);
  return ctx.exit_code;
}
