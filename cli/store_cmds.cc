// The storage commands: `meshid certs list|revoke|crl`, `meshid entry create|list|delete`,
// `meshid identity block|unblock|list-blocked`. Each works on the store of a data directory
// (--data-dir, as `meshid server`) or on --datastore URL.
#include <algorithm>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "ca/authority.h"
#include "ca/crl_builder.h"
#include "cli/ca_key_flags.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "common/clock.h"
#include "common/crl.h"
#include "common/duration.h"
#include "common/files.h"
#include "common/logging.h"
#include "common/random.h"
#include "common/selector.h"
#include "common/spiffe_id.h"
#include "common/x509.h"
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

// A serial as the ledger writes it (upper-case hex, whole bytes, no leading zero bytes: what
// BN_bn2hex and `openssl x509 -serial` print), from any of openssl's forms: lower case, a "0x"
// prefix, colon-separated bytes, a DER-style leading 00.
absl::StatusOr<std::string> NormalizeSerial(const std::string& text) {
  std::string serial = absl::AsciiStrToUpper(text);
  if (absl::StartsWith(serial, "0X")) serial.erase(0, 2);
  serial.erase(std::remove(serial.begin(), serial.end(), ':'), serial.end());
  if (serial.empty() || serial.size() > 128 || !std::all_of(serial.begin(), serial.end(), [](char c) {
        return absl::ascii_isxdigit(static_cast<unsigned char>(c));
      })) {
    return absl::InvalidArgumentError(absl::StrCat("\"", absl::CHexEscape(text), "\" is not a hex serial number"));
  }
  if (serial.size() % 2 == 1) serial.insert(0, "0");
  size_t zeros = 0;
  while (zeros + 2 < serial.size() && serial.compare(zeros, 2, "00") == 0) zeros += 2;
  return serial.substr(zeros);
}

nlohmann::json RevocationJson(const RevocationRecord& r) {
  return {
      {"reason", RevocationReasonName(r.reason)}, {"revoked_at", Rfc3339(r.revoked_at)}, {"revoked_by", r.revoked_by}};
}

// `certs list --revoked`: the revocations of unexpired certificates (what the CRL lists).
void PrintRevocations(const std::map<std::string, RevocationRecord>& revoked, bool json) {
  if (!json && revoked.empty()) {
    std::cerr << "no revoked certificates (unexpired ones; an expired certificate leaves the list)" << std::endl;
    return;
  }
  if (!json) {
    std::cout << absl::StrFormat("%-34s %-20s %-27s %-20s %-20s %s\n", "SERIAL", "NOT AFTER", "REVOKED", "REASON", "BY",
                                 "SPIFFE ID");
  }
  for (const auto& [serial, r] : revoked) {
    if (json) {
      nlohmann::json j = {{"serial", serial},
                          {"spiffe_id", r.spiffe_id},
                          {"not_after", Rfc3339(r.not_after)},
                          {"issuer_serial", r.issuer_serial_hex},
                          {"revoked", true},
                          {"revocation", RevocationJson(r)}};
      std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    } else {
      std::cout << absl::StrFormat("%-34s %-20s %-27s %-20s %-20s %s\n", serial, Rfc3339(r.not_after),
                                   Rfc3339(r.revoked_at), RevocationReasonName(r.reason), r.revoked_by, r.spiffe_id);
    }
  }
  std::cout.flush();
}

// What a revoking command did, one line per certificate; the new CRL number last.
void PrintRevocationOutcome(const RevocationOutcome& outcome) {
  for (const std::string& serial : outcome.revoked) std::cout << "revoked " << serial << "\n";
  for (const RevocationRecord& r : outcome.already_revoked) {
    std::cout << r.serial_hex << ": already revoked " << Rfc3339(r.revoked_at) << " by " << r.revoked_by << " ("
              << RevocationReasonName(r.reason) << "), unchanged\n";
  }
  for (const std::string& serial : outcome.expired) {
    std::cout << serial << ": expired already, not revoked (an expired certificate is refused anyway)\n";
  }
  std::cout << "CRL number " << outcome.crl_number << (outcome.revoked.empty() ? " (unchanged)" : "") << std::endl;
}

// ---- certs revoke ----

struct CertsRevokeFlags {
  std::vector<std::string> serials;
  std::string reason = "unspecified";
};

void RunCertsRevoke(const StoreFlags& sf, const CertsRevokeFlags& f, CommandContext& ctx) {
  RevocationRequest request;
  auto reason = ParseRevocationReason(f.reason);
  if (!reason.ok()) return Fail(ctx, "--reason", reason.status());
  request.reason = *reason;
  request.revoked_by = OperatorName();
  request.at = SystemClock::Instance().Now();
  std::vector<std::string> serials;
  for (const std::string& text : f.serials) {
    auto serial = NormalizeSerial(text);
    if (!serial.ok()) return Fail(ctx, "certs revoke", serial.status());
    serials.push_back(*serial);
  }
  // A store that does not exist has issued nothing: nothing to create.
  auto store = OpenFromFlags(sf, /*writes=*/false);
  if (!store.ok()) return Fail(ctx, StoreFlag(sf), store.status());
  auto outcome = (*store)->Revoke(serials, request);
  if (!outcome.ok()) return Fail(ctx, "certs revoke", outcome.status());
  PrintRevocationOutcome(*outcome);
}

// ---- certs crl ----

struct CertsCrlFlags {
  std::string cacerts_dir;
  daemons::CaTokenKeyConfig ca_key;
  std::string out;
  bool der = false;
  std::string validity = "24h";
};

void RunCertsCrl(const StoreFlags& sf, const CertsCrlFlags& f, CommandContext& ctx) {
  auto validity = ParseDuration(f.validity);
  if (!validity.ok()) return Fail(ctx, "--validity", validity.status());
  if (*validity <= absl::ZeroDuration()) {
    return Fail(ctx, "--validity", absl::InvalidArgumentError("must be positive"));
  }
  std::vector<std::string> problems;
  f.ca_key.Validate(problems);
  if (!problems.empty()) return Fail(ctx, "certs crl", absl::InvalidArgumentError(absl::StrJoin(problems, "; ")));
  const Clock& clock = SystemClock::Instance();
  CaTokenKey token_key;
  if (!f.ca_key.uri.empty()) {
    auto opened = daemons::OpenCaTokenKey(f.ca_key, clock);
    if (!opened.ok()) return Fail(ctx, "certs crl", opened.status());
    token_key = *std::move(opened);
  }
  std::shared_ptr<const SigningAuthority> authority;
  if (f.cacerts_dir.empty()) {
    // Never create a CA here: a CRL signed by a new key would be worthless.
    const std::string must_exist = sf.data_dir + (token_key == nullptr ? "/ca-key.pem" : "/ca-cert.pem");
    if (!std::filesystem::exists(must_exist)) {
      return Fail(ctx, "--data-dir",
                  absl::NotFoundError(absl::StrCat(
                      "no CA ", token_key == nullptr ? "key" : "certificate", " at ", must_exist,
                      " (start `meshid server --data-dir` there once, or give the plug-in CA's --cacerts-dir)")));
    }
    OpenSslRandom random;
    SelfSignedOptions options;
    options.data_dir = sf.data_dir;
    options.token_key = token_key;
    auto loaded = LoadOrCreateSelfSignedAuthority(options, clock, random);
    if (!loaded.ok()) return Fail(ctx, "--data-dir", loaded.status());
    authority = *std::move(loaded);
  } else {
    auto files = ReadPluggedInFiles(f.cacerts_dir, token_key != nullptr);
    auto loaded = files.ok() ? ParsePluggedInAuthority(*files, clock, token_key)
                             : absl::StatusOr<std::shared_ptr<const SigningAuthority>>(files.status());
    if (!loaded.ok()) return Fail(ctx, "--cacerts-dir", loaded.status());
    authority = *std::move(loaded);
  }
  auto store = OpenFromFlags(sf, /*writes=*/false);
  if (!store.ok()) return Fail(ctx, StoreFlag(sf), store.status());
  auto der = BuildCurrentCrl(*authority, **store, clock.Now(), *validity);
  if (!der.ok()) return Fail(ctx, "certs crl", der.status());
  const std::string encoded = f.der ? *der : CrlDerToPem(*der);
  if (f.out.empty()) {
    std::cout << encoded << std::flush;
    return;
  }
  if (auto s = WriteFileAtomic(f.out, encoded, 0644); !s.ok()) return Fail(ctx, "--out", s);
  std::cerr << "wrote the CRL of " << SerialHex(authority->cert.get()) << " to " << f.out << std::endl;
}

// ---- certs list ----

struct CertsListFlags {
  std::string spiffe_id;
  std::string serial;
  bool expired = false;
  bool revoked = false;
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
    auto serial = NormalizeSerial(f.serial);
    if (!serial.ok()) return Fail(ctx, "--serial", serial.status());
    query.serial_hex = *serial;
  }
  auto store = OpenFromFlags(sf, /*writes=*/false);
  if (!store.ok()) return Fail(ctx, StoreFlag(sf), store.status());
  auto revocations = (*store)->ListRevocations(query.now);
  if (!revocations.ok()) return Fail(ctx, "certs list", revocations.status());
  std::map<std::string, RevocationRecord> revoked;
  for (RevocationRecord& r : revocations->revocations) {
    // --revoked lists from the revocations, so the other filters apply here.
    if (f.revoked && ((query.spiffe_id && r.spiffe_id != *query.spiffe_id) ||
                      (query.serial_hex && r.serial_hex != *query.serial_hex))) {
      continue;
    }
    revoked.emplace(r.serial_hex, std::move(r));
  }
  if (f.revoked) return PrintRevocations(revoked, f.json);
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
                          {"minted_by", r.minted_by},
                          {"expired", r.not_after <= query.now}};
      if (auto it = revoked.find(r.serial_hex); it != revoked.end()) j["revocation"] = RevocationJson(it->second);
      j["revoked"] = j.contains("revocation");
      std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    }
    std::cout.flush();
    return;
  }
  if (records->empty()) {
    std::cerr << "no certificates match" << std::endl;
    return;
  }
  // MINTED BY: the node agent that asked on the workload's behalf, "-" for the workload itself;
  // as wide as the longest, so that the SPIFFE IDs line up after it.
  int minted_by_width = 9;
  for (const IssuanceRecord& r : *records) minted_by_width = std::max<int>(minted_by_width, r.minted_by.size());
  std::cout << absl::StrFormat("%-34s %-20s %-20s %-11s %-*s %s\n", "SERIAL", "NOT BEFORE", "NOT AFTER", "AUTH",
                               minted_by_width, "MINTED BY", "SPIFFE ID");
  for (const IssuanceRecord& r : *records) {
    std::string state = r.not_after <= query.now ? "  (expired)" : "";
    if (auto it = revoked.find(r.serial_hex); it != revoked.end()) {
      state = absl::StrCat("  (revoked ", Rfc3339(it->second.revoked_at), ": ", RevocationReasonName(it->second.reason),
                           ")");
    }
    std::cout << absl::StrFormat("%-34s %-20s %-20s %-11s %-*s %s%s\n", r.serial_hex, Rfc3339(r.not_before),
                                 Rfc3339(r.not_after), r.auth_method, minted_by_width,
                                 r.minted_by.empty() ? "-" : r.minted_by, r.spiffe_id, state);
  }
  std::cout.flush();
  if (f.limit > 0 && records->size() == f.limit) {
    std::cerr << "(the newest " << f.limit << "; --limit 0 lists all)" << std::endl;
  }
}

// ---- entry ----

struct EntryFlags {
  std::string spiffe_id;
  std::string parent;
  std::vector<std::string> selectors;
  std::vector<std::string> allow;
  std::string max_ttl = "0s";
  std::vector<std::string> dns_names;
  std::string note;
  std::string trust_domain = "cluster.local";  // as `meshid server`'s
  bool json = false;
};

// "for <id>" or "for <id> with parent <parent>": how the commands name an entry.
std::string EntryName(absl::string_view spiffe_id, absl::string_view parent_id) {
  if (parent_id.empty()) return absl::StrCat("for ", spiffe_id);
  return absl::StrCat("for ", spiffe_id, " with parent ", parent_id);
}

// The flag `id` came from must name a SPIFFE ID of the --trust-domain: the server only issues
// for its own trust domain, and a node agent of another one cannot reach it.
absl::Status CheckInTrustDomain(absl::string_view flag, const std::string& id, const std::string& trust_domain) {
  auto parsed = SpiffeId::Parse(id);
  if (!parsed.ok()) return absl::InvalidArgumentError(absl::StrCat(flag, " \"", id, "\": ", parsed.status().message()));
  if (parsed->trust_domain() != trust_domain) {
    return absl::InvalidArgumentError(absl::StrCat(flag, " ", id, " is in trust domain \"", parsed->trust_domain(),
                                                   "\", not in --trust-domain \"", trust_domain,
                                                   "\" (give --trust-domain as `meshid server` has it)"));
  }
  return absl::OkStatus();
}

void RunEntryCreate(const StoreFlags& sf, const EntryFlags& f, CommandContext& ctx) {
  if (auto s = ValidateTrustDomain(f.trust_domain); !s.ok()) return Fail(ctx, "--trust-domain", s);
  RegistryEntry entry;
  entry.spiffe_id = f.spiffe_id;
  entry.parent_id = f.parent;
  if (f.parent.empty()) {
    if (!f.selectors.empty()) {
      return Fail(ctx, "--selector",
                  absl::InvalidArgumentError("only an entry with --parent has selectors (a direct entry is "
                                             "matched by how the workload authenticates: --allow)"));
    }
    entry.allowed_auth = f.allow.empty() ? std::vector<std::string>{"*"} : f.allow;
  } else {
    if (!f.allow.empty()) {
      return Fail(
          ctx, "--allow",
          absl::InvalidArgumentError("an entry with --parent takes no --allow (the node agent "
                                     "authenticates; --selector says which of its workloads get the identity)"));
    }
    if (f.selectors.empty()) {
      return Fail(
          ctx, "--selector",
          absl::InvalidArgumentError("an entry with --parent needs at least one (e.g. --selector unix:uid:1000)"));
    }
    auto selectors = ParseSelectors(f.selectors);
    if (!selectors.ok()) return Fail(ctx, "--selector", selectors.status());
    entry.selectors = *std::move(selectors);
  }
  auto ttl = ParseDuration(f.max_ttl);
  if (!ttl.ok()) return Fail(ctx, "--max-ttl", ttl.status());
  entry.max_ttl = *ttl;
  entry.dns_names = f.dns_names;
  entry.note = f.note;
  entry.created_at = SystemClock::Instance().Now();
  // Check before touching the store, so a typo creates no database.
  if (auto s = ValidateRegistryEntry(entry); !s.ok()) return Fail(ctx, "entry create", s);
  if (auto s = CheckInTrustDomain("--spiffe-id", entry.spiffe_id, f.trust_domain); !s.ok()) {
    return Fail(ctx, "entry create", s);
  }
  if (!entry.parent_id.empty()) {
    if (auto s = CheckInTrustDomain("--parent", entry.parent_id, f.trust_domain); !s.ok()) {
      return Fail(ctx, "entry create", s);
    }
  }
  auto store = OpenFromFlags(sf, /*writes=*/true);
  if (!store.ok()) return Fail(ctx, StoreFlag(sf), store.status());
  if (auto s = (*store)->CreateEntry(entry); !s.ok()) return Fail(ctx, "entry create", s);
  std::cout << "created registry entry " << EntryName(entry.spiffe_id, entry.parent_id) << " ("
            << (entry.parent_id.empty() ? "allow: " + absl::StrJoin(entry.allowed_auth, ", ")
                                        : "selectors: " + absl::StrJoin(entry.selectors, ", "))
            << "; max ttl: "
            << (entry.max_ttl == absl::ZeroDuration() ? "server maximum" : meshid::FormatDuration(entry.max_ttl))
            << "; dns names: " << (entry.dns_names.empty() ? "none" : absl::StrJoin(entry.dns_names, ", ")) << ")"
            << std::endl;
}

// `parent_given`: --parent was on the command line (an empty one lists the direct entries).
void RunEntryList(const StoreFlags& sf, const EntryFlags& f, bool parent_given, CommandContext& ctx) {
  std::optional<std::string> parent;
  if (parent_given) {
    if (!f.parent.empty()) {
      if (auto s = CheckSpiffeIdFlag(f.parent); !s.ok()) return Fail(ctx, "--parent", s);
    }
    parent = f.parent;
  }
  auto store = OpenFromFlags(sf, /*writes=*/false);
  if (!store.ok()) return Fail(ctx, StoreFlag(sf), store.status());
  auto entries = (*store)->ListEntries(parent);
  if (!entries.ok()) return Fail(ctx, "entry list", entries.status());
  for (const RegistryEntry& e : *entries) {
    if (f.json) {
      nlohmann::json j = {{"spiffe_id", e.spiffe_id},
                          {"parent_id", e.parent_id},
                          {"selectors", e.selectors},
                          {"allowed_auth", e.allowed_auth},
                          {"max_ttl", e.max_ttl == absl::ZeroDuration() ? "" : meshid::FormatDuration(e.max_ttl)},
                          {"max_ttl_seconds", absl::ToInt64Seconds(e.max_ttl)},
                          {"dns_names", e.dns_names},
                          {"note", e.note},
                          {"created_at", Rfc3339(e.created_at)}};
      std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    } else {
      std::cout << e.spiffe_id;
      if (e.parent_id.empty()) {
        std::cout << "\n  parent: none (direct)\n  allow: " << absl::StrJoin(e.allowed_auth, ", ");
      } else {
        std::cout << "\n  parent: " << e.parent_id << "\n  selectors: " << absl::StrJoin(e.selectors, ", ");
      }
      std::cout << "\n  max ttl: "
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
  if (!f.parent.empty()) {
    if (auto s = CheckSpiffeIdFlag(f.parent); !s.ok()) return Fail(ctx, "--parent", s);
  }
  auto store = OpenFromFlags(sf, /*writes=*/false);
  if (!store.ok()) return Fail(ctx, StoreFlag(sf), store.status());
  if (auto s = (*store)->DeleteEntry(f.spiffe_id, f.parent); !s.ok()) return Fail(ctx, "entry delete", s);
  std::cout << "deleted registry entry " << EntryName(f.spiffe_id, f.parent) << std::endl;
}

// ---- identity ----

struct IdentityFlags {
  std::string spiffe_id;
  std::string reason;
  std::string revocation_reason = "privilegeWithdrawn";
  bool json = false;
};

void RunBlock(const StoreFlags& sf, const IdentityFlags& f, CommandContext& ctx) {
  if (auto s = CheckSpiffeIdFlag(f.spiffe_id); !s.ok()) return Fail(ctx, "identity block", s);
  RevocationRequest request;
  auto reason = ParseRevocationReason(f.revocation_reason);
  if (!reason.ok()) return Fail(ctx, "--revocation-reason", reason.status());
  request.reason = *reason;
  request.revoked_by = OperatorName();
  request.at = SystemClock::Instance().Now();
  auto store = OpenFromFlags(sf, /*writes=*/true);
  if (!store.ok()) return Fail(ctx, StoreFlag(sf), store.status());
  auto outcome = (*store)->BlockAndRevoke(f.spiffe_id, f.reason, request);
  if (!outcome.ok()) return Fail(ctx, "identity block", outcome.status());
  std::cout << "blocked " << f.spiffe_id << ": it cannot obtain or renew a certificate until unblocked, and its "
            << outcome->revoked.size() << " unexpired certificate(s) not revoked before are revoked now"
            << " (unblocking does not un-revoke them)" << std::endl;
  PrintRevocationOutcome(*outcome);
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
  list->add_flag("--revoked", lf->revoked, "Only revoked certificates (unexpired ones: what the CRL lists)");
  list->add_flag("--json", lf->json, "One JSON object per line");
  list->add_option("--limit", lf->limit, "At most this many (0: all)")->capture_default_str();
  list->callback([sf, lf, &ctx] { RunCertsList(*sf, *lf, ctx); });
  auto rf = std::make_shared<CertsRevokeFlags>();
  CLI::App* revoke = certs->add_subcommand(
      "revoke", "Revoke certificates of the ledger: the CRL lists them until they expire (permanent, idempotent)");
  AddStoreFlags(revoke, sf);
  revoke->add_option("serial", rf->serials, "Serial numbers (hex; openssl's forms accepted)")->required();
  revoke
      ->add_option("--reason", rf->reason,
                   "RFC 5280 reason: unspecified, keyCompromise, cACompromise, affiliationChanged, superseded, "
                   "cessationOfOperation, privilegeWithdrawn")
      ->capture_default_str();
  revoke->callback([sf, rf, &ctx] { RunCertsRevoke(*sf, *rf, ctx); });
  auto cf = std::make_shared<CertsCrlFlags>();
  CLI::App* crl = certs->add_subcommand(
      "crl", "Print the CA's current CRL (X.509 v2, signed by the CA key, the revoked unexpired certificates)");
  AddStoreFlags(crl, sf);
  crl->add_option("--cacerts-dir", cf->cacerts_dir, "The plug-in CA directory, as `meshid server --cacerts-dir`");
  crl->add_option("--out", cf->out, "Write it to this file instead of standard output");
  crl->add_flag("--der", cf->der, "DER instead of PEM");
  crl->add_option("--validity", cf->validity, "nextUpdate after now")->capture_default_str();
  AddCaKeyFlags(crl, cf->ca_key);
  crl->callback([sf, cf, &ctx] {
    ReadPinFromEnvironment(cf->ca_key);
    RunCertsCrl(*sf, *cf, ctx);
  });

  CLI::App* entry = app.add_subcommand("entry", "The identity registry (see `meshid server --require-registration`)");
  entry->require_subcommand(1);
  auto ef = std::make_shared<EntryFlags>();
  CLI::App* create = entry->add_subcommand("create", "Register an identity");
  AddStoreFlags(create, sf);
  create->add_option("--spiffe-id", ef->spiffe_id, "SPIFFE ID, spiffe://<trust-domain>/ns/<ns>/sa/<sa>")->required();
  create->add_option("--parent", ef->parent,
                     "SPIFFE ID of the node agent that may mint it for the workloads of its node matching every "
                     "--selector (without: the workload asks itself, as --allow says)");
  create->add_option("--selector", ef->selectors,
                     "With --parent: unix:uid:<N>, unix:user:<name>, unix:gid:<N>, unix:group:<name>, "
                     "unix:path:<absolute path>, unix:sha256:<hex> (repeatable; all must match)");
  create->add_option("--allow", ef->allow,
                     "Without --parent, who may obtain it: *, jwt-sub:<subject>, jwt-iss:<issuer>, client-cert "
                     "(repeatable; default *)");
  create->add_option("--max-ttl", ef->max_ttl, "Longest certificate lifetime for it (0s: the server's maximum)")
      ->capture_default_str();
  create->add_option("--dns-name", ef->dns_names, "DNS SAN to add to its certificates (repeatable)");
  create->add_option("--note", ef->note, "Free text for administrators");
  create
      ->add_option(
          "--trust-domain", ef->trust_domain,
          "The server's trust domain (as `meshid server --trust-domain`): --spiffe-id and --parent must be in it")
      ->envname("TRUST_DOMAIN")
      ->capture_default_str();
  create->callback([sf, ef, &ctx] { RunEntryCreate(*sf, *ef, ctx); });
  CLI::App* elist = entry->add_subcommand("list", "List registered identities");
  AddStoreFlags(elist, sf);
  CLI::Option* list_parent =
      elist->add_option("--parent", ef->parent, "Only the entries of this node agent ('' : only the direct entries)");
  elist->add_flag("--json", ef->json, "One JSON object per line");
  elist->callback([sf, ef, list_parent, &ctx] { RunEntryList(*sf, *ef, list_parent->count() > 0, ctx); });
  CLI::App* remove = entry->add_subcommand("delete", "Remove a registered identity");
  AddStoreFlags(remove, sf);
  remove->add_option("--spiffe-id", ef->spiffe_id, "SPIFFE ID of the entry")->required();
  remove->add_option("--parent", ef->parent, "The entry's node agent (without: the direct entry)");
  remove->callback([sf, ef, &ctx] { RunEntryDelete(*sf, *ef, ctx); });

  CLI::App* identity = app.add_subcommand("identity", "The deny list");
  identity->require_subcommand(1);
  auto idf = std::make_shared<IdentityFlags>();
  CLI::App* block = identity->add_subcommand(
      "block", "Refuse certificates (new and renewals) for an identity and revoke its unexpired ones");
  AddStoreFlags(block, sf);
  block->add_option("spiffe-id", idf->spiffe_id, "SPIFFE ID to block")->required();
  block->add_option("--reason", idf->reason, "Why (shown by list-blocked)");
  block
      ->add_option("--revocation-reason", idf->revocation_reason,
                   "CRL reason for the certificates it revokes (as `certs revoke --reason`)")
      ->capture_default_str();
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
