// The storage commands: `meshid certs list`, `meshid entry create|list|delete`,
// `meshid identity block|unblock|list-blocked`. Each works on the store of a data directory
// (--data-dir, as `meshid server`) or on --datastore URL.
#include <algorithm>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "common/clock.h"
#include "common/duration.h"
#include "common/files.h"
#include "common/logging.h"
#include "common/spiffe_id.h"
#include "sql/store.h"
#include "store/validation.h"

namespace meshid::cli {
namespace {

struct StoreFlags {
  std::string data_dir = "./var/lib/meshid";
  std::string datastore;
};

void AddStoreFlags(CLI::App* cmd, const std::shared_ptr<StoreFlags>& f) {
  cmd->add_option("--data-dir", f->data_dir, "Data directory of the server (its store is <data-dir>/meshid.db)")
      ->capture_default_str();
  cmd->add_option("--datastore", f->datastore,
                  "Store URL instead: sqlite://<path> or postgresql://user[:password]@host:port/database");
}

// The flag to blame for a store that cannot be opened.
const char* StoreFlag(const StoreFlags& f) { return f.datastore.empty() ? "--data-dir" : "--datastore"; }

// Opens the store the flags name. Commands that only read do not create a database.
absl::StatusOr<std::unique_ptr<Store>> OpenFromFlags(const StoreFlags& f, bool writes) {
  StoreOptions options;
  options.create_if_missing = writes;
  options.max_connections = 2;
  if (writes && f.datastore.empty()) {
    if (auto s = EnsureDirectory(f.data_dir, 0700); !s.ok()) return s;
  }
  // The tools print their own outcome; migrations they apply are not logged.
  return OpenStore(StoreUrlFromFlags(f.data_dir, f.datastore), options, SystemClock::Instance(), MakeNullLogger());
}

// RFC 3339 in UTC with "Z", fractional seconds only when there are any.
std::string Rfc3339(absl::Time t) { return absl::FormatTime("%Y-%m-%d%ET%H:%M:%E*SZ", t, absl::UTCTimeZone()); }

absl::Status CheckSpiffeIdFlag(const std::string& id) {
  auto parsed = SpiffeId::Parse(id);
  if (!parsed.ok()) return absl::InvalidArgumentError(absl::StrCat("\"", id, "\": ", parsed.status().message()));
  return absl::OkStatus();
}

// ---- certs list ----

struct CertsListFlags {
  std::string spiffe_id;
  std::string serial;
  bool expired = false;
  bool json = false;
  size_t limit = 1000;
};

void RunCertsList(const StoreFlags& sf, const CertsListFlags& f, CommandContext& ctx) {
  IssuanceQuery query;
  query.now = SystemClock::Instance().Now();
  query.expired_only = f.expired;
  query.limit = f.limit;
  if (!f.spiffe_id.empty()) {
    if (auto s = CheckSpiffeIdFlag(f.spiffe_id); !s.ok()) return Fail(ctx, "--spiffe-id", s);
    query.spiffe_id = f.spiffe_id;
  }
  if (!f.serial.empty()) {
    // Accept openssl's forms too: lower case, "0x" prefix, colon-separated bytes.
    std::string serial = absl::AsciiStrToUpper(f.serial);
    if (absl::StartsWith(serial, "0X")) serial.erase(0, 2);
    serial.erase(std::remove(serial.begin(), serial.end(), ':'), serial.end());
    if (serial.empty() || serial.size() > 128 || !std::all_of(serial.begin(), serial.end(), [](char c) {
          return absl::ascii_isxdigit(static_cast<unsigned char>(c));
        })) {
      return Fail(ctx, "--serial",
                  absl::InvalidArgumentError(absl::StrCat("\"", f.serial, "\" is not a hex serial number")));
    }
    query.serial_hex = serial;
  }
  auto store = OpenFromFlags(sf, /*writes=*/false);
  if (!store.ok()) return Fail(ctx, StoreFlag(sf), store.status());
  auto records = (*store)->ListIssuances(query);
  if (!records.ok()) return Fail(ctx, "certs list", records.status());
  if (f.json) {
    for (const IssuanceRecord& r : *records) {
      nlohmann::json j = {{"serial", r.serial_hex},
                          {"spiffe_id", r.spiffe_id},
                          {"not_before", Rfc3339(r.not_before)},
                          {"not_after", Rfc3339(r.not_after)},
                          {"public_key_sha256", r.public_key_sha256},
                          {"issuer_serial", r.issuer_serial_hex},
                          {"auth_method", r.auth_method},
                          {"auth_detail", r.auth_detail},
                          {"issued_at", Rfc3339(r.issued_at)},
                          {"expired", r.not_after <= query.now}};
      std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    }
    std::cout.flush();
    return;
  }
  if (records->empty()) {
    std::cerr << "no certificates match" << std::endl;
    return;
  }
  std::cout << absl::StrFormat("%-34s %-20s %-20s %-11s %s\n", "SERIAL", "NOT BEFORE", "NOT AFTER", "AUTH",
                               "SPIFFE ID");
  for (const IssuanceRecord& r : *records) {
    std::cout << absl::StrFormat("%-34s %-20s %-20s %-11s %s%s\n", r.serial_hex, Rfc3339(r.not_before),
                                 Rfc3339(r.not_after), r.auth_method, r.spiffe_id,
                                 r.not_after <= query.now ? "  (expired)" : "");
  }
  std::cout.flush();
  if (f.limit > 0 && records->size() == f.limit) {
    std::cerr << "(the newest " << f.limit << "; --limit 0 lists all)" << std::endl;
  }
}

// ---- entry ----

struct EntryFlags {
  std::string spiffe_id;
  std::vector<std::string> allow;
  std::string max_ttl = "0s";
  std::vector<std::string> dns_names;
  std::string note;
  bool json = false;
};

void RunEntryCreate(const StoreFlags& sf, const EntryFlags& f, CommandContext& ctx) {
  RegistryEntry entry;
  entry.spiffe_id = f.spiffe_id;
  entry.allowed_auth = f.allow.empty() ? std::vector<std::string>{"*"} : f.allow;
  auto ttl = ParseDuration(f.max_ttl);
  if (!ttl.ok()) return Fail(ctx, "--max-ttl", ttl.status());
  entry.max_ttl = *ttl;
  entry.dns_names = f.dns_names;
  entry.note = f.note;
  entry.created_at = SystemClock::Instance().Now();
  // Check before touching the store, so a typo creates no database.
  if (auto s = ValidateRegistryEntry(entry); !s.ok()) return Fail(ctx, "entry create", s);
  auto store = OpenFromFlags(sf, /*writes=*/true);
  if (!store.ok()) return Fail(ctx, StoreFlag(sf), store.status());
  if (auto s = (*store)->CreateEntry(entry); !s.ok()) return Fail(ctx, "entry create", s);
  std::cout << "created registry entry for " << entry.spiffe_id
            << " (allow: " << absl::StrJoin(entry.allowed_auth, ", ") << "; max ttl: "
            << (entry.max_ttl == absl::ZeroDuration() ? "server maximum" : meshid::FormatDuration(entry.max_ttl))
            << "; dns names: " << (entry.dns_names.empty() ? "none" : absl::StrJoin(entry.dns_names, ", ")) << ")"
            << std::endl;
}

void RunEntryList(const StoreFlags& sf, const EntryFlags& f, CommandContext& ctx) {
  auto store = OpenFromFlags(sf, /*writes=*/false);
  if (!store.ok()) return Fail(ctx, StoreFlag(sf), store.status());
  auto entries = (*store)->ListEntries();
  if (!entries.ok()) return Fail(ctx, "entry list", entries.status());
  for (const RegistryEntry& e : *entries) {
    if (f.json) {
      nlohmann::json j = {{"spiffe_id", e.spiffe_id},
                          {"allowed_auth", e.allowed_auth},
                          {"max_ttl", e.max_ttl == absl::ZeroDuration() ? "" : meshid::FormatDuration(e.max_ttl)},
                          {"max_ttl_seconds", absl::ToInt64Seconds(e.max_ttl)},
                          {"dns_names", e.dns_names},
                          {"note", e.note},
                          {"created_at", Rfc3339(e.created_at)}};
      std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    } else {
      std::cout << e.spiffe_id << "\n  allow: " << absl::StrJoin(e.allowed_auth, ", ") << "\n  max ttl: "
                << (e.max_ttl == absl::ZeroDuration() ? "server maximum" : meshid::FormatDuration(e.max_ttl))
                << "\n  dns names: " << (e.dns_names.empty() ? "none" : absl::StrJoin(e.dns_names, ", "))
                << (e.note.empty() ? "" : "\n  note: " + e.note) << "\n  created: " << Rfc3339(e.created_at) << "\n";
    }
  }
  if (entries->empty() && !f.json) std::cerr << "no registry entries" << std::endl;
  std::cout.flush();
}

void RunEntryDelete(const StoreFlags& sf, const EntryFlags& f, CommandContext& ctx) {
  if (auto s = CheckSpiffeIdFlag(f.spiffe_id); !s.ok()) return Fail(ctx, "--spiffe-id", s);
  auto store = OpenFromFlags(sf, /*writes=*/false);
  if (!store.ok()) return Fail(ctx, StoreFlag(sf), store.status());
  if (auto s = (*store)->DeleteEntry(f.spiffe_id); !s.ok()) return Fail(ctx, "entry delete", s);
  std::cout << "deleted registry entry for " << f.spiffe_id << std::endl;
}

// ---- identity ----

struct IdentityFlags {
  std::string spiffe_id;
  std::string reason;
  bool json = false;
};

void RunBlock(const StoreFlags& sf, const IdentityFlags& f, CommandContext& ctx) {
  if (auto s = CheckSpiffeIdFlag(f.spiffe_id); !s.ok()) return Fail(ctx, "identity block", s);
  auto store = OpenFromFlags(sf, /*writes=*/true);
  if (!store.ok()) return Fail(ctx, StoreFlag(sf), store.status());
  if (auto s = (*store)->Block(f.spiffe_id, f.reason, SystemClock::Instance().Now()); !s.ok()) {
    return Fail(ctx, "identity block", s);
  }
  std::cout << "blocked " << f.spiffe_id << ": it cannot obtain or renew a certificate until unblocked" << std::endl;
}

void RunUnblock(const StoreFlags& sf, const IdentityFlags& f, CommandContext& ctx) {
  if (auto s = CheckSpiffeIdFlag(f.spiffe_id); !s.ok()) return Fail(ctx, "identity unblock", s);
  auto store = OpenFromFlags(sf, /*writes=*/false);
  if (!store.ok()) return Fail(ctx, StoreFlag(sf), store.status());
  if (auto s = (*store)->Unblock(f.spiffe_id); !s.ok()) return Fail(ctx, "identity unblock", s);
  std::cout << "unblocked " << f.spiffe_id << std::endl;
}

void RunListBlocked(const StoreFlags& sf, const IdentityFlags& f, CommandContext& ctx) {
  auto store = OpenFromFlags(sf, /*writes=*/false);
  if (!store.ok()) return Fail(ctx, StoreFlag(sf), store.status());
  auto blocked = (*store)->ListBlocked();
  if (!blocked.ok()) return Fail(ctx, "identity list-blocked", blocked.status());
  for (const BlockedIdentity& b : *blocked) {
    if (f.json) {
      nlohmann::json j = {{"spiffe_id", b.spiffe_id}, {"reason", b.reason}, {"blocked_at", Rfc3339(b.blocked_at)}};
      std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    } else {
      std::cout << b.spiffe_id << "  blocked " << Rfc3339(b.blocked_at)
                << (b.reason.empty() ? "" : "  reason: " + b.reason) << "\n";
    }
  }
  if (blocked->empty() && !f.json) std::cerr << "no blocked identities" << std::endl;
  std::cout.flush();
}

CLI::App* FindOrAddSubcommand(CLI::App& app, const std::string& name, const std::string& description) {
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
    if (sub->get_name() == name) return sub;
  }
  CLI::App* sub = app.add_subcommand(name, description);
  sub->require_subcommand(1);
  return sub;
}

}  // namespace

void RegisterStoreCommands(CLI::App& app, CommandContext& ctx) {
  auto sf = std::make_shared<StoreFlags>();

  CLI::App* certs = FindOrAddSubcommand(app, "certs", "Workload certificates");
  auto lf = std::make_shared<CertsListFlags>();
  CLI::App* list = certs->add_subcommand("list", "List issued certificates from the ledger, newest first");
  AddStoreFlags(list, sf);
  list->add_option("--spiffe-id", lf->spiffe_id, "Only certificates of this SPIFFE ID");
  list->add_option("--serial", lf->serial, "Only the certificate with this serial (hex)");
  list->add_flag("--expired", lf->expired, "Only certificates that have expired");
  list->add_flag("--json", lf->json, "One JSON object per line");
  list->add_option("--limit", lf->limit, "At most this many (0: all)")->capture_default_str();
  list->callback([sf, lf, &ctx] { RunCertsList(*sf, *lf, ctx); });

  CLI::App* entry = app.add_subcommand("entry", "The identity registry (see `meshid server --require-registration`)");
  entry->require_subcommand(1);
  auto ef = std::make_shared<EntryFlags>();
  CLI::App* create = entry->add_subcommand("create", "Register an identity");
  AddStoreFlags(create, sf);
  create->add_option("--spiffe-id", ef->spiffe_id, "SPIFFE ID, spiffe://<trust-domain>/ns/<ns>/sa/<sa>")->required();
  create->add_option("--allow", ef->allow,
                     "Who may obtain it: *, jwt-sub:<subject>, jwt-iss:<issuer>, client-cert (repeatable; default *)");
  create->add_option("--max-ttl", ef->max_ttl, "Longest certificate lifetime for it (0s: the server's maximum)")
      ->capture_default_str();
  create->add_option("--dns-name", ef->dns_names, "DNS SAN to add to its certificates (repeatable)");
  create->add_option("--note", ef->note, "Free text for administrators");
  create->callback([sf, ef, &ctx] { RunEntryCreate(*sf, *ef, ctx); });
  CLI::App* elist = entry->add_subcommand("list", "List registered identities");
  AddStoreFlags(elist, sf);
  elist->add_flag("--json", ef->json, "One JSON object per line");
  elist->callback([sf, ef, &ctx] { RunEntryList(*sf, *ef, ctx); });
  CLI::App* remove = entry->add_subcommand("delete", "Remove a registered identity");
  AddStoreFlags(remove, sf);
  remove->add_option("--spiffe-id", ef->spiffe_id, "SPIFFE ID of the entry")->required();
  remove->callback([sf, ef, &ctx] { RunEntryDelete(*sf, *ef, ctx); });

  CLI::App* identity = app.add_subcommand("identity", "The deny list");
  identity->require_subcommand(1);
  auto idf = std::make_shared<IdentityFlags>();
  CLI::App* block = identity->add_subcommand("block", "Refuse certificates (new and renewals) for an identity");
  AddStoreFlags(block, sf);
  block->add_option("spiffe-id", idf->spiffe_id, "SPIFFE ID to block")->required();
  block->add_option("--reason", idf->reason, "Why (shown by list-blocked)");
  block->callback([sf, idf, &ctx] { RunBlock(*sf, *idf, ctx); });
  CLI::App* unblock = identity->add_subcommand("unblock", "Lift a block");
  AddStoreFlags(unblock, sf);
  unblock->add_option("spiffe-id", idf->spiffe_id, "SPIFFE ID to unblock")->required();
  unblock->callback([sf, idf, &ctx] { RunUnblock(*sf, *idf, ctx); });
  CLI::App* lb = identity->add_subcommand("list-blocked", "List blocked identities");
  AddStoreFlags(lb, sf);
  lb->add_flag("--json", idf->json, "One JSON object per line");
  lb->callback([sf, idf, &ctx] { RunListBlocked(*sf, *idf, ctx); });
}

}  // namespace meshid::cli
