// The server's CRL, kept current: it watches the store's CRL number and signs a new CRL
// (ca/crl_builder.h) whenever the number moved, and again, with the same number, once half of
// the last one's validity has passed (so that no relying party ever holds an expired CRL, and
// revocations of certificates that expired since leave it). Every replica on one database runs
// its own publisher; they sign the same entries under the same number.
//
// Why polling: revocations are written by `meshid certs revoke` and `identity block` straight
// into the store (SQLite has no notifications); one single-row read per poll_interval costs
// nothing on either backend, as for policy versions (policy/server.h).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "ca/authority_source.h"
#include "common/clock.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "store/revocation_store.h"

namespace meshid {

struct PublishedCrl {
  std::string der;
  int64_t number = 0;
  absl::Time this_update;
  absl::Time next_update;
  // The material whose signing certificate signed it (its chain up to a root is what relying
  // parties check it with).
  std::shared_ptr<const SigningAuthority> signer;
};

struct CrlPublisherOptions {
  absl::Duration poll_interval = absl::Seconds(1);  // how often the CRL number is read
  absl::Duration validity = absl::Hours(24);        // nextUpdate - thisUpdate
  std::string output_file;                          // rewritten atomically (PEM) on every build; "" none
  // Called with every CRL built (the first one inside Create), one at a time, on the building
  // thread: how the server's revocation stream learns of it. Null: none.
  std::function<void(const std::shared_ptr<const PublishedCrl>&)> on_publish;
};

class CrlPublisher {
 public:
  // Builds the first CRL before returning: a CA that cannot sign its CRL does not start. Signs
  // with `authorities`' current snapshot. The store, clock and metrics must outlive the
  // publisher. Metrics: meshid_ca_crl_number,
  // meshid_ca_crl_entries, meshid_ca_crl_this_update_seconds, meshid_ca_crl_builds_total,
  // meshid_ca_crl_errors_total.
  static absl::StatusOr<std::unique_ptr<CrlPublisher>> Create(std::shared_ptr<const AuthoritySource> authorities,
                                                              RevocationStore& store, const Clock& clock,
                                                              MetricsRegistry& metrics, LoggerPtr logger,
                                                              CrlPublisherOptions options);
  ~CrlPublisher();  // stops the poller
  CrlPublisher(const CrlPublisher&) = delete;
  CrlPublisher& operator=(const CrlPublisher&) = delete;

  // Polls every poll_interval on a thread of its own, until destroyed.
  void Start();

  // One poll: reads the CRL number and rebuilds when it moved, the signing material changed, or
  // the current CRL is half through its validity. Returns whether it built a new CRL; on an error the last CRL stays.
  // Thread-safe (polls are serialized).
  absl::StatusOr<bool> RunOne();

  // The newest CRL (never null after Create). Thread-safe.
  std::shared_ptr<const PublishedCrl> current() const;

 private:
  CrlPublisher(std::shared_ptr<const AuthoritySource> authorities, RevocationStore& store, const Clock& clock,
               MetricsRegistry& metrics, LoggerPtr logger, CrlPublisherOptions options);
  absl::Status Build() ABSL_EXCLUSIVE_LOCKS_REQUIRED(poll_mu_);
  void Loop();

  const std::shared_ptr<const AuthoritySource> authorities_;
  RevocationStore& store_;
  const Clock& clock_;
  const LoggerPtr logger_;
  const CrlPublisherOptions options_;
  Gauge& number_gauge_;
  Gauge& entries_gauge_;
  Gauge& this_update_gauge_;
  Counter& builds_;
  Counter& errors_;
  absl::Mutex poll_mu_;  // serializes RunOne
  std::string last_error_ ABSL_GUARDED_BY(poll_mu_);
  uint64_t built_generation_ ABSL_GUARDED_BY(poll_mu_) = 0;  // AuthoritySnapshot::generation of current_
  mutable absl::Mutex mu_;
  std::shared_ptr<const PublishedCrl> current_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace meshid
