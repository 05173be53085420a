// Live reload of what operators rotate: the plug-in `cacerts` files (--cacerts-dir) and the JWKS
// that token issuers are verified with (--jwt-issuer ISSUER=FILE or ISSUER=URL). Both are
// driven from outside, without threads of their own: the server's reload thread calls RunOne()
// every --reload-interval, and tests call it directly.
//
// A new set that is unusable (unparseable, a key not matching its certificate, a certificate not
// chaining to a root, a file missing, a JWKS without a usable key) is refused with a log line
// naming the file and what is wrong; the material in force stays, and the set is tried again on
// every poll (logged again only when the reason changes), so a set written file by file is taken
// as soon as it is whole.
//
// Metrics: meshid_ca_reload_total{what="cacerts"|"jwks",result="ok"|"refused"|"failed"}
// (failed: a JWKS URL could not be fetched).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "ca/authenticator.h"
#include "ca/authority.h"
#include "ca/authority_source.h"
#include "common/backoff.h"
#include "common/clock.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/random.h"

namespace meshid {

struct PluggedInCaReloaderOptions {
  std::string cacerts_dir;
  // Rewritten (atomically) with the new trust bundle on every reload, before the new material is
  // used: <data-dir>/root-cert.pem. Empty: none.
  std::string trust_bundle_file;
  // Asked before new material is used whose roots differ from those in force (the replicas'
  // record in the store: ca/shared_ca.h AgreeWithStoredCa); an error refuses the files. Empty:
  // nothing to ask.
  std::function<absl::Status(const SigningAuthority& next)> approve_new_roots;
  // The signing key is in this token rather than in ca-key.pem (which is then not read): a
  // reload changes the certificates around the same key.
  CaTokenKey token_key;
};

// Watches the four plug-in files and swaps the AuthoritySource's material when they change.
// Not thread-safe: one thread calls RunOne.
class PluggedInCaReloader {
 public:
  // `loaded` are the files `authorities`' current material was parsed from (a change is a
  // difference from them). `authorities`, `clock`, `random` and `metrics` must outlive the
  // reloader.
  PluggedInCaReloader(PluggedInCaReloaderOptions options, PluggedInFiles loaded, AuthoritySource& authorities,
                      const Clock& clock, RandomSource& random, MetricsRegistry& metrics, LoggerPtr logger);

  // Reads the files; when they differ from the material in force, checks them as at start
  // (ParsePluggedInAuthority), prepares a signer, asks approve_new_roots when the roots change,
  // writes the trust bundle file and publishes the new material. true: reloaded; false: nothing
  // changed. On a refusal the status says why (InvalidArgument naming the file, the error
  // reading or writing a file, or approve_new_roots' answer), and the material in force stays.
  absl::StatusOr<bool> RunOne();

 private:
  absl::StatusOr<std::shared_ptr<const CertIssuer>> Prepare(const PluggedInFiles& files,
                                                            const SigningAuthority& before) const;

  const PluggedInCaReloaderOptions options_;
  PluggedInFiles loaded_;
  AuthoritySource& authorities_;
  const Clock& clock_;
  RandomSource& random_;
  const LoggerPtr logger_;
  Counter& reloaded_;
  Counter& refused_;
  std::string last_refusal_;  // logged once per reason
};

// Where an issuer's keys come from.
struct JwksLocation {
  std::string issuer;    // as configured in the JwtAuthenticator
  std::string location;  // a file path, or an http:// or https:// URL
};

// True for "http://..." and "https://...": fetched at an interval rather than watched as a file.
bool IsJwksUrl(const std::string& location);

struct JwksReloaderOptions {
  std::vector<JwksLocation> issuers;
  // How often a URL is fetched again (--jwks-refresh-interval). After a failed fetch the next
  // one comes sooner (common/backoff.h from kRetryInitial, up to this).
  absl::Duration url_refresh_interval = absl::Minutes(5);
};

// Fetches a document by URL (the server passes authz's HTTP client). Errors name the URL.
using FetchDocument = std::function<absl::StatusOr<std::string>(const std::string& url)>;

// Keeps every configured issuer's keys in the JwtAuthenticator current. Not thread-safe: one
// thread calls RunOne.
class JwksReloader {
 public:
  static constexpr absl::Duration kRetryInitial = absl::Seconds(5);

  // Loads every issuer's keys into `authenticator` before returning. A file that cannot be read
  // or parsed fails (InvalidArgument "--jwt-issuer <issuer>: <file>: ..."): a server does not
  // start with a broken file. A URL that cannot be fetched or parsed does not fail (the identity
  // provider may be down while the CA starts): it is logged, the issuer has no keys yet, and
  // RunOne tries again. `authenticator`, `clock`, `random` and `metrics` must outlive the
  // reloader.
  static absl::StatusOr<std::unique_ptr<JwksReloader>> Create(JwksReloaderOptions options,
                                                              JwtAuthenticator& authenticator, FetchDocument fetch,
                                                              const Clock& clock, RandomSource& random,
                                                              MetricsRegistry& metrics, LoggerPtr logger);

  // Re-reads every file, and fetches every URL whose refresh is due at the clock's now; keys
  // that differ from those in force replace them (and drop the authenticator's token cache).
  // OK when every source is in force or unchanged; otherwise the reasons, joined (the keys in
  // force stay for each refused source).
  absl::Status RunOne();

 private:
  struct Source {
    JwksLocation where;
    bool url = false;
    std::string applied;  // the document in force ("" none yet)
    std::string last_refusal;
    absl::Time next_fetch = absl::InfinitePast();
    Backoff backoff;
  };
  JwksReloader(JwtAuthenticator& authenticator, FetchDocument fetch, const Clock& clock, MetricsRegistry& metrics,
               LoggerPtr logger);
  // One source: read or fetch (when due), parse, apply.
  absl::Status Poll(Source& source, bool at_start);

  JwtAuthenticator& authenticator_;
  const FetchDocument fetch_;
  const Clock& clock_;
  const LoggerPtr logger_;
  absl::Duration url_refresh_interval_;
  std::vector<std::unique_ptr<Source>> sources_;
  Counter& reloaded_;
  Counter& refused_;
  Counter& failed_;
};

}  // namespace meshid
