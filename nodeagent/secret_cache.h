// The node agent's secret cache: one private key and certificate per workload identity, kept
// only in memory, renewed before expiry, and published to SDS streams ("default" and
// "ROOTCA"). It is the xds::ResourceProvider behind the agent's SDS server.
//
// Identities. A stream without a token gets the agent's own identity (its token comes from a
// TokenSource, read before every CA call). A stream presenting `authorization: Bearer <jwt>`
// gets that workload's identity: the token is sent to the CA once, and the SPIFFE ID in the
// issued certificate (never a claim read from the token) names the identity. Streams whose
// tokens map to the same SPIFFE ID share one cached secret. A token the CA has accepted is
// remembered (by its SHA-256) until the token's own expiry. A minted identity
// (SubscribeMinted) is a workload on this node that the agent asks for with its own token and
// ImpersonatedIdentity; the certificate must name exactly that identity. Minted identities are
// cached apart from token identities, even for the same SPIFFE ID.
//
// Rotation. A certificate is renewed when `grace_ratio` (± jitter) of its lifetime remains.
// When the CA fails, renewal is retried with exponential backoff and jitter while the cached
// certificate keeps being served; once it has expired, streams watching it get an error
// instead. Identities no stream watches are dropped at their renewal time (the agent's own is
// kept and renewed).
//
// Revocation. ROOTCA also carries the CRL the agent received from its server (SetCrl), for
// Envoy's CertificateValidationContext.crl; a cached certificate the CRL lists is replaced at
// once.
//
// Trust bundle. ROOTCA holds the CA's latest trust bundle, the roots that anchor every cached
// certificate, and any extra anchors. When a certificate arrives whose root is not yet in the
// bundle every ROOTCA stream has applied, the new ROOTCA is pushed first and the certificate is
// held back until every such stream has ACKed (or NACKed, or left) that version, or until
// `root_push_timeout` has passed.
//
// Work. The cache never starts threads. RunOne() performs one piece of due work (at the
// clock's now) on the calling thread, including the CA call; the agent calls it from a few
// worker threads (CacheWorkers below) and tests call it with a FakeClock.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/crl.h"
#include "common/keys.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/random.h"
#include "nodeagent/ca_client.h"
#include "nodeagent/token_source.h"
#include "xds/provider.h"

namespace meshid {

struct SecretCacheOptions {
  KeyAlgorithm key_algorithm = KeyAlgorithm::kEcdsaP256;
  // SECRET_TTL, sent as validity_duration. Zero asks for none: the CA's default lifetime (meshid
  // server: 1 h), so short-lived certificates are the default end to end. Rotation follows the
  // lifetime the certificate got, not this value.
  absl::Duration secret_ttl = absl::ZeroDuration();
  double grace_ratio = 0.5;          // SECRET_GRACE_PERIOD_RATIO
  double grace_ratio_jitter = 0.01;  // SECRET_GRACE_PERIOD_RATIO_JITTER
  absl::Duration initial_backoff = absl::Milliseconds(500);
  absl::Duration max_backoff = absl::Seconds(60);
  absl::Duration root_push_timeout = absl::Seconds(10);
};

// Checks ranges; every problem is reported, prefixed with its option name.
absl::Status ValidateSecretCacheOptions(const SecretCacheOptions& options);

struct SecretCacheStats {
  size_t identities = 0;  // cached certificates
  std::optional<absl::Time> earliest_expiry;
  bool agent_identity_ready = false;  // the agent's own certificate is valid now
};

class SecretCache final : public xds::ResourceProvider {
 public:
  // Certificates come from `ca`; the agent's own identity presents `agent_token`. `clock` is
  // the cache's only "now" (expiry, renewal, backoff), `random` spreads renewals and retries.
  // The cache's metrics (meshid_agent_*) are registered in `metrics`; `logger` is not null.
  // Every reference must outlive the cache. InvalidArgument (naming the option) for options
  // out of range.
  static absl::StatusOr<std::unique_ptr<SecretCache>> Create(const SecretCacheOptions& options, CaClient& ca,
                                                             TokenSource& agent_token, const Clock& clock,
                                                             RandomSource& random, MetricsRegistry& metrics,
                                                             LoggerPtr logger);
  ~SecretCache() override;

  // xds::ResourceProvider: the caller's bearer token names the identity ("": the agent's own).
  absl::StatusOr<std::unique_ptr<xds::Subscription>> Subscribe(const xds::StreamCaller& caller,
                                                               std::shared_ptr<xds::ResourceWatcher> watcher) override;
  absl::StatusOr<std::unique_ptr<xds::Subscription>> Subscribe(absl::string_view bearer_token,
                                                               std::shared_ptr<xds::ResourceWatcher> watcher);
  // The certificate of `spiffe_id` minted for a workload on this node (names as for any
  // subscription: "default", "ROOTCA"). A refusal by the CA is published as the error of
  // "default" and retried with backoff, since an entry may reach the server after the agent.
  absl::StatusOr<std::unique_ptr<xds::Subscription>> SubscribeMinted(absl::string_view spiffe_id,
                                                                     std::shared_ptr<xds::ResourceWatcher> watcher);
  bool IsKnownName(absl::string_view name) const override;

  // Performs one piece of work that is due at the clock's now (a CSR, an expiry, a held-back
  // certificate's release). Returns false when nothing is due.
  bool RunOne();
  // The earliest time at which RunOne() will have something to do (nullopt: nothing scheduled).
  std::optional<absl::Time> NextDueTime() const;
  // Blocks the caller (in real time) until work was scheduled or `max_wait` passed.
  void WaitForWork(absl::Duration max_wait);
  // Wakes every WaitForWork caller (used at shutdown).
  void WakeAll();

  // Extra trust anchors ROOTCA always carries (PEM bundle; empty clears them).
  absl::Status SetExtraTrustAnchors(absl::string_view pem_bundle);
  // The CA's trust bundle as its server pushed it (trustbundle/receiver.h; checked there),
  // replacing the one the last certificate response carried, as a newer answer would: during a
  // CA rotation ROOTCA gains the new root before any certificate under it, and loses the old
  // one when the rotation retires it. InvalidArgument for a bundle without CA certificates.
  absl::Status SetCaTrustBundle(absl::string_view pem_bundle);

  // The CRL ROOTCA carries from now on (PEM, checked by the caller; "" removes it), pushed to
  // every ROOTCA stream. Every cached certificate `index` revokes is renewed at once (new key,
  // new certificate); until the CA answers, the revoked one is still served (peers refuse it
  // either way). Thread-safe; delivers on the calling thread.
  void SetCrl(std::string crl_pem, std::shared_ptr<const RevocationIndex> index);
  // The cRLNumber carried by the ROOTCA resource of `version` (one of the last 64 published);
  // 0 for one without a CRL or not known. Thread-safe.
  int64_t CrlNumberOfRootVersion(absl::string_view version) const;
  // The roots carried by the ROOTCA resource of `version` (one of the last 64 published), as
  // RootSetFingerprint (common/fingerprint.h) gives them; "" when not known. Thread-safe.
  std::string TrustBundleOfRootVersion(absl::string_view version) const;
  // The same for the ROOTCA in force ("" before the first). Thread-safe.
  std::string TrustBundle() const;

  SecretCacheStats Stats() const;
  // The SPIFFE ID of the agent's own certificate; "" before the first one. Thread-safe.
  std::string AgentSpiffeId() const;

  class Impl;

 private:
  explicit SecretCache(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Worker threads that drive a SecretCache in real time: each waits for due work and runs it.
// Several workers let one slow CA call not delay the others (1,000 identities at start-up).
class CacheWorkers {
 public:
  CacheWorkers(SecretCache& cache, int threads);
  ~CacheWorkers();  // stops and joins

 private:
  void Loop();
  SecretCache& cache_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace meshid
