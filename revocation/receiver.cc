#include "revocation/receiver.h"

#include <openssl/x509v3.h>

#include <atomic>
#include <filesystem>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/pem.h"
#include "common/status_macros.h"
#include "common/x509.h"
#include "revocation/wire.h"

namespace meshid::revocation {
namespace {

using meshid::revocation::v1::RevocationList;

// Only a CA certificate allowed to sign CRLs may vouch for one (a workload's own certificate,
// also under the bundle, must not be able to lift revocations).
absl::Status CheckCrlSigner(X509* signer) {
  if (!IsCa(signer)) return absl::InvalidArgumentError("the CRL's signer is not a CA certificate");
  if ((X509_get_key_usage(signer) & KU_CRL_SIGN) == 0) {
    return absl::InvalidArgumentError("the CRL's signer may not sign CRLs (keyUsage without cRLSign)");
  }
  return absl::OkStatus();
}

std::string Subject(X509* cert) {
  char buf[256];
  X509_NAME_oneline(X509_get_subject_name(cert), buf, sizeof(buf));
  return buf;
}

// The state file's form: the CRL block, then the issuer chain's CERTIFICATE blocks.
std::string StateFileText(const NodeCrl& crl) {
  std::string text = crl.pem;
  for (const auto& der : crl.issuer_chain_der) text += EncodePem("CERTIFICATE", der);
  return text;
}

absl::StatusOr<RevocationList> ParseStateFile(absl::string_view text) {
  PemParseOptions options;
  options.max_input_bytes = kMaxRevocationListBytes;
  MESHID_ASSIGN_OR_RETURN(auto blocks, ParsePemBlocks(text, options));
  RevocationList list;
  for (const PemBlock& block : blocks) {
    if (block.type == "X509 CRL" && list.crl_der().empty()) {
      list.set_crl_der(block.der);
    } else if (block.type == "CERTIFICATE") {
      if (list.issuer_chain_der_size() == kMaxIssuerChain) {
        return absl::InvalidArgumentError(absl::StrCat("more than ", kMaxIssuerChain, " issuer certificates"));
      }
      list.add_issuer_chain_der(block.der);
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unexpected PEM block \"", block.type, "\""));
    }
  }
  if (list.crl_der().empty()) return absl::InvalidArgumentError("no \"X509 CRL\" block");
  MESHID_ASSIGN_OR_RETURN(auto index, RevocationIndex::FromCrlDer(list.crl_der()));
  list.set_crl_number(index->number());
  return list;
}

}  // namespace

CrlReceiver::CrlReceiver(CrlReceiverOptions options, const Clock& clock, MetricsRegistry& metrics, LoggerPtr logger,
                         Listener listener)
    : options_(std::move(options)),
      clock_(clock),
      logger_(std::move(logger)),
      listener_(std::move(listener)),
      this_update_micros_(std::make_shared<std::atomic<int64_t>>(0)),
      number_gauge_(metrics.AddGauge("meshid_agent_crl_number", "cRLNumber of the CRL in force (0: none).")),
      entries_gauge_(metrics.AddGauge("meshid_agent_crl_entries", "Revoked certificates listed in the CRL in force.")),
      updates_(metrics.AddCounter("meshid_agent_crl_updates_total", "CRLs from the server checked and put in force.")),
      rejected_(metrics.AddCounter("meshid_agent_crl_rejected_total",
                                   "CRLs refused (bad signature, another CA, expired, older number); the last "
                                   "good one stays.")) {
  // Shares only what it reads with the receiver: a scrape may outlive it.
  metrics.AddComputedGauge("meshid_agent_crl_age_seconds", "Seconds since the thisUpdate of the CRL in force.",
                           [this_update = this_update_micros_, &clock] {
                             const int64_t micros = this_update->load();
                             if (micros == 0) return std::numeric_limits<double>::quiet_NaN();
                             return absl::ToDoubleSeconds(clock.Now() - absl::FromUnixMicros(micros));
                           });
}

absl::StatusOr<std::unique_ptr<CrlReceiver>> CrlReceiver::Create(CrlReceiverOptions options, const Clock& clock,
                                                                 MetricsRegistry& metrics, LoggerPtr logger,
                                                                 Listener listener) {
  if (options.trust_bundle_file.empty()) {
    return absl::InvalidArgumentError("trust_bundle_file: required to check CRLs");
  }
  std::unique_ptr<CrlReceiver> receiver(
      new CrlReceiver(std::move(options), clock, metrics, std::move(logger), std::move(listener)));
  const std::string& state = receiver->options_.state_file;
  std::error_code exists_error;
  const bool kept = !state.empty() && std::filesystem::exists(state, exists_error);
  if (exists_error) receiver->logger_->error("cannot look for a kept CRL at {}: {}", state, exists_error.message());
  if (kept) {
    auto text = ReadFile(state, kMaxRevocationListBytes);
    absl::StatusOr<RevocationList> kept_list = text.ok() ? ParseStateFile(*text) : text.status();
    absl::StatusOr<std::shared_ptr<const NodeCrl>> crl =
        kept_list.ok() ? receiver->Check(*kept_list, /*allow_stale=*/true) : kept_list.status();
    if (!crl.ok()) {
      receiver->logger_->error("ignoring the kept CRL {}: {}", state, crl.status().message());
    } else {
      if ((*crl)->next_update <= clock.Now()) {
        receiver->logger_->warn(
            "the kept CRL {} (number {}) is past its nextUpdate {}; enforcing it until the server "
            "sends a newer one",
            state, (*crl)->number, absl::FormatTime((*crl)->next_update));
      }
      receiver->logger_->info("enforcing the kept CRL {} (number {}, {} revoked) until the server sends one", state,
                              (*crl)->number, (*crl)->index->size());
      MESHID_RETURN_IF_ERROR(receiver->Install(*std::move(crl), /*persist=*/false));
    }
  }
  return receiver;
}

absl::StatusOr<std::shared_ptr<const NodeCrl>> CrlReceiver::Check(const RevocationList& list, bool allow_stale) const {
  const absl::Time now = clock_.Now();
  auto bundle_text = ReadTrustBundleFiles(options_.trust_bundle_file, options_.pushed_bundle_file);
  if (!bundle_text.ok()) return absl::FailedPreconditionError(bundle_text.status().message());
  auto roots = CertsFromPem(*bundle_text, options_.trust_bundle_file);
  if (!roots.ok()) return absl::FailedPreconditionError(roots.status().message());
  std::vector<X509*> root_ptrs;
  for (const auto& r : *roots) root_ptrs.push_back(r.get());

  std::vector<X509Ptr> chain;
  for (int i = 0; i < list.issuer_chain_der_size(); ++i) {
    auto cert = CertFromDer(list.issuer_chain_der(i));
    if (!cert.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("issuer_chain_der[", i, "]: ", cert.status().message()));
    }
    chain.push_back(*std::move(cert));
  }
  auto crl = std::make_shared<NodeCrl>();
  absl::StatusOr<CrlInfo> info = absl::InvalidArgumentError("no root of the trust bundle issued this CRL");
  if (!chain.empty()) {
    std::vector<X509*> intermediates;
    for (size_t i = 1; i < chain.size(); ++i) intermediates.push_back(chain[i].get());
    if (auto s = VerifyCertChain(chain[0].get(), intermediates, root_ptrs, now); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("the CRL's issuer \"", Subject(chain[0].get()),
                                                     "\" does not chain to the trust bundle ",
                                                     options_.trust_bundle_file, ": ", s.message()));
    }
    MESHID_RETURN_IF_ERROR(CheckCrlSigner(chain[0].get()));
    info = VerifyCrl(list.crl_der(), chain[0].get(), now, allow_stale, CrlSerials::kIndexOnly);
  } else {
    // Signed by a root: try every root of the bundle (a rotation may hold two).
    for (X509* root : root_ptrs) {
      info = VerifyCrl(list.crl_der(), root, now, allow_stale, CrlSerials::kIndexOnly);
      if (info.ok()) {
        MESHID_RETURN_IF_ERROR(CheckCrlSigner(root));
        break;
      }
    }
  }
  if (!info.ok()) return info.status();
  if (info->number != list.crl_number()) {
    return absl::InvalidArgumentError(
        absl::StrCat("crl_number ", list.crl_number(), " differs from the CRL's cRLNumber ", info->number));
  }
  crl->index = std::move(info->index);  // parsed once, by VerifyCrl
  crl->der = list.crl_der();
  crl->pem = CrlDerToPem(crl->der);
  crl->issuer_chain_der.assign(list.issuer_chain_der().begin(), list.issuer_chain_der().end());
  crl->number = info->number;
  crl->this_update = info->this_update;
  crl->next_update = info->next_update;
  crl->issuer_serial_hex = info->issuer_serial_hex;
  return std::shared_ptr<const NodeCrl>(std::move(crl));
}

absl::Status CrlReceiver::Install(std::shared_ptr<const NodeCrl> crl, bool persist) {
  if (persist && !options_.state_file.empty()) {
    const std::filesystem::path dir = std::filesystem::path(options_.state_file).parent_path();
    std::error_code ignored;  // a failure to create it shows in the write below
    if (!dir.empty()) std::filesystem::create_directories(dir, ignored);
    if (auto s = WriteFileAtomic(options_.state_file, StateFileText(*crl), 0600); !s.ok()) {
      return absl::InternalError(absl::StrCat("keeping the CRL in ", options_.state_file, ": ", s.message()));
    }
  }
  {
    absl::MutexLock lock(&mu_);
    current_ = crl;
  }
  this_update_micros_->store(absl::ToUnixMicros(crl->this_update));
  number_gauge_.Set(static_cast<double>(crl->number));
  entries_gauge_.Set(static_cast<double>(crl->index->size()));
  if (listener_) listener_(crl);
  return absl::OkStatus();
}

absl::Status CrlReceiver::Apply(const RevocationList& list) {
  absl::MutexLock serialize(&apply_mu_);
  absl::StatusOr<std::shared_ptr<const NodeCrl>> crl = Check(list, /*allow_stale=*/false);
  if (crl.ok()) {
    auto held = current();
    if (held != nullptr && held->issuer_serial_hex == (*crl)->issuer_serial_hex && (*crl)->number < held->number) {
      crl = absl::InvalidArgumentError(
          absl::StrCat("CRL number ", (*crl)->number, " is older than the one in force (", held->number, ")"));
    }
  }
  absl::Status status = crl.ok() ? Install(*crl, /*persist=*/true) : crl.status();
  if (!status.ok()) {
    rejected_.Increment();
    logger_->error("refused CRL number {} from the server: {}; the last good one stays in force", list.crl_number(),
                   status.message());
    return status;
  }
  updates_.Increment();
  logger_->info("CRL number {} in force: {} revoked, nextUpdate {}", (*crl)->number, (*crl)->index->size(),
                absl::FormatTime((*crl)->next_update));
  return absl::OkStatus();
}

absl::Status CrlReceiver::OnResponse(const envoy::service::discovery::v3::DiscoveryResponse& response) {
  auto list = DecodeRevocationResponse(response);
  if (!list.ok()) {
    rejected_.Increment();
    logger_->error("refused a revocation response: {}", list.status().message());
    return list.status();
  }
  return Apply(*list);
}

std::shared_ptr<const NodeCrl> CrlReceiver::current() const {
  absl::MutexLock lock(&mu_);
  return current_;
}

}  // namespace meshid::revocation
