// `meshid ca rotate prepare|publish|activate|retire|status`: the operator's side of a staged CA
// rotation. Each command reads the store's one rotation record (store/ca_rotation_store.h),
// decides one step (ca/rotation_plan.h), writes it with a compare-and-swap on the record it
// read, and says what changed and what comes next. Servers follow the record
// (ca/rotation_follower.h); agents report the roots they hold, which `status` and `activate`
// read. Works offline on the store of a data directory (--data-dir) or a --datastore URL.
#include <pwd.h>
#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "ca/rotation_material.h"
#include "ca/rotation_plan.h"
#include "cli/ca_key_flags.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "common/clock.h"
#include "common/duration.h"
#include "common/files.h"
#include "common/keys.h"
#include "common/logging.h"
#include "common/random.h"
#include "common/x509.h"
#include "sql/store.h"

namespace meshid::cli {
namespace {

struct RotateStoreFlags {
  std::string data_dir = "./var/lib/meshid";
  std::string datastore;
};

struct PrepareFlags {
  std::string kind;
  std::string key;
  std::string root_cert;
  std::string root_key;
  std::string trust_domain = "cluster.local";
  std::string key_algorithm = "ecdsa-p256";
  std::string lifetime;
  daemons::CaTokenKeyConfig token;  // module, PIN file and PIN for a pkcs11: --key or --root-key
};

void AddStoreFlags(CLI::App* cmd, const std::shared_ptr<RotateStoreFlags>& f) {
  cmd->add_option("--data-dir", f->data_dir, "Data directory of the server (its store is <data-dir>/meshid.db)")
      ->capture_default_str();
  cmd->add_option("--datastore", f->datastore,
                  "Store URL instead: sqlite://<path> or postgresql://user[:password]@host:port/database");
}

const char* StoreFlag(const RotateStoreFlags& f) { return f.datastore.empty() ? "--data-dir" : "--datastore"; }

// The servers made the store; these commands never create one.
absl::StatusOr<std::unique_ptr<Store>> OpenFromFlags(const RotateStoreFlags& f) {
  StoreOptions options;
  options.create_if_missing = false;
  options.max_connections = 2;
  return OpenStore(StoreUrlFromFlags(f.data_dir, f.datastore), options, SystemClock::Instance(), MakeNullLogger());
}

// The operator's user name, recorded as the record's actor.
std::string Actor() {
  if (const passwd* pw = ::getpwuid(::geteuid()); pw != nullptr && pw->pw_name != nullptr) return pw->pw_name;
  return absl::StrCat("uid ", ::geteuid());
}

// Whole microseconds, as the store keeps times, so that the record read back equals the one written.
absl::Time Now() { return absl::FromUnixMicros(absl::ToUnixMicros(SystemClock::Instance().Now())); }

std::string Rfc3339(absl::Time t) {
  if (t == absl::InfinitePast()) return "-";
  return absl::FormatTime("%Y-%m-%d%ET%H:%M:%SZ", t, absl::UTCTimeZone());
}

std::optional<CaRotationKey> KeyOf(const std::optional<CaRotationRecord>& record) {
  if (!record.has_value()) return std::nullopt;
  return CaRotationKey{record->rotation, record->phase};
}

// The same step: what the servers follow is equal (who and when aside).
bool SameStep(const CaRotationRecord& a, const CaRotationRecord& b) {
  return a.rotation == b.rotation && a.phase == b.phase && a.kind == b.kind && a.to == b.to && a.from == b.from;
}

// Writes `planned` over `stored` (compare-and-swap). True when `planned` (or the same step by
// someone else meanwhile) is in force; else reports what the record is now.
bool WriteStep(CaRotationStore& store, const std::optional<CaRotationRecord>& stored, const CaRotationRecord& planned,
               CommandContext& ctx) {
  auto written = store.ReplaceCaRotation(KeyOf(stored), planned);
  if (!written.ok()) {
    Fail(ctx, "ca rotate", written.status());
    return false;
  }
  if (*written == planned) return true;
  if (SameStep(*written, planned)) {
    std::cout << "rotation " << written->rotation << " was " << CaRotationPhaseName(written->phase) << " by "
              << written->actor << " at " << Rfc3339(PhaseReachedAt(*written)) << " meanwhile: nothing more to do\n";
    return true;
  }
  Fail(ctx, "ca rotate",
       absl::AbortedError(absl::StrCat("another operator (", written->actor, ") moved rotation ", written->rotation,
                                       " to ", CaRotationPhaseName(written->phase), " at ",
                                       Rfc3339(PhaseReachedAt(*written)),
                                       " meanwhile; nothing was changed: run `meshid ca rotate status`")));
  return false;
}

// Reads the record, failing the command when the store cannot be read.
bool ReadRecord(CaRotationStore& store, std::optional<CaRotationRecord>& out, CommandContext& ctx) {
  auto stored = store.GetCaRotation();
  if (!stored.ok()) {
    Fail(ctx, "ca rotate", stored.status());
    return false;
  }
  out = *std::move(stored);
  return true;
}

std::string SigningSummary(const StoredCaMaterial& material) {
  auto summary = SummarizeSigningCert(material);
  if (!summary.ok()) return std::string(summary.status().message());
  return absl::StrCat("serial ", summary->serial_hex, ", expires ", Rfc3339(summary->not_after));
}

// ---- prepare ----

// Opens a token key with the --pkcs11-module / --pkcs11-pin-file / MESHID_PKCS11_PIN given.
OpenTokenKey TokenOpener(const daemons::CaTokenKeyConfig& config) {
  return [config](const std::string& uri) -> absl::StatusOr<CaTokenKey> {
    daemons::CaTokenKeyConfig with_uri = config;
    with_uri.uri = uri;
    with_uri.sessions = 1;
    auto key = daemons::OpenCaTokenKey(with_uri, SystemClock::Instance());
    if (key.ok()) return CaTokenKey(*std::move(key));
    // OpenCaTokenKey names --ca-key; the caller names the flag this URI came from.
    absl::string_view message = key.status().message();
    absl::ConsumePrefix(&message, "--ca-key: ");
    return absl::Status(key.status().code(), message);
  };
}

// The root an intermediate is signed by: the flags, else the CA in force if it is a root (the
// previous rotation's, or a self-signed root in --data-dir for the first).
absl::Status ChooseRoot(const PrepareFlags& f, const RotateStoreFlags& sf, const CaRotationRecord& planned,
                        NewCaMaterialOptions& options) {
  if (!f.root_cert.empty()) {
    auto pem = ReadFile(f.root_cert, 1 << 20);
    if (!pem.ok()) return absl::Status(pem.status().code(), absl::StrCat("--root-cert: ", pem.status().message()));
    options.root_cert_pem = *std::move(pem);
  }
  options.root_key_ref = f.root_key;
  if (!options.root_cert_pem.empty() && !options.root_key_ref.empty()) return absl::OkStatus();
  const StoredCaMaterial& from = planned.from;
  if (!from.empty()) {
    auto cert = CertFromPem(from.ca_cert_pem);
    const bool from_is_root = cert.ok() && IsSelfSigned(cert->get());
    if (options.root_cert_pem.empty()) options.root_cert_pem = from_is_root ? from.ca_cert_pem : from.root_cert_pem;
    if (options.root_key_ref.empty()) {
      if (!from_is_root) {
        return absl::InvalidArgumentError(
            absl::StrCat("--root-key: required: the CA in force (rotation ", planned.rotation - 1,
                         "'s) is an intermediate, whose root's key the store does not know"));
      }
      options.root_key_ref = from.key_ref;
    }
    return absl::OkStatus();
  }
  // The first rotation: each server's own files; a self-signed root in the data directory.
  const std::string cert_file = (std::filesystem::path(sf.data_dir) / "ca-cert.pem").string();
  const std::string key_file = (std::filesystem::path(sf.data_dir) / "ca-key.pem").string();
  if (options.root_cert_pem.empty()) {
    auto pem = ReadFile(cert_file, 1 << 20);
    if (!pem.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--root-cert, --root-key: required for the first rotation on this store unless --data-dir holds the "
          "servers' self-signed root (",
          pem.status().message(), ")"));
    }
    options.root_cert_pem = *std::move(pem);
  }
  if (options.root_key_ref.empty()) {
    if (!std::filesystem::exists(key_file)) {
      return absl::InvalidArgumentError(absl::StrCat("--root-key: required (", key_file,
                                                     " does not exist; a key in a token: --root-key pkcs11:...)"));
    }
    options.root_key_ref = key_file;
  }
  return absl::OkStatus();
}

void RunPrepare(const RotateStoreFlags& sf, const PrepareFlags& f, CommandContext& ctx) {
  NewCaMaterialOptions options;
  options.kind = f.kind;
  options.trust_domain = f.trust_domain;
  options.key_ref = CanonicalKeyRef(f.key);
  auto algorithm = ParseKeyAlgorithm(f.key_algorithm);
  if (!algorithm.ok()) return Fail(ctx, "--key-algorithm", algorithm.status());
  options.key_algorithm = *algorithm;
  if (!f.lifetime.empty()) {
    auto lifetime = ParseDuration(f.lifetime);
    if (!lifetime.ok()) return Fail(ctx, "--lifetime", lifetime.status());
    if (*lifetime <= absl::ZeroDuration()) {
      return Fail(ctx, "--lifetime", absl::InvalidArgumentError("must be positive"));
    }
    options.lifetime = *lifetime;
  }
  if (f.kind == kCaRotationRoot && (!f.root_cert.empty() || !f.root_key.empty())) {
    return Fail(ctx, "--root-cert, --root-key", absl::InvalidArgumentError("only with --kind intermediate"));
  }
  auto store = OpenFromFlags(sf);
  if (!store.ok()) return Fail(ctx, StoreFlag(sf), store.status());
  std::optional<CaRotationRecord> stored;
  if (!ReadRecord(**store, stored, ctx)) return;
  const absl::Time now = Now();
  auto step = PlanPrepare(stored, options.kind, options.key_ref, now, Actor());
  if (!step.ok()) return Fail(ctx, "ca rotate prepare", step.status());
  if (step->already) {
    std::cout << "rotation " << step->record.rotation << " is already prepared (" << step->record.kind << ", key "
              << step->record.to.key_ref << ", new signing CA " << SigningSummary(step->record.to)
              << "): next, `meshid ca rotate publish`\n";
    return;
  }
  if (options.kind == kCaRotationIntermediate) {
    if (auto s = ChooseRoot(f, sf, step->record, options); !s.ok()) return Fail(ctx, "ca rotate prepare", s);
  }
  OpenSslRandom random;
  auto material = MakeRotationMaterial(options, TokenOpener(f.token), SystemClock::Instance(), random);
  if (!material.ok()) return Fail(ctx, "ca rotate prepare", material.status());
  step->record.to = *std::move(material);
  if (!WriteStep(**store, stored, step->record, ctx)) return;
  std::cout << "rotation " << step->record.rotation << " prepared: a new " << step->record.kind << " CA ("
            << SigningSummary(step->record.to) << ", key " << step->record.to.key_ref
            << "); nothing has changed for servers or agents yet. Every server must be able to read the key"
            << (IsTokenKeyRef(step->record.to.key_ref) ? " (its --pkcs11-module reaches the token)" : "")
            << "; next, `meshid ca rotate publish`\n";
}

// ---- publish ----

void RunPublish(const RotateStoreFlags& sf, CommandContext& ctx) {
  auto store = OpenFromFlags(sf);
  if (!store.ok()) return Fail(ctx, StoreFlag(sf), store.status());
  std::optional<CaRotationRecord> stored;
  if (!ReadRecord(**store, stored, ctx)) return;
  auto step = PlanPublish(stored, Now(), Actor());
  if (!step.ok()) return Fail(ctx, "ca rotate publish", step.status());
  if (step->already) {
    std::cout << "rotation " << step->record.rotation << " is already " << CaRotationPhaseName(step->record.phase)
              << " (published " << Rfc3339(step->record.published_at) << "): nothing to do; `meshid ca rotate "
              << "status` says what comes next\n";
    return;
  }
  if (!WriteStep(**store, stored, step->record, ctx)) return;
  std::cout << "rotation " << step->record.rotation
            << " published: servers now send old + new roots; run `meshid ca rotate status` until every agent and "
               "proxy holds the new root, then `meshid ca rotate activate`\n";
}

// ---- activate ----

std::string RowLabel(const AdoptionRow& row) {
  return row.proxy_id.empty() ? absl::StrCat("agent ", row.agent_id)
                              : absl::StrCat("proxy ", row.proxy_id, " of agent ", row.agent_id);
}

void RunActivate(const RotateStoreFlags& sf, bool force, CommandContext& ctx) {
  auto store = OpenFromFlags(sf);
  if (!store.ok()) return Fail(ctx, StoreFlag(sf), store.status());
  std::optional<CaRotationRecord> stored;
  if (!ReadRecord(**store, stored, ctx)) return;
  std::vector<AdoptionRow> adoption;
  if (stored.has_value() && stored->phase == CaRotationPhase::kPublished) {
    auto rows = (*store)->ListPolicyStatus();
    if (!rows.ok()) return Fail(ctx, "ca rotate activate", rows.status());
    adoption = RotationAdoption(*stored, *rows);
  }
  auto step = PlanActivate(stored, adoption, force, Now(), Actor());
  if (!step.ok()) return Fail(ctx, "ca rotate activate", step.status());
  if (step->already) {
    std::cout << "rotation " << step->record.rotation << " is already " << CaRotationPhaseName(step->record.phase)
              << " (activated " << Rfc3339(step->record.activated_at) << "): nothing to do\n";
    return;
  }
  if (!WriteStep(**store, stored, step->record, ctx)) return;
  if (step->record.forced) {
    std::cout << "--force: these do not hold the new root and will refuse certificates from the new CA until they "
                 "get it:\n";
    for (const AdoptionRow& row : adoption) {
      if (row.counts && !row.can_validate_new_ca) std::cout << "  " << RowLabel(row) << ": " << row.why << "\n";
    }
  }
  std::cout << "rotation " << step->record.rotation << " active" << (step->record.forced ? " (forced)" : "")
            << ": servers now sign with the new CA (" << SigningSummary(step->record.to)
            << "); the old roots are still trusted. Run `meshid ca rotate retire` once the certificates signed "
               "before have expired or been renewed\n";
}

// ---- retire ----

void RunRetire(const RotateStoreFlags& sf, CommandContext& ctx) {
  auto store = OpenFromFlags(sf);
  if (!store.ok()) return Fail(ctx, StoreFlag(sf), store.status());
  std::optional<CaRotationRecord> stored;
  if (!ReadRecord(**store, stored, ctx)) return;
  const absl::Time now = Now();
  int64_t still_valid = 0;
  if (stored.has_value() && stored->phase == CaRotationPhase::kActive && RetireWaitsForEarlierCertificates(*stored)) {
    auto summary = SummarizeSigningCert(stored->to);
    if (!summary.ok()) return Fail(ctx, "ca rotate retire", summary.status());
    auto count = (*store)->CountUnexpiredIssuedByOthers(summary->serial_hex, now);
    if (!count.ok()) return Fail(ctx, "ca rotate retire", count.status());
    still_valid = *count;
  }
  auto step = PlanRetire(stored, still_valid, now, Actor());
  if (!step.ok()) return Fail(ctx, "ca rotate retire", step.status());
  if (step->already) {
    std::cout << "rotation " << step->record.rotation << " is already retired (" << Rfc3339(step->record.retired_at)
              << "): nothing to do; `meshid ca rotate prepare` starts the next\n";
    return;
  }
  if (!WriteStep(**store, stored, step->record, ctx)) return;
  std::cout << "rotation " << step->record.rotation
            << " retired: servers now send only the new roots; the rotation is complete\n";
}

// ---- status ----

std::string NextStep(const CaRotationRecord& record, const std::vector<AdoptionRow>& adoption) {
  switch (record.phase) {
    case CaRotationPhase::kPrepared:
      return "run `meshid ca rotate publish`";
    case CaRotationPhase::kPublished: {
      if (AdoptionComplete(adoption))
        return "every agent and proxy holds the new root: run `meshid ca rotate activate`";
      const auto behind = std::count_if(adoption.begin(), adoption.end(),
                                        [](const AdoptionRow& row) { return row.counts && !row.can_validate_new_ca; });
      return absl::StrCat("waiting for ", behind, behind == 1 ? " agent or proxy" : " agents and proxies",
                          " to hold the new root, then `meshid ca rotate activate` (or `activate --force`)");
    }
    case CaRotationPhase::kActive:
      return "run `meshid ca rotate retire` once the certificates signed before activation have expired or been "
             "renewed";
    case CaRotationPhase::kRetired:
      return "complete; `meshid ca rotate prepare` starts the next";
  }
  return "";
}

nlohmann::json MaterialJson(const StoredCaMaterial& material) {
  if (material.empty()) return nullptr;
  nlohmann::json out = {{"key_ref", material.key_ref}};
  if (auto summary = SummarizeSigningCert(material); summary.ok()) {
    out["serial"] = summary->serial_hex;
    out["not_after"] = Rfc3339(summary->not_after);
  }
  if (auto roots = RootFingerprintsOfPem(material.root_cert_pem); roots.ok()) out["roots"] = *roots;
  return out;
}

void RunStatus(const RotateStoreFlags& sf, bool json, CommandContext& ctx) {
  auto store = OpenFromFlags(sf);
  if (!store.ok()) return Fail(ctx, StoreFlag(sf), store.status());
  std::optional<CaRotationRecord> stored;
  if (!ReadRecord(**store, stored, ctx)) return;
  if (!stored.has_value()) {
    if (json) {
      std::cout << nlohmann::json{{"rotation", nullptr}}.dump() << std::endl;
    } else {
      std::cout << "no CA rotation on this store (`meshid ca rotate prepare` starts one)" << std::endl;
    }
    return;
  }
  const CaRotationRecord& r = *stored;
  auto rows = (*store)->ListPolicyStatus();
  if (!rows.ok()) return Fail(ctx, "ca rotate status", rows.status());
  const std::vector<AdoptionRow> adoption = RotationAdoption(r, *rows);

  if (json) {
    nlohmann::json out = {{"rotation", r.rotation},
                          {"phase", CaRotationPhaseName(r.phase)},
                          {"kind", r.kind},
                          {"actor", r.actor},
                          {"forced", r.forced},
                          {"prepared_at", Rfc3339(r.prepared_at)},
                          {"published_at", Rfc3339(r.published_at)},
                          {"activated_at", Rfc3339(r.activated_at)},
                          {"retired_at", Rfc3339(r.retired_at)},
                          {"from", MaterialJson(r.from)},
                          {"to", MaterialJson(r.to)},
                          {"adoption_complete", AdoptionComplete(adoption)},
                          {"next", NextStep(r, adoption)},
                          {"adoption", nlohmann::json::array()}};
    for (const AdoptionRow& row : adoption) {
      out["adoption"].push_back({{"agent_id", row.agent_id},
                                 {"proxy_id", row.proxy_id},
                                 {"holds_new_root", row.can_validate_new_ca},
                                 {"holds_old_roots", row.holds_old_roots},
                                 {"counts", row.counts},
                                 {"why", row.why}});
    }
    std::cout << out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
    return;
  }

  std::cout << "rotation " << r.rotation << " (" << r.kind << "): " << CaRotationPhaseName(r.phase) << " since "
            << Rfc3339(PhaseReachedAt(r)) << " (by " << r.actor << ")" << (r.forced ? ", activated with --force" : "")
            << "\n"
            << "  prepared " << Rfc3339(r.prepared_at) << ", published " << Rfc3339(r.published_at) << ", activated "
            << Rfc3339(r.activated_at) << ", retired " << Rfc3339(r.retired_at) << "\n"
            << "  new signing CA: " << SigningSummary(r.to) << ", key " << r.to.key_ref << "\n";
  if (auto roots = RootFingerprintsOfPem(r.to.root_cert_pem); roots.ok()) {
    std::cout << "  new roots: " << *roots << "\n";
  }
  std::cout << "  before: " << (r.from.empty() ? "each server's own CA files" : SigningSummary(r.from)) << "\n"
            << "next: " << NextStep(r, adoption) << "\n";
  if (adoption.empty()) {
    std::cout << "no agent has reported yet\n";
    std::cout.flush();
    return;
  }
  std::cout << "\n" << absl::StrFormat("%-20s %-24s %-14s %s\n", "AGENT", "PROXY", "HOLDS NEW ROOT", "WHY");
  for (const AdoptionRow& row : adoption) {
    const std::string line =
        absl::StrFormat("%-20s %-24s %-14s %s", row.agent_id, row.proxy_id.empty() ? "(agent)" : row.proxy_id,
                        row.can_validate_new_ca ? "yes" : "no", row.why);
    std::cout << absl::StripTrailingAsciiWhitespace(line) << "\n";
  }
  std::cout.flush();
}

}  // namespace

void RegisterCaCommands(CLI::App& app, CommandContext& ctx) {
  CLI::App* ca = app.add_subcommand("ca", "The certificate authority's own material");
  ca->require_subcommand(1);
  CLI::App* rotate = ca->add_subcommand(
      "rotate",
      "A staged CA rotation that every server on the store follows: prepare, publish (trust old + new roots), "
      "activate (sign with the new CA), retire (trust only the new roots)");
  rotate->require_subcommand(1);
  auto sf = std::make_shared<RotateStoreFlags>();

  auto pf = std::make_shared<PrepareFlags>();
  CLI::App* prepare = rotate->add_subcommand(
      "prepare", "Make the new CA and record it (nothing changes for servers or agents until `publish`)");
  AddStoreFlags(prepare, sf);
  prepare->add_option("--kind", pf->kind, "root (a new self-signed root) or intermediate (a new CA under a root)")
      ->required()
      ->check(CLI::IsMember({std::string(kCaRotationRoot), std::string(kCaRotationIntermediate)}));
  prepare
      ->add_option("--key", pf->key,
                   "The new CA's private key: a PEM file every server can read (generated, mode 0600, if it does not "
                   "exist; its directory must), or a key in a PKCS#11 token as pkcs11:token=...;object=...")
      ->required();
  prepare->add_option("--root-cert", pf->root_cert,
                      "Intermediate: the root that signs it (default: the CA in force when it is a root, or "
                      "<data-dir>/ca-cert.pem for the first rotation)");
  prepare->add_option("--root-key", pf->root_key,
                      "Intermediate: that root's key, a PEM file or pkcs11: URI (default as --root-cert)");
  prepare->add_option("--trust-domain", pf->trust_domain, "The trust domain, as `meshid server --trust-domain`")
      ->capture_default_str();
  prepare
      ->add_option("--key-algorithm", pf->key_algorithm,
                   "Type of a generated key: ecdsa-p256, ecdsa-p384, rsa-2048 (Istio's), rsa-3072, rsa-4096")
      ->capture_default_str();
  prepare->add_option("--lifetime", pf->lifetime,
                      "The new CA's lifetime, e.g. 87600h (default: 10 years for a root, 1 year for an intermediate, "
                      "which never outlives its root)");
  prepare->add_option("--pkcs11-module", pf->token.module,
                      "With a pkcs11: --key or --root-key: the token's PKCS#11 module; or module-path in the URI");
  prepare->add_option("--pkcs11-pin-file", pf->token.pin_file,
                      "A file holding the token's user PIN (or MESHID_PKCS11_PIN, or the URI's pin-source)");
  prepare->callback([sf, pf, &ctx] {
    ReadPinFromEnvironment(pf->token);
    RunPrepare(*sf, *pf, ctx);
  });

  CLI::App* publish = rotate->add_subcommand(
      "publish", "Servers send the old and the new roots; agents and proxies receive and report them");
  AddStoreFlags(publish, sf);
  publish->callback([sf, &ctx] { RunPublish(*sf, ctx); });

  auto force = std::make_shared<bool>(false);
  CLI::App* activate =
      rotate->add_subcommand("activate", "Servers sign with the new CA (once every agent and proxy holds its root)");
  AddStoreFlags(activate, sf);
  activate->add_flag("--force", *force,
                     "Activate although some agent or proxy does not hold the new root yet (they will refuse "
                     "certificates from the new CA until they get it)");
  activate->callback([sf, force, &ctx] { RunActivate(*sf, *force, ctx); });

  CLI::App* retire = rotate->add_subcommand(
      "retire", "The old roots leave the trust bundle (once no certificate signed before activation is valid)");
  AddStoreFlags(retire, sf);
  retire->callback([sf, &ctx] { RunRetire(*sf, ctx); });

  auto json = std::make_shared<bool>(false);
  CLI::App* status =
      rotate->add_subcommand("status", "The rotation record, and which agent and proxy holds the new root");
  AddStoreFlags(status, sf);
  status->add_flag("--json", *json, "One JSON object: the record, the next step and every agent and proxy");
  status->callback([sf, json, &ctx] { RunStatus(*sf, *json, ctx); });
}

}  // namespace meshid::cli
