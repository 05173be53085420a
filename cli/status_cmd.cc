// `meshid status`: which proxy (and agent) runs which policy version, which CRL and which CA
// roots, and the NACKs with their errors, as the agents last reported them to any server replica
// (read from the store). During a CA rotation, which of them can already validate the new CA.
#include <iostream>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "ca/rotation_plan.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "common/clock.h"
#include "common/duration.h"
#include "common/logging.h"
#include "sql/store.h"

namespace meshid::cli {
namespace {

struct StatusFlags {
  std::string data_dir = "./var/lib/meshid";
  std::string datastore;
  bool json = false;
  std::string stale_after = "2m";
};

std::string Rfc3339(absl::Time t) { return absl::FormatTime("%Y-%m-%d%ET%H:%M:%E*SZ", t, absl::UTCTimeZone()); }

// One word for a row: SYNCED (runs the newest version), NACKED (rejected a version newer than
// the one it runs), PENDING (runs an older one, nothing rejected), DISCONNECTED (its stream is
// gone), LOST (its agent has not reported for --stale-after).
std::string StateOf(const PolicyStatusRow& r, int64_t head, absl::Time now, absl::Duration stale_after) {
  if (now - r.reported_at > stale_after) return "LOST";
  if (!r.connected) return "DISCONNECTED";
  if (r.rejected_version > r.applied_version) return "NACKED";
  if (r.applied_version == head) return "SYNCED";
  return "PENDING";
}

// The ROOTS column: during a rotation (published or active) whether the row can validate the
// new CA ("new+old", "new", "old*"); otherwise whether it holds the replicas' roots ("current",
// "other*"); "-" when not reported. "*" marks who holds something back.
std::string RootsWord(const PolicyStatusRow& r, const AdoptionRow* adoption, const std::string& current_roots) {
  if (r.trust_bundle.empty()) return "-";
  if (adoption != nullptr) {
    if (!adoption->can_validate_new_ca) return "old*";
    return adoption->holds_old_roots ? "new+old" : "new";
  }
  return r.trust_bundle == current_roots ? "current" : "other*";
}

std::string Ago(absl::Duration d) {
  if (d < absl::Seconds(1)) return "just now";
  return absl::StrCat(meshid::FormatDuration(absl::Seconds(absl::ToInt64Seconds(d))), " ago");
}

}  // namespace

void RegisterStatusCommands(CLI::App& app, CommandContext& ctx) {
  auto f = std::make_shared<StatusFlags>();
  CLI::App* cmd = app.add_subcommand("status", "Which proxy runs which policy version, and which rejected one (NACK)");
  cmd->add_option("--data-dir", f->data_dir, "Data directory of the server (its store is <data-dir>/meshid.db)")
      ->capture_default_str();
  cmd->add_option("--datastore", f->datastore,
                  "Store URL instead: sqlite://<path> or postgresql://user[:password]@host:port/database");
  cmd->add_flag("--json", f->json, "One JSON object: the newest version, and every agent and proxy");
  cmd->add_option("--stale-after", f->stale_after,
                  "An agent silent this long is shown as LOST (agents report every 30s)")
      ->capture_default_str();
  cmd->callback([f, &ctx] {
    auto stale_after = ParseDuration(f->stale_after);
    if (!stale_after.ok()) return Fail(ctx, "--stale-after", stale_after.status());
    StoreOptions options;
    options.create_if_missing = false;
    options.max_connections = 2;
    auto store =
        OpenStore(StoreUrlFromFlags(f->data_dir, f->datastore), options, SystemClock::Instance(), MakeNullLogger());
    if (!store.ok()) return Fail(ctx, f->datastore.empty() ? "--data-dir" : "--datastore", store.status());
    auto versions = (*store)->ListPolicyVersions(1);
    if (!versions.ok()) return Fail(ctx, "status", versions.status());
    auto rows = (*store)->ListPolicyStatus();
    if (!rows.ok()) return Fail(ctx, "status", rows.status());
    auto crl_number = (*store)->CrlNumber();
    if (!crl_number.ok()) return Fail(ctx, "status", crl_number.status());
    auto roots_record = (*store)->GetCaMaterial(kCaMaterialSigningCa);
    if (!roots_record.ok()) return Fail(ctx, "status", roots_record.status());
    const std::string current_roots = roots_record->has_value() ? (*roots_record)->fingerprint : "";
    auto rotation = (*store)->GetCaRotation();
    if (!rotation.ok()) return Fail(ctx, "status", rotation.status());
    // Adoption matters while the new root is published and the old one not yet retired.
    const bool rotating = rotation->has_value() && ((*rotation)->phase == CaRotationPhase::kPublished ||
                                                    (*rotation)->phase == CaRotationPhase::kActive);
    std::vector<AdoptionRow> adoption;
    if (rotating) adoption = RotationAdoption(**rotation, *rows);
    // RotationAdoption gives one row per status row, in order.
    auto adoption_of = [&](size_t i) -> const AdoptionRow* { return i < adoption.size() ? &adoption[i] : nullptr; };
    const absl::Time now = SystemClock::Instance().Now();
    const int64_t head = versions->empty() ? 0 : versions->front().version;

    if (f->json) {
      nlohmann::json out = {{"version", nullptr},
                            {"crl_number", *crl_number},
                            {"agents", nlohmann::json::array()},
                            {"proxies", nlohmann::json::array()}};
      if (!versions->empty()) {
        const auto& v = versions->front();
        out["version"] = {{"version", v.version},       {"created_at", Rfc3339(v.created_at)},
                          {"created_by", v.created_by}, {"description", v.description},
                          {"digest", v.digest},         {"documents", v.document_count}};
      }
      if (rotating) {
        out["ca_rotation"] = {{"rotation", (*rotation)->rotation},
                              {"kind", (*rotation)->kind},
                              {"phase", CaRotationPhaseName((*rotation)->phase)}};
      }
      for (size_t i = 0; i < rows->size(); ++i) {
        const PolicyStatusRow& r = (*rows)[i];
        nlohmann::json j = {{"agent_id", r.agent_id},
                            {"applied_version", r.applied_version},
                            {"rejected_version", r.rejected_version},
                            {"last_error", r.last_error},
                            {"crl_number", r.crl_number},
                            {"crl_current", r.crl_number == *crl_number},
                            {"trust_bundle", r.trust_bundle},
                            {"trust_bundle_current", !r.trust_bundle.empty() && r.trust_bundle == current_roots},
                            {"connected", r.connected},
                            {"state", StateOf(r, head, now, *stale_after)},
                            {"changed_at", Rfc3339(r.changed_at)},
                            {"reported_at", Rfc3339(r.reported_at)},
                            {"reporter", r.reporter}};
        if (const AdoptionRow* a = adoption_of(i); a != nullptr) j["can_validate_new_ca"] = a->can_validate_new_ca;
        if (r.proxy_id.empty()) {
          out["agents"].push_back(std::move(j));
        } else {
          j["proxy_id"] = r.proxy_id;
          j["service"] = r.service;
          j["namespace"] = r.namespace_;
          out["proxies"].push_back(std::move(j));
        }
      }
      std::cout << out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
      return;
    }

    if (versions->empty()) {
      std::cout << "no policy version yet (meshid apply -f FILE|DIR stores one)\n";
    } else {
      const auto& v = versions->front();
      std::cout << "policy version " << v.version << ": " << v.document_count << " objects, applied "
                << Rfc3339(v.created_at) << " by " << v.created_by << " (" << v.description << ")\n";
    }
    std::cout << "CRL number " << *crl_number
              << " (every agent and proxy should show it in the CRL column; meshid certs list --revoked lists it)\n";
    if (rotating) {
      std::cout << "CA rotation " << (*rotation)->rotation << " (" << (*rotation)->kind << ") is "
                << CaRotationPhaseName((*rotation)->phase)
                << ": every agent and proxy should show new or new+old in the ROOTS column (meshid ca rotate status "
                   "says who holds it back)\n";
    }
    if (rows->empty()) {
      std::cout << "no agent has reported yet\n";
      std::cout.flush();
      return;
    }
    std::cout << "\n"
              << absl::StrFormat("%-20s %-24s %-16s %-14s %-8s %-13s %-8s %-8s %s\n", "AGENT", "PROXY", "SERVICE",
                                 "NAMESPACE", "VERSION", "STATE", "CRL", "ROOTS", "DETAIL");
    for (size_t i = 0; i < rows->size(); ++i) {
      const PolicyStatusRow& r = (*rows)[i];
      const std::string state = StateOf(r, head, now, *stale_after);
      std::string detail;
      if (state == "NACKED") {
        detail = absl::StrCat("rejected ", r.rejected_version, ": ", r.last_error);
      } else if (state == "LOST") {
        detail = absl::StrCat("last report ", Ago(now - r.reported_at));
      } else if (state == "DISCONNECTED") {
        detail = absl::StrCat("since ", Ago(now - r.changed_at));
      } else if (r.rejected_version > 0 && !r.last_error.empty()) {
        detail = absl::StrCat("(earlier rejected ", r.rejected_version, ": ", r.last_error, ")");
      }
      // The CRL column: the number it enforces, marked "*" while behind the store's.
      const std::string crl = r.crl_number == 0            ? "-"
                              : r.crl_number < *crl_number ? absl::StrCat(r.crl_number, "*")
                                                           : absl::StrCat(r.crl_number);
      const std::string line = absl::StrFormat(
          "%-20s %-24s %-16s %-14s %-8s %-13s %-8s %-8s %s", r.agent_id, r.proxy_id.empty() ? "(agent)" : r.proxy_id,
          r.proxy_id.empty() ? "-" : r.service, r.proxy_id.empty() ? "-" : r.namespace_,
          r.applied_version == 0 ? "-" : absl::StrCat(r.applied_version), state, crl,
          RootsWord(r, adoption_of(i), current_roots), detail);
      std::cout << absl::StripTrailingAsciiWhitespace(line) << "\n";
    }
    std::cout.flush();
  });
}

}  // namespace meshid::cli
