// Flags and loading shared by the policy subcommands (`authz check|serve|convert`,
// `authn tls-check`).
#pragma once

#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "authz/policy_engine.h"
#include "authz/policy_set.h"
#include "common/clock.h"

namespace meshid::cli {

struct PolicyFlags {
  std::vector<std::string> config;
  std::string default_namespace = "default";
  std::string domain = "cluster.local";
  std::string root_namespace = "istio-system";
  std::string trust_domain;
  std::string now;                               // RFC 3339 or Unix seconds; "" = the system clock
  std::vector<std::string> ext_authz_providers;  // NAME=TARGET for CUSTOM policies

  // `--config a b` takes both paths unless the command has a positional argument
  // (`authn tls-check HOST`), where each --config takes exactly one.
  void Add(CLI::App* cmd, bool several_per_flag = true) {
    cmd->add_option("--config,-c", config, "Policy YAML files or directories (repeatable)")
        ->required()
        ->allow_extra_args(several_per_flag);
    cmd->add_option("--namespace,-n", default_namespace, "Namespace of documents that name none")
        ->capture_default_str();
    cmd->add_option("--domain", domain, "Cluster domain: services are <name>.<ns>.svc.<domain>")->capture_default_str();
    cmd->add_option("--root-namespace", root_namespace, "meshConfig.rootNamespace (mesh-wide policies)")
        ->capture_default_str();
  }
  void AddEngine(CLI::App* cmd) {
    cmd->add_option("--trust-domain", trust_domain,
                    "Local trust domain for the peer trust-domain check (default: the destination principal's)");
    cmd->add_option("--now", now, "Evaluate JWT times at this instant (RFC 3339 or Unix seconds)");
    AddProviders(cmd);
  }
  void AddProviders(CLI::App* cmd) {
    cmd->add_option("--ext-authz-provider", ext_authz_providers,
                    "NAME=host:port|unix:PATH: the ext_authz v3 gRPC server behind CUSTOM policies naming NAME "
                    "(repeatable); a matching CUSTOM policy without one is denied")
        ->allow_extra_args(false);
  }
  authz::LoadOptions Load() const {
    authz::LoadOptions o;
    o.read.default_namespace = default_namespace;
    o.domain = domain;
    return o;
  }
};

// Loads and validates the configuration, printing every finding (errors and warnings) to
// stderr as "file:line: object: field: message".
absl::StatusOr<authz::PolicySet> LoadPolicies(const PolicyFlags& flags);

// The clock for --now (a fixed instant) or the system clock.
absl::StatusOr<std::unique_ptr<Clock>> ClockFor(const std::string& now);

// The CUSTOM-policy authorizer for --ext-authz-provider (nullptr when none is given).
absl::StatusOr<std::shared_ptr<const rbac::CustomAuthorizer>> CustomProviders(const PolicyFlags& flags);

// Builds the engine from a policy set, printing engine warnings (e.g. unreachable JWKS).
absl::StatusOr<std::shared_ptr<const authz::PolicyEngine>> BuildEngine(authz::PolicySet set, const PolicyFlags& flags,
                                                                       const Clock& clock);

}  // namespace meshid::cli
