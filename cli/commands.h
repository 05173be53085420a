// Each subcommand family lives in its own cli/<name>_cmd.cc and registers itself on the root
// app. A command's callback sets the process exit code through `exit_code`.
#pragma once

#include <CLI/CLI.hpp>

namespace meshid::cli {

struct CommandContext {
  int exit_code = 0;
};

void RegisterServerCommands(CLI::App& app, CommandContext& ctx);
void RegisterTokenCommands(CLI::App& app, CommandContext& ctx);
void RegisterCertsCommands(CLI::App& app, CommandContext& ctx);
void RegisterAgentCommands(CLI::App& app, CommandContext& ctx);
void RegisterProxyCommands(CLI::App& app, CommandContext& ctx);
void RegisterPolicyCommands(CLI::App& app, CommandContext& ctx);
// `apply`, `delete` (cli/apply_cmd.cc), `status` (cli/status_cmd.cc), `hello` (cli/hello_cmd.cc).
void RegisterApplyCommands(CLI::App& app, CommandContext& ctx);
void RegisterStatusCommands(CLI::App& app, CommandContext& ctx);
void RegisterHelloCommands(CLI::App& app, CommandContext& ctx);
void RegisterSvidCommands(CLI::App& app, CommandContext& ctx);
// `certs list`, `entry ...`, `identity ...` (cli/store_cmds.cc); after RegisterCertsCommands.
void RegisterStoreCommands(CLI::App& app, CommandContext& ctx);
// `ca rotate prepare|publish|activate|retire|status` (cli/ca_rotate_cmd.cc).
void RegisterCaCommands(CLI::App& app, CommandContext& ctx);

}  // namespace meshid::cli
