// `meshid authn ...` subcommands (registered by RegisterPolicyCommands in authz_cmd.cc).
#pragma once

#include <CLI/CLI.hpp>

#include "cli/commands.h"

namespace meshid::cli {

void RegisterAuthnCommands(CLI::App* authn, CommandContext& ctx);

}  // namespace meshid::cli
