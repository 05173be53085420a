// Helpers shared by the subcommands: error reporting, who runs them, and signal handling.
#pragma once

#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <iostream>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "cli/commands.h"

namespace meshid::cli {

// Prints "meshid: <what>: <message>" on one line and sets exit code 1 (2 for bad arguments).
inline void Fail(CommandContext& ctx, absl::string_view what, const absl::Status& status) {
  std::cerr << "meshid: " << what << ": " << status.message() << std::endl;
  ctx.exit_code = absl::IsInvalidArgument(status) ? 2 : 1;
}

// "user@host": who ran a command that changes the store (policy versions, revocations).
inline std::string OperatorName() {
  const char* user = std::getenv("USER");
  char host[256] = {};
  if (::gethostname(host, sizeof(host) - 1) != 0) host[0] = '\0';
  return absl::StrCat(user != nullptr && *user != '\0' ? user : "unknown", "@", host[0] != '\0' ? host : "unknown");
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
