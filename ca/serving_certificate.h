// The CA endpoint's own TLS certificate, kept in files that gRPC's file-watching certificate
// provider re-reads (grpc::experimental::FileWatcherCertificateProvider), so that it can be
// replaced while the server runs: after a reload of the plug-in CA (a certificate from the old
// chain would stop verifying once the old root leaves the agents' bundle) and before it expires.
// gRPC's provider reads the files about every second: a renewal is served from then on, to new
// connections; connections already open keep theirs.
//
// Layout under `dir` (mode 0700): current -> v<N>/ (a symlink), v<N>/key.pem (0600) and
// v<N>/chain.pem (the certificate, then the CA's chain). A renewal writes a new v<N+1>/ and swaps
// the symlink with one rename, so a reader never sees a key of one version beside a
// certificate of another; the version before stays (a reader may have resolved it just
// before the swap), older ones are removed. Not thread-safe: one thread renews.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "ca/cert_issuer.h"
#include "common/clock.h"

namespace meshid {

struct ServingCertificateOptions {
  std::string dir;                 // <data-dir>/serving
  std::vector<std::string> names;  // DNS names and IP addresses (SANs)
  absl::Duration ttl = absl::Hours(24 * 365);
};

class ServingCertificateFiles {
 public:
  // Removes what an earlier run left in `options.dir` (its versions are stale: their key may
  // belong to a CA no longer in force); the first Renew writes the first version.
  static absl::StatusOr<ServingCertificateFiles> Create(ServingCertificateOptions options);

  // A new key and a certificate for it from `issuer`, published as the next version. On an
  // error the version in force stays.
  absl::Status Renew(const CertIssuer& issuer);

  // Renews when the chain of `issuer` is not the one served with the certificate in force (a
  // reload replaced the signing certificate or the roots), when that is past half of its
  // lifetime, or when none was issued. true: renewed.
  absl::StatusOr<bool> RenewIfDue(const CertIssuer& issuer, const Clock& clock);

  // What the certificate provider reads: through the `current` symlink.
  std::string key_file() const { return options_.dir + "/current/key.pem"; }
  std::string chain_file() const { return options_.dir + "/current/chain.pem"; }
  const std::string& serial_hex() const { return serial_hex_; }

 private:
  explicit ServingCertificateFiles(ServingCertificateOptions options) : options_(std::move(options)) {}

  ServingCertificateOptions options_;
  int version_ = 0;
  std::string serial_hex_;
  std::string chain_;  // served after the certificate: the issuer's chain_pems, concatenated
  absl::Time renew_after_ = absl::InfinitePast();
};

}  // namespace meshid
