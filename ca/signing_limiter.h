// Limits on certificate signing, so that one caller looping on CreateCertificate cannot take the
// CA from the others: a token bucket per authenticated caller, and a cap on the signings in
// progress at once across all callers.
//
// The bucket is keyed by the SPIFFE ID the caller authenticated as, never by what its CSR or
// its ImpersonatedIdentity metadata asks for: a node agent minting certificates for the
// workloads of its node spends its own bucket, so it cannot get more by naming more workloads.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/metrics.h"

namespace meshid {

struct SigningLimits {
  // Certificates per second added to each caller's bucket. 0: no per-caller limit.
  double rate_per_caller = 0;
  // The size of each caller's bucket: how many certificates a caller that has been idle may get
  // at once. Used only with a rate; below 1 counts as 1.
  double burst_per_caller = 0;
  // Signings in progress at once, over all callers, from admission to the signed certificate
  // (the wait for the ledger's commit is not counted). 0: no cap.
  int max_concurrent = 0;
  // Most callers whose buckets are kept in memory (below 1 counts as 1); see SigningLimiter.
  size_t max_tracked_callers = 100000;
};

// The type URL under which a refusal carries its retry delay: an absl::Status payload holding
// a serialized google.rpc.RetryInfo (api/google/rpc/error_details.proto). The gRPC edge
// (CertificateService) sends it to the client in the status details.
inline constexpr char kRetryInfoTypeUrl[] = "type.googleapis.com/google.rpc.RetryInfo";

// The retry delay `status` carries (kRetryInfoTypeUrl), or nullopt if it carries none or the
// payload does not parse.
std::optional<absl::Duration> RetryDelayOf(const absl::Status& status);

// The label values of meshid_ca_rate_limited_total{reason}.
inline constexpr char kRateLimitedCallerRate[] = "caller_rate";
inline constexpr char kRateLimitedConcurrency[] = "concurrency";

// Admits signings under SigningLimits. It starts no threads and has no timers: buckets refill
// from the clock's now when they are next used. Thread-safe: every method may be called from
// any thread.
//
// Buckets: a caller's bucket starts full (burst_per_caller) and gains rate_per_caller tokens a
// second up to that size; each admitted signing takes one token. A bucket that has refilled to
// full is the same as no bucket, so it is dropped when room is needed. At most
// max_tracked_callers buckets are kept: when a new caller would exceed that, the full buckets
// are dropped and, if less than an eighth of the places is then free, the buckets nearest to
// full as well until an eighth is (those callers start again with a full bucket: the bound on
// memory wins over exactness, which is lost only while more callers than that are busy within
// burst/rate seconds of each other). A clock that steps backwards refills nothing and starves
// no one.
class SigningLimiter {
 public:
  // One admitted signing. While it is held it occupies one of max_concurrent slots; it frees the
  // slot when released or destroyed. Move-only; not thread-safe itself (one owner at a time).
  class Permit {
   public:
    Permit() = default;  // holds no slot
    Permit(Permit&& other) noexcept : limiter_(other.limiter_) { other.limiter_ = nullptr; }
    Permit& operator=(Permit&& other) noexcept;
    Permit(const Permit&) = delete;
    Permit& operator=(const Permit&) = delete;
    ~Permit() { Release(); }

    // Frees the slot now; later calls do nothing.
    void Release();

   private:
    friend class SigningLimiter;
    explicit Permit(SigningLimiter* limiter) : limiter_(limiter) {}
    SigningLimiter* limiter_ = nullptr;  // null: no slot held
  };

  // `limits` should have passed the server's flag checks (CaServerConfig::Validate): a
  // negative or not-a-number rate or cap counts as 0 (no limit). `clock` and `metrics` must
  // outlive the limiter, and the limiter every Permit it handed out. Registers
  // meshid_ca_rate_limited_total{reason} in `metrics`.
  SigningLimiter(const SigningLimits& limits, const Clock& clock, MetricsRegistry& metrics);
  SigningLimiter(const SigningLimiter&) = delete;
  SigningLimiter& operator=(const SigningLimiter&) = delete;

  // Admits one signing for `caller`, the SPIFFE ID the caller authenticated as. Returns a Permit
  // to hold until the certificate is signed, or ResourceExhausted, which took nothing (no token,
  // no slot): the caller's bucket has less than one token (reason caller_rate; the delay is when
  // it will have one), or max_concurrent signings are in progress (reason concurrency; the delay
  // is kConcurrencyRetryDelay, an estimate). The message ends "retry after N ms" and the status
  // carries the same delay as a RetryInfo payload (RetryDelayOf). Counts each refusal in
  // meshid_ca_rate_limited_total{reason}.
  absl::StatusOr<Permit> Admit(const std::string& caller);

  // How long a caller refused for concurrency is told to wait: signings take well under a
  // millisecond each, so slots free quickly, but a CA at its cap is saturated and should not be
  // asked again at once.
  static constexpr absl::Duration kConcurrencyRetryDelay = absl::Milliseconds(20);

  // Buckets kept now, and slots held now (for tests and metrics).
  size_t tracked_callers() const;
  int in_flight() const;

 private:
  // A bucket kept as the time it will be full again (the generic cell rate algorithm): a
  // signing moves it one interval later, and it may run at most a burst of intervals ahead of
  // now. Durations are exact integers, so a caller told "retry after N ms" is admitted then.
  struct Bucket {
    absl::Time full_at;  // at or before now: the bucket is full
    absl::Time seen;     // the clock's now when last used, to notice it stepping back
  };

  // Makes room for one more bucket (see the class comment).
  void MakeRoomLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReleaseSlot();

  const double rate_;                // 0: no buckets
  const double burst_;               // >= 1
  const absl::Duration interval_;    // 1 / rate_: one token's worth of time
  const absl::Duration burst_time_;  // burst_ tokens' worth
  const int max_concurrent_;
  const size_t max_tracked_callers_;
  const Clock& clock_;
  Counter& refused_caller_rate_;
  Counter& refused_concurrency_;
  mutable absl::Mutex mu_;
  std::unordered_map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace meshid
