#include "ca/crl_publisher.h"

#include "absl/strings/str_cat.h"
#include "ca/crl_builder.h"
#include "common/crl.h"
#include "common/files.h"
#include "common/status_macros.h"

namespace meshid {

absl::StatusOr<std::unique_ptr<CrlPublisher>> CrlPublisher::Create(std::shared_ptr<const AuthoritySource> authorities,
                                                                   RevocationStore& store, const Clock& clock,
                                                                   MetricsRegistry& metrics, LoggerPtr logger,
                                                                   CrlPublisherOptions options) {
  if (options.validity < absl::Minutes(2)) {
    return absl::InvalidArgumentError("CRL validity: must be at least 2m");
  }
  if (options.poll_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("CRL poll interval: must be positive");
  }
  std::unique_ptr<CrlPublisher> publisher(
      new CrlPublisher(std::move(authorities), store, clock, metrics, std::move(logger), std::move(options)));
  absl::MutexLock lock(&publisher->poll_mu_);
  MESHID_RETURN_IF_ERROR(publisher->Build());
  return publisher;
}

CrlPublisher::CrlPublisher(std::shared_ptr<const AuthoritySource> authorities, RevocationStore& store,
                           const Clock& clock, MetricsRegistry& metrics, LoggerPtr logger, CrlPublisherOptions options)
    : authorities_(std::move(authorities)),
      store_(store),
      clock_(clock),
      logger_(std::move(logger)),
      options_(std::move(options)),
      number_gauge_(metrics.AddGauge("meshid_ca_crl_number", "cRLNumber of the CRL this server publishes.")),
      entries_gauge_(metrics.AddGauge("meshid_ca_crl_entries", "Revoked certificates the published CRL lists.")),
      this_update_gauge_(metrics.AddGauge("meshid_ca_crl_this_update_seconds",
                                          "thisUpdate of the published CRL, seconds since the Unix epoch.")),
      builds_(metrics.AddCounter("meshid_ca_crl_builds_total", "CRLs signed by this server.")),
      errors_(metrics.AddCounter("meshid_ca_crl_errors_total",
                                 "Polls of the CRL number or CRL builds that failed (the last CRL stays).")) {}

CrlPublisher::~CrlPublisher() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void CrlPublisher::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void CrlPublisher::Loop() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stop_), options_.poll_interval)) return;
    }
    (void)RunOne();  // logs its own errors; the next poll retries
  }
}

std::shared_ptr<const PublishedCrl> CrlPublisher::current() const {
  absl::MutexLock lock(&mu_);
  return current_;
}

absl::StatusOr<bool> CrlPublisher::RunOne() {
  absl::MutexLock lock(&poll_mu_);
  auto number = store_.CrlNumber();
  absl::Status status = number.status();
  bool rebuild = false;
  if (number.ok()) {
    std::shared_ptr<const PublishedCrl> published = current();
    const absl::Time half_life = published->this_update + (published->next_update - published->this_update) / 2;
    rebuild = *number != published->number || clock_.Now() >= half_life ||
              authorities_->Current()->generation != built_generation_;
    if (rebuild) status = Build();
  }
  if (!status.ok()) {
    errors_.Increment();
    const std::string message(status.message());
    if (message != last_error_) logger_->warn("CRL: {}; the last CRL stays published", message);
    last_error_ = message;
    return status;
  }
  if (!last_error_.empty()) logger_->info("CRL: the store answers again");
  last_error_.clear();
  return rebuild;
}

absl::Status CrlPublisher::Build() {
  const absl::Time now = clock_.Now();
  const std::shared_ptr<const AuthoritySnapshot> authority = authorities_->Current();
  const SigningAuthority& signer = authority->authority();
  MESHID_ASSIGN_OR_RETURN(std::string der, BuildCurrentCrl(signer, store_, now, options_.validity));
  // What is published must read back against our own certificate (and gives the entry count).
  MESHID_ASSIGN_OR_RETURN(CrlInfo info,
                          VerifyCrl(der, signer.cert.get(), now, /*allow_stale=*/false, CrlSerials::kIndexOnly));
  if (!options_.output_file.empty()) {
    MESHID_RETURN_IF_ERROR(WriteFileAtomic(options_.output_file, CrlDerToPem(der), 0644));
  }
  auto crl = std::make_shared<PublishedCrl>(PublishedCrl{std::move(der), info.number, info.this_update,
                                                         info.next_update, authority->issuer->shared_authority()});
  {
    absl::MutexLock lock(&mu_);
    const bool changed = current_ == nullptr || current_->number != crl->number || current_->signer != crl->signer;
    if (changed) {
      logger_->info("CRL {} published: {} revoked certificate(s), signed by serial {}, next update {}", crl->number,
                    info.index->size(), authority->issuer->signing_serial_hex(),
                    absl::FormatTime(absl::RFC3339_sec, crl->next_update, absl::UTCTimeZone()));
    }
    current_ = crl;
  }
  built_generation_ = authority->generation;
  if (options_.on_publish) options_.on_publish(crl);
  number_gauge_.Set(static_cast<double>(info.number));
  entries_gauge_.Set(static_cast<double>(info.index->size()));
  this_update_gauge_.Set(static_cast<double>(absl::ToUnixSeconds(info.this_update)));
  builds_.Increment();
  return absl::OkStatus();
}

}  // namespace meshid
