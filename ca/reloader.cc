#include "ca/reloader.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/files.h"
#include "common/jwt.h"
#include "common/status_macros.h"
#include "common/x509.h"

namespace meshid {
namespace {

constexpr size_t kMaxJwksBytes = 1 << 20;

std::string ValidUntil(X509* cert) { return absl::FormatTime(absl::RFC3339_sec, NotAfter(cert), absl::UTCTimeZone()); }

// Roots of `before` that `after` no longer holds, by serial.
std::vector<std::string> DroppedRoots(const SigningAuthority& before, const SigningAuthority& after) {
  std::vector<std::string> dropped;
  for (const auto& old_root : before.roots) {
    bool kept = std::any_of(after.roots.begin(), after.roots.end(),
                            [&](const X509Ptr& r) { return X509_cmp(r.get(), old_root.get()) == 0; });
    if (!kept) dropped.push_back(absl::StrCat("the root with serial ", SerialHex(old_root.get())));
  }
  return dropped;
}

}  // namespace

PluggedInCaReloader::PluggedInCaReloader(PluggedInCaReloaderOptions options, PluggedInFiles loaded,
                                         AuthoritySource& authorities, const Clock& clock, RandomSource& random,
                                         MetricsRegistry& metrics, LoggerPtr logger)
    : options_(std::move(options)),
      loaded_(std::move(loaded)),
      authorities_(authorities),
      clock_(clock),
      random_(random),
      logger_(std::move(logger)),
      reloaded_(metrics.AddCounter("meshid_ca_reload_total", "Reloads of rotated material, by what and outcome.",
                                   {{"what", "cacerts"}, {"result", "ok"}})),
      refused_(metrics.AddCounter("meshid_ca_reload_total", "Reloads of rotated material, by what and outcome.",
                                  {{"what", "cacerts"}, {"result", "refused"}})) {}

absl::StatusOr<std::shared_ptr<const CertIssuer>> PluggedInCaReloader::Prepare(const PluggedInFiles& files,
                                                                               const SigningAuthority& before) const {
  MESHID_ASSIGN_OR_RETURN(std::shared_ptr<const SigningAuthority> authority,
                          ParsePluggedInAuthority(files, clock_, options_.token_key));
  MESHID_ASSIGN_OR_RETURN(std::unique_ptr<CertIssuer> issuer,
                          CertIssuer::Create(std::move(authority), clock_, random_));
  if (options_.approve_new_roots && before.root_bundle_pem != issuer->authority().root_bundle_pem) {
    MESHID_RETURN_IF_ERROR(options_.approve_new_roots(issuer->authority()));
  }
  if (!options_.trust_bundle_file.empty()) {
    absl::Status written = WriteFileAtomic(options_.trust_bundle_file, issuer->authority().root_bundle_pem, 0644);
    if (!written.ok()) {
      return absl::Status(written.code(), absl::StrCat("writing the trust bundle: ", written.message()));
    }
  }
  return std::shared_ptr<const CertIssuer>(std::move(issuer));
}

absl::StatusOr<bool> PluggedInCaReloader::RunOne() {
  const std::shared_ptr<const AuthoritySnapshot> before = authorities_.Current();
  auto refuse = [&](const absl::Status& why) -> absl::Status {
    const std::string message(why.message());
    if (message != last_refusal_) {
      logger_->warn("plug-in CA in {}: refusing the new files, still signing with serial {}: {}", options_.cacerts_dir,
                    before->issuer->signing_serial_hex(), message);
      refused_.Increment();
      last_refusal_ = message;
    }
    return why;
  };
  auto files = ReadPluggedInFiles(options_.cacerts_dir, options_.token_key != nullptr);
  if (!files.ok()) return refuse(files.status());
  if (files->SameContents(loaded_)) {
    if (!last_refusal_.empty()) {
      logger_->info("plug-in CA in {}: the files hold the material in force again", options_.cacerts_dir);
      last_refusal_.clear();
    }
    return false;
  }
  auto issuer = Prepare(*files, before->authority());
  if (!issuer.ok()) return refuse(issuer.status());

  const SigningAuthority& next = (*issuer)->authority();
  if (std::vector<std::string> dropped = DroppedRoots(before->authority(), next); !dropped.empty()) {
    logger_->warn(
        "plug-in CA in {}: root-cert.pem no longer holds {}; certificates issued under it stop verifying wherever the "
        "new trust bundle replaces the old one (a rotation keeps both roots until every workload has renewed)",
        options_.cacerts_dir, absl::StrJoin(dropped, ", "));
  }
  logger_->info("plug-in CA in {} reloaded: signing cert serial {} valid until {} (was serial {}), {} root(s){}",
                options_.cacerts_dir, (*issuer)->signing_serial_hex(), ValidUntil(next.cert.get()),
                before->issuer->signing_serial_hex(), next.roots.size(),
                options_.trust_bundle_file.empty() ? "" : "; trust bundle written to " + options_.trust_bundle_file);
  authorities_.Replace(*std::move(issuer));
  loaded_ = *std::move(files);
  last_refusal_.clear();
  reloaded_.Increment();
  return true;
}

bool IsJwksUrl(const std::string& location) {
  return absl::StartsWith(location, "https://") || absl::StartsWith(location, "http://");
}

JwksReloader::JwksReloader(JwtAuthenticator& authenticator, FetchDocument fetch, const Clock& clock,
                           MetricsRegistry& metrics, LoggerPtr logger)
    : authenticator_(authenticator),
      fetch_(std::move(fetch)),
      clock_(clock),
      logger_(std::move(logger)),
      reloaded_(metrics.AddCounter("meshid_ca_reload_total", "Reloads of rotated material, by what and outcome.",
                                   {{"what", "jwks"}, {"result", "ok"}})),
      refused_(metrics.AddCounter("meshid_ca_reload_total", "Reloads of rotated material, by what and outcome.",
                                  {{"what", "jwks"}, {"result", "refused"}})),
      failed_(metrics.AddCounter("meshid_ca_reload_total", "Reloads of rotated material, by what and outcome.",
                                 {{"what", "jwks"}, {"result", "failed"}})) {}

absl::StatusOr<std::unique_ptr<JwksReloader>> JwksReloader::Create(JwksReloaderOptions options,
                                                                   JwtAuthenticator& authenticator, FetchDocument fetch,
                                                                   const Clock& clock, RandomSource& random,
                                                                   MetricsRegistry& metrics, LoggerPtr logger) {
  if (options.url_refresh_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--jwks-refresh-interval: must be positive");
  }
  std::unique_ptr<JwksReloader> reloader(
      new JwksReloader(authenticator, std::move(fetch), clock, metrics, std::move(logger)));
  reloader->url_refresh_interval_ = options.url_refresh_interval;
  for (JwksLocation& where : options.issuers) {
    const bool url = IsJwksUrl(where.location);
    auto source = std::unique_ptr<Source>(new Source{
        std::move(where), url, "", "", absl::InfinitePast(),
        Backoff(std::min(kRetryInitial, options.url_refresh_interval), options.url_refresh_interval, random)});
    absl::Status loaded = reloader->Poll(*source, /*at_start=*/true);
    if (!loaded.ok() && !url) return absl::InvalidArgumentError(loaded.message());
    reloader->sources_.push_back(std::move(source));
  }
  return reloader;
}

absl::Status JwksReloader::RunOne() {
  std::vector<std::string> problems;
  for (const auto& source : sources_) {
    if (absl::Status s = Poll(*source, /*at_start=*/false); !s.ok()) problems.emplace_back(s.message());
  }
  if (problems.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrJoin(problems, "; "));
}

absl::Status JwksReloader::Poll(Source& source, bool at_start) {
  const std::string& issuer = source.where.issuer;
  const std::string& location = source.where.location;
  const absl::Time now = clock_.Now();
  // Logged once per reason; a URL is fetched again sooner after a problem.
  auto refuse = [&](absl::string_view why, Counter& counter) -> absl::Status {
    std::string message = absl::StrCat("--jwt-issuer ", issuer, ": ", why);
    if (source.url) source.next_fetch = now + source.backoff.Next();
    if (message != source.last_refusal) {
      if (at_start) {
        logger_->error("{}; no keys for this issuer until a fetch succeeds", message);
      } else {
        logger_->warn("{}; keeping the keys in force", message);
      }
      source.last_refusal = message;
      counter.Increment();
    }
    return absl::InvalidArgumentError(message);
  };

  std::string document;
  if (source.url) {
    if (now < source.next_fetch) return absl::OkStatus();
    auto fetched = fetch_(location);
    if (!fetched.ok()) return refuse(fetched.status().message(), failed_);
    document = *std::move(fetched);
  } else {
    auto text = ReadFile(location, kMaxJwksBytes);  // its errors name the file
    if (!text.ok()) return refuse(text.status().message(), refused_);
    document = *std::move(text);
  }
  if (document == source.applied) {
    if (source.url) {
      source.backoff.Reset();
      source.next_fetch = now + url_refresh_interval_;
    }
    if (!source.last_refusal.empty()) {
      logger_->info("--jwt-issuer {}: {} holds the keys in force again", issuer, location);
      source.last_refusal.clear();
    }
    return absl::OkStatus();
  }
  auto jwks = Jwks::Parse(document);
  if (!jwks.ok()) return refuse(absl::StrCat(location, ": ", jwks.status().message()), refused_);
  std::vector<std::string> kids;
  for (const Jwk& key : jwks->keys()) kids.push_back(key.kid.empty() ? "(no kid)" : key.kid);
  if (absl::Status s = authenticator_.ReplaceJwks(issuer, *std::move(jwks)); !s.ok()) {
    return refuse(s.message(), refused_);
  }
  if (source.url) {
    source.backoff.Reset();
    source.next_fetch = now + url_refresh_interval_;
  }
  source.applied = std::move(document);
  source.last_refusal.clear();
  if (!at_start) {
    reloaded_.Increment();
    logger_->info("--jwt-issuer {}: keys reloaded from {}: {}", issuer, location, absl::StrJoin(kids, ", "));
  }
  return absl::OkStatus();
}

}  // namespace meshid
