// A CaClient that re-reads the CA's trust bundle file before every call and rebuilds its channel
// when the bundle changed or the last call could not reach the CA, so a rotated CA root or a
// restarted CA is picked up without restarting the agent (as istio-agent does). While a bundle
// cannot be read, the last good one stays in use.
//
// Thread-safe: calls may run concurrently; a rebuild waits until no call uses the old channel.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/logging.h"
#include "nodeagent/ca_client.h"

namespace meshid {

class ReloadingCaClient final : public CaClient {
 public:
  // `base` without root_cert_pem: the bundle comes from `root_file` and, when set and present,
  // `pushed_bundle_file` (ReadTrustBundleFiles; unused with base.insecure_plaintext). Nothing is
  // read until the first call, whose FailedPrecondition names --ca-root when the file cannot be
  // read.
  ReloadingCaClient(CaClientOptions base, std::string root_file, std::string pushed_bundle_file, LoggerPtr logger);

  using CaClient::CreateCertificate;
  absl::StatusOr<std::vector<std::string>> CreateCertificate(absl::string_view csr_pem, absl::string_view bearer_token,
                                                             absl::Duration ttl,
                                                             absl::string_view impersonated_identity) override;

 private:
  absl::Status RefreshLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const CaClientOptions base_;
  const std::string root_file_;
  const std::string pushed_bundle_file_;
  const LoggerPtr logger_;
  absl::Mutex mu_;
  std::unique_ptr<CaClient> client_ ABSL_GUARDED_BY(mu_);
  std::string root_ ABSL_GUARDED_BY(mu_);
  bool stale_ ABSL_GUARDED_BY(mu_) = false;  // the last call could not reach the CA
  int in_use_ ABSL_GUARDED_BY(mu_) = 0;      // calls running on client_
};

}  // namespace meshid
