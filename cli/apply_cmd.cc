// `meshid apply -f FILE|DIR` and `meshid delete -f FILE|DIR`: validate Istio YAML and store it in
// the server's store as a new policy version, which every `meshid server` replica streams to
// its agents (policy/apply.h says what a version is).
#include <iostream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "common/clock.h"
#include "common/files.h"
#include "common/logging.h"
#include "policy/apply.h"
#include "rbac/yaml_source.h"
#include "sql/store.h"

namespace meshid::cli {
namespace {

struct ApplyFlags {
  std::vector<std::string> files;
  bool prune = false;
  bool dry_run = false;
  std::string namespace_ = "default";
  std::string domain = "cluster.local";
  std::string data_dir = "./var/lib/meshid";
  std::string datastore;
};

void PrintFindings(const rbac::Diagnostics& diag) {
  for (const auto& d : diag.items()) {
    std::cerr << (d.severity == rbac::Diagnostic::Severity::kWarning ? "warning: " : "error: ") << d.ToString() << "\n";
  }
  std::cerr.flush();
}

void Run(const ApplyFlags& f, policy::ApplyMode mode, const char* verb, CommandContext& ctx) {
  if (f.files.empty()) return Fail(ctx, verb, absl::InvalidArgumentError("-f FILE|DIR is required"));
  authz::LoadOptions load;
  load.read.default_namespace = f.namespace_;
  load.domain = f.domain;
  const bool writes = !f.dry_run;
  if (writes && f.datastore.empty()) {
    if (auto s = EnsureDirectory(f.data_dir, 0700); !s.ok()) return Fail(ctx, "--data-dir", s);
  }
  StoreOptions store_options;
  store_options.create_if_missing = writes;
  store_options.max_connections = 2;
  // The tools print their own outcome; migrations they apply are not logged.
  auto store =
      OpenStore(StoreUrlFromFlags(f.data_dir, f.datastore), store_options, SystemClock::Instance(), MakeNullLogger());
  if (!store.ok()) return Fail(ctx, f.datastore.empty() ? "--data-dir" : "--datastore", store.status());

  rbac::Diagnostics diag;
  absl::StatusOr<policy::ApplyResult> result;
  if (f.dry_run) {
    auto head = (*store)->PolicyHeadVersion();
    if (!head.ok()) return Fail(ctx, verb, head.status());
    std::vector<StoredPolicyDocument> base;
    if (*head > 0) {
      auto current = (*store)->GetPolicyVersion(*head);
      if (!current.ok()) return Fail(ctx, verb, current.status());
      base = std::move(current->documents);
    }
    auto docs = rbac::ReadDocuments(f.files, load.read, diag);
    auto plan = diag.has_errors()
                    ? absl::StatusOr<policy::ApplyPlan>(diag.ToStatus())
                    : policy::PlanPolicyApply(docs, base, mode, load, SystemClock::Instance().Now(), diag);
    if (plan.ok())
      result = policy::ApplyResult{std::move(*plan), *head};
    else
      result = plan.status();
  } else {
    result = policy::ApplyPolicyFiles(**store, f.files, mode, load, SystemClock::Instance(), OperatorName(), diag);
  }
  PrintFindings(diag);
  if (!result.ok()) {
    if (absl::IsInvalidArgument(result.status())) {
      std::cerr << "meshid " << verb << ": nothing stored: " << diag.error_count() << " error"
                << (diag.error_count() == 1 ? "" : "s") << std::endl;
      if (diag.error_count() == 0) std::cerr << "meshid " << verb << ": " << result.status().message() << std::endl;
      ctx.exit_code = 2;
      return;
    }
    return Fail(ctx, verb, result.status());
  }
  for (const std::string& change : result->plan.changes) std::cout << change << (f.dry_run ? " (dry run)" : "") << "\n";
  if (result->plan.no_change()) {
    std::cout << "no changes; policy version " << result->version << " stays current (" << result->plan.documents.size()
              << " objects)\n";
  } else if (f.dry_run) {
    std::cout << "dry run: would store policy version " << result->version + 1 << " (" << result->plan.Summary()
              << "); nothing stored\n";
  } else {
    std::cout << "policy version " << result->version << " stored (" << result->plan.Summary() << ")\n";
  }
  std::cout.flush();
}

void AddFlags(CLI::App* cmd, const std::shared_ptr<ApplyFlags>& f) {
  cmd->add_option("-f,--filename", f->files, "Policy YAML file or directory (*.yaml, *.yml, *.json in it), repeatable")
      ->required();
  cmd->add_option("-n,--namespace", f->namespace_, "Namespace of documents that name none")->capture_default_str();
  cmd->add_option("--domain", f->domain, "Cluster domain: services are <name>.<ns>.svc.<domain>")
      ->capture_default_str();
  cmd->add_flag("--dry-run", f->dry_run, "Validate and show what would change; store nothing");
  cmd->add_option("--data-dir", f->data_dir, "Data directory of the server (its store is <data-dir>/meshid.db)")
      ->capture_default_str();
  cmd->add_option("--datastore", f->datastore,
                  "Store URL instead: sqlite://<path> or postgresql://user[:password]@host:port/database");
}

}  // namespace

void RegisterApplyCommands(CLI::App& app, CommandContext& ctx) {
  auto apply = std::make_shared<ApplyFlags>();
  CLI::App* cmd = app.add_subcommand(
      "apply", "Validate Istio policy YAML and store it as a new policy version (streamed to every agent and proxy)");
  AddFlags(cmd, apply);
  cmd->add_flag("--prune", apply->prune, "The files are the whole policy set: delete stored objects they do not name");
  cmd->callback([apply, &ctx] {
    Run(*apply, apply->prune ? policy::ApplyMode::kPrune : policy::ApplyMode::kUpsert, "apply", ctx);
  });

  auto del = std::make_shared<ApplyFlags>();
  CLI::App* del_cmd = app.add_subcommand("delete", "Delete the policy objects the files name (a new policy version)");
  AddFlags(del_cmd, del);
  del_cmd->callback([del, &ctx] { Run(*del, policy::ApplyMode::kDelete, "delete", ctx); });
}

}  // namespace meshid::cli
