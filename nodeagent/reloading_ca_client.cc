#include "nodeagent/reloading_ca_client.h"

#include "absl/strings/str_cat.h"
#include "common/files.h"

namespace meshid {

ReloadingCaClient::ReloadingCaClient(CaClientOptions base, std::string root_file, std::string pushed_bundle_file,
                                     LoggerPtr logger)
    : base_(std::move(base)),
      root_file_(std::move(root_file)),
      pushed_bundle_file_(std::move(pushed_bundle_file)),
      logger_(std::move(logger)) {}

absl::StatusOr<std::vector<std::string>> ReloadingCaClient::CreateCertificate(absl::string_view csr_pem,
                                                                              absl::string_view bearer_token,
                                                                              absl::Duration ttl,
                                                                              absl::string_view impersonated_identity) {
  CaClient* client = nullptr;
  {
    absl::MutexLock lock(&mu_);
    if (auto status = RefreshLocked(); !status.ok()) return status;
    client = client_.get();
    ++in_use_;
  }
  auto result = client->CreateCertificate(csr_pem, bearer_token, ttl, impersonated_identity);
  absl::MutexLock lock(&mu_);
  --in_use_;
  if (!result.ok() && (absl::IsUnavailable(result.status()) || absl::IsDeadlineExceeded(result.status()))) {
    stale_ = true;
  }
  return result;
}

absl::Status ReloadingCaClient::RefreshLocked() {
  std::string root;
  if (!base_.insecure_plaintext) {
    auto content = ReadTrustBundleFiles(root_file_, pushed_bundle_file_);
    if (!content.ok()) {
      if (client_ != nullptr) return absl::OkStatus();  // keep the last good bundle
      return absl::FailedPreconditionError(absl::StrCat("--ca-root: ", content.status().message()));
    }
    root = std::move(*content);
  }
  if (client_ != nullptr && root == root_ && !(stale_ && in_use_ == 0)) return absl::OkStatus();
  if (in_use_ > 0 && client_ != nullptr) return absl::OkStatus();  // rebuild once the channel is idle
  CaClientOptions options = base_;
  options.root_cert_pem = root;
  auto client = CaClient::Create(options);
  if (!client.ok()) {
    if (client_ != nullptr) return absl::OkStatus();
    return client.status();
  }
  if (client_ != nullptr) {
    logger_->info("reconnecting to the CA at {} ({})", base_.address,
                  root != root_ ? "its trust bundle changed" : "the last request could not reach it");
  }
  client_ = std::move(*client);
  root_ = std::move(root);
  stale_ = false;
  return absl::OkStatus();
}

}  // namespace meshid
