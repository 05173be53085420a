// Helpers shared by the subcommands: error reporting and signal handling.
#pragma once

#include <csignal>
#include <iostream>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "cli/commands.h"

namespace meshid::cli {

// Prints "meshid: <what>: <message>" on one line and sets exit code 1 (2 for bad arguments).
inline void Fail(CommandContext& ctx, absl::string_view what, const absl::Status& status) {
  std::cerr << "meshid: " << what << ": " << status.message() << std::endl;
  ctx.exit_code = absl::IsInvalidArgument(status) ? 2 : 1;
}

// Blocks SIGINT/SIGTERM in this and future threads so one thread can wait for them.
inline void BlockTerminationSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

// Returns when SIGINT or SIGTERM arrives (after BlockTerminationSignals).
inline int WaitForTerminationSignal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  int sig = 0;
  sigwait(&set, &sig);
  return sig;
}

}  // namespace meshid::cli
