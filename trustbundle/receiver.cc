#include "trustbundle/receiver.h"

#include <algorithm>
#include <filesystem>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/files.h"
#include "common/pem.h"
#include "common/status_macros.h"
#include "common/x509.h"
#include "trustbundle/wire.h"
#include "xds/resource.h"

namespace meshid::trustbundle {
namespace {

using meshid::trustbundle::v1::TrustBundle;

// A PEM file of kMaxTrustBundleRoots roots of kMaxRootBytes, with room for text between them.
constexpr size_t kMaxPemFileBytes = 2 * kMaxTrustBundleRoots * kMaxRootBytes;

// `root_der` must be canonical (sorted by fingerprint, distinct).
std::shared_ptr<const NodeTrustBundle> MakeNodeBundle(std::vector<std::string> root_der, absl::Time received_at) {
  auto bundle = std::make_shared<NodeTrustBundle>();
  for (const std::string& der : root_der) bundle->roots_pem += EncodePem("CERTIFICATE", der);
  bundle->fingerprint = RootSetFingerprint(root_der);
  bundle->root_der = std::move(root_der);
  bundle->received_at = received_at;
  return bundle;
}

bool SharesARoot(const std::vector<std::string>& root_der, const std::set<std::string>& trusted) {
  return std::any_of(root_der.begin(), root_der.end(),
                     [&trusted](const std::string& der) { return trusted.count(RootFingerprint(der)) > 0; });
}

}  // namespace

TrustBundleReceiver::TrustBundleReceiver(TrustBundleReceiverOptions options, const Clock& clock,
                                         MetricsRegistry& metrics, LoggerPtr logger, Listener listener)
    : options_(std::move(options)),
      clock_(clock),
      logger_(std::move(logger)),
      listener_(std::move(listener)),
      roots_gauge_(metrics.AddGauge("meshid_agent_trust_bundle_roots",
                                    "Root certificates in the trust bundle in force (0: none received).")),
      updates_(metrics.AddCounter("meshid_agent_trust_bundle_updates_total",
                                  "Trust bundles from the server checked and put in force.")),
      rejected_(metrics.AddCounter("meshid_agent_trust_bundle_rejected_total",
                                   "Trust bundles refused (malformed, or sharing no root with the roots trusted); "
                                   "the last good one stays.")) {}

absl::StatusOr<std::unique_ptr<TrustBundleReceiver>> TrustBundleReceiver::Create(TrustBundleReceiverOptions options,
                                                                                 const Clock& clock,
                                                                                 MetricsRegistry& metrics,
                                                                                 LoggerPtr logger, Listener listener) {
  if (options.bootstrap_file.empty()) {
    return absl::InvalidArgumentError("bootstrap_file: required to check trust bundles");
  }
  std::unique_ptr<TrustBundleReceiver> receiver(
      new TrustBundleReceiver(std::move(options), clock, metrics, std::move(logger), std::move(listener)));
  const std::string& state = receiver->options_.state_file;
  std::error_code exists_error;
  const bool kept = !state.empty() && std::filesystem::exists(state, exists_error);
  if (exists_error) {
    receiver->logger_->error("cannot look for a kept trust bundle at {}: {}", state, exists_error.message());
  }
  if (!kept) return receiver;

  auto text = ReadFile(state, kMaxPemFileBytes);
  absl::StatusOr<std::vector<std::string>> roots = text.ok() ? RootsFromPem(*text, state) : text.status();
  if (!roots.ok()) {
    receiver->logger_->error("ignoring the kept trust bundle {}: {}", state, roots.status().message());
    return receiver;
  }
  // Checked when it was received; after a completed CA rotation it shares no root with a
  // --ca-root the operator has not updated, and is what lets the agent reach its server again.
  if (auto bootstrap = receiver->BootstrapFingerprints();
      bootstrap.ok() && !SharesARoot(*roots, {bootstrap->begin(), bootstrap->end()})) {
    receiver->logger_->warn(
        "the kept trust bundle {} ({}) shares no root with {} ({}): trusting it as a completed CA rotation left it; "
        "delete it to start again from {} alone",
        state, RootSetFingerprint(*roots), receiver->options_.bootstrap_file, absl::StrJoin(*bootstrap, ","),
        receiver->options_.bootstrap_file);
  }
  auto bundle = MakeNodeBundle(*std::move(roots), clock.Now());
  receiver->logger_->info("trusting the kept trust bundle {} ({} roots: {}) until the server sends one", state,
                          bundle->root_der.size(), bundle->fingerprint);
  MESHID_RETURN_IF_ERROR(receiver->Install(std::move(bundle), /*persist=*/false));
  return receiver;
}

absl::StatusOr<std::vector<std::string>> TrustBundleReceiver::BootstrapFingerprints() const {
  auto text = ReadFile(options_.bootstrap_file, kMaxPemFileBytes);
  if (!text.ok()) return absl::FailedPreconditionError(text.status().message());
  // The operator's own file: every certificate in it is trusted as it is, CA or not.
  auto certs = CertsFromPem(*text, options_.bootstrap_file);
  if (!certs.ok()) return absl::FailedPreconditionError(certs.status().message());
  std::vector<std::string> fingerprints;
  for (const X509Ptr& cert : *certs) fingerprints.push_back(RootFingerprint(CertToDer(cert.get())));
  std::sort(fingerprints.begin(), fingerprints.end());
  fingerprints.erase(std::unique(fingerprints.begin(), fingerprints.end()), fingerprints.end());
  return fingerprints;
}

absl::Status TrustBundleReceiver::Install(std::shared_ptr<const NodeTrustBundle> bundle, bool persist) {
  if (persist && !options_.state_file.empty()) {
    const std::filesystem::path dir = std::filesystem::path(options_.state_file).parent_path();
    std::error_code ignored;  // a failure to create it shows in the write below
    if (!dir.empty()) std::filesystem::create_directories(dir, ignored);
    if (auto s = WriteFileAtomic(options_.state_file, bundle->roots_pem, 0644); !s.ok()) {
      return absl::InternalError(absl::StrCat("keeping the trust bundle in ", options_.state_file, ": ", s.message()));
    }
  }
  {
    absl::MutexLock lock(&mu_);
    current_ = bundle;
  }
  roots_gauge_.Set(static_cast<double>(bundle->root_der.size()));
  if (listener_) listener_(bundle);
  return absl::OkStatus();
}

absl::Status TrustBundleReceiver::Apply(const TrustBundle& bundle) {
  absl::MutexLock serialize(&apply_mu_);
  const std::shared_ptr<const NodeTrustBundle> held = current();
  // The bundle to put in force; null: the one in force already.
  auto checked = [&]() -> absl::StatusOr<std::shared_ptr<const NodeTrustBundle>> {
    MESHID_RETURN_IF_ERROR(ValidateTrustBundle(bundle));
    if (held != nullptr && held->fingerprint == bundle.fingerprint()) return nullptr;
    MESHID_ASSIGN_OR_RETURN(std::vector<std::string> trusted, BootstrapFingerprints());
    if (held != nullptr) {
      for (const std::string& der : held->root_der) trusted.push_back(RootFingerprint(der));
    }
    std::vector<std::string> offered(bundle.root_der().begin(), bundle.root_der().end());
    const std::set<std::string> trusted_set(trusted.begin(), trusted.end());
    if (!SharesARoot(offered, trusted_set)) {
      return absl::InvalidArgumentError(
          absl::StrCat("shares no root with the trust bundle in force: the bundle's roots are ", bundle.fingerprint(),
                       "; the roots trusted (", options_.bootstrap_file,
                       held != nullptr ? " and the bundle received" : "", ") are ", absl::StrJoin(trusted_set, ",")));
    }
    return MakeNodeBundle(std::move(offered), clock_.Now());
  }();
  if (checked.ok() && *checked == nullptr) return absl::OkStatus();
  absl::Status status = checked.ok() ? Install(*checked, /*persist=*/true) : checked.status();
  if (!status.ok()) {
    rejected_.Increment();
    logger_->error("refused the trust bundle of \"{}\" from the server: {}; the last good one stays in force",
                   xds::ClipForError(bundle.trust_domain()), status.message());
    return status;
  }
  updates_.Increment();
  logger_->info("trust bundle of {} in force: {} roots ({})", bundle.trust_domain(), (*checked)->root_der.size(),
                (*checked)->fingerprint);
  return absl::OkStatus();
}

absl::Status TrustBundleReceiver::OnResponse(const envoy::service::discovery::v3::DiscoveryResponse& response) {
  auto bundle = DecodeTrustBundleResponse(response);
  if (!bundle.ok()) {
    rejected_.Increment();
    logger_->error("refused a trust bundle response: {}", bundle.status().message());
    return bundle.status();
  }
  return Apply(*bundle);
}

std::shared_ptr<const NodeTrustBundle> TrustBundleReceiver::current() const {
  absl::MutexLock lock(&mu_);
  return current_;
}

}  // namespace meshid::trustbundle
