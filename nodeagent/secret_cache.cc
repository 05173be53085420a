#include "nodeagent/secret_cache.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <deque>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/backoff.h"
#include "common/csr.h"
#include "common/fingerprint.h"
#include "common/jwt.h"
#include "common/sha256.h"
#include "common/spiffe_id.h"
#include "common/status_macros.h"
#include "common/x509.h"
#include "nodeagent/rotation.h"
#include "sds/resource.h"

namespace meshid {
namespace {

// RootSetFingerprint of PEM certificates.
std::string RootSetFingerprintOfPems(const std::vector<std::string>& pems) {
  std::vector<std::string> ders;
  for (const std::string& pem : pems) {
    auto certs = CertsFromPem(pem);
    if (!certs.ok()) continue;
    for (const auto& cert : *certs) ders.push_back(CertToDer(cert.get()));
  }
  return RootSetFingerprint(ders);
}

using xds::ResourcePtr;
using xds::ResourceUpdate;
using xds::ResourceWatcher;

constexpr absl::string_view kDefault = sds::kWorkloadResourceName;
constexpr absl::string_view kRoot = sds::kRootResourceName;

std::string Rfc3339(absl::Time t) { return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone()); }

// A certificate the CA issued, checked and packaged, not yet installed.
struct Issued {
  xds::ResourcePtr resource;
  X509Ptr leaf;  // for the revocation check
  std::string spiffe_id;
  std::string serial;
  absl::Time not_after;
  std::string anchor;               // PEM of the root the chain validates to
  std::vector<std::string> bundle;  // the CA's trust bundle, one PEM per root
};

// Checks the CA's answer against the key we generated and packages it. `chain` is leaf first,
// then intermediates, then the trust bundle: istiod sends every root in the last element,
// meshid server one root per element, so the elements at the end that hold only self-signed
// CAs all belong to the bundle.
absl::StatusOr<Issued> PackageIssued(const std::vector<std::string>& chain, EVP_PKEY* key, const SecretString& key_pem,
                                     absl::Time now, uint64_t generation) {
  if (chain.size() < 2) {
    return absl::InternalError(
        absl::StrCat("the CA returned ", chain.size(), " certificate(s); expected the leaf and the trust bundle"));
  }
  std::vector<std::vector<X509Ptr>> elements;
  for (size_t i = 0; i < chain.size(); ++i) {
    const std::string what = i + 1 < chain.size() ? absl::StrCat("cert_chain[", i, "]") : "the CA's trust bundle";
    MESHID_ASSIGN_OR_RETURN(auto certs, CertsFromPem(chain[i], what));
    elements.push_back(std::move(certs));
  }
  auto only_roots = [](const std::vector<X509Ptr>& certs) {
    return std::all_of(certs.begin(), certs.end(),
                       [](const X509Ptr& c) { return IsCa(c.get()) && IsSelfSigned(c.get()); });
  };
  size_t bundle_start = chain.size() - 1;
  while (bundle_start > 1 && only_roots(elements[bundle_start - 1])) --bundle_start;
  std::vector<X509Ptr> path, roots;
  for (size_t i = 0; i < elements.size(); ++i) {
    for (auto& cert : elements[i]) (i < bundle_start ? path : roots).push_back(std::move(cert));
  }
  X509* leaf = path.front().get();
  EVP_PKEY* leaf_key = X509_get0_pubkey(leaf);
  if (leaf_key == nullptr || !SamePublicKey(leaf_key, key)) {
    return absl::InternalError("the CA returned a certificate for a different public key than the CSR's");
  }
  const auto uris = UriSans(leaf);
  if (uris.size() != 1) {
    return absl::InternalError(
        absl::StrCat("the CA returned a certificate with ", uris.size(), " URI SANs; an X.509-SVID has exactly one"));
  }
  MESHID_ASSIGN_OR_RETURN(auto spiffe_id, SpiffeId::Parse(uris[0]));

  std::vector<X509*> intermediates;
  for (size_t i = 1; i < path.size(); ++i) intermediates.push_back(path[i].get());
  Issued issued;
  absl::Status last = absl::NotFoundError("empty trust bundle");
  for (const auto& root : roots) {
    last = VerifyCertChain(leaf, intermediates, {root.get()}, now);
    if (last.ok()) {
      issued.anchor = CertToPem(root.get());
      break;
    }
  }
  if (issued.anchor.empty()) {
    return absl::InternalError(
        absl::StrCat("the CA's certificate does not validate against its own trust bundle: ", last.message()));
  }
  // What a TLS peer needs: the leaf and its intermediates, without self-signed roots.
  std::string chain_pem = CertToPem(leaf);
  for (X509* cert : intermediates) {
    if (!IsSelfSigned(cert)) chain_pem += CertToPem(cert);
  }
  MESHID_ASSIGN_OR_RETURN(issued.resource,
                          sds::MakeTlsCertificateResource(kDefault, chain_pem, key_pem.view(), generation));
  issued.spiffe_id = spiffe_id.ToString();
  issued.serial = SerialHex(leaf);
  issued.not_after = NotAfter(leaf);
  issued.leaf = std::move(path.front());
  for (const auto& root : roots) issued.bundle.push_back(CertToPem(root.get()));
  return issued;
}

bool IsTokenRejection(absl::StatusCode code) {
  return code == absl::StatusCode::kUnauthenticated || code == absl::StatusCode::kPermissionDenied ||
         code == absl::StatusCode::kInvalidArgument;
}

}  // namespace

absl::Status ValidateSecretCacheOptions(const SecretCacheOptions& o) {
  std::vector<std::string> problems;
  if (o.secret_ttl != absl::ZeroDuration() && o.secret_ttl < absl::Seconds(1)) {
    problems.push_back("secret-ttl: must be 0 (the CA's default) or at least 1s");
  }
  if (!(o.grace_ratio > 0 && o.grace_ratio < 1)) problems.push_back("grace-ratio: must be between 0 and 1 (exclusive)");
  if (!(o.grace_ratio_jitter >= 0 && o.grace_ratio_jitter < 0.5)) {
    problems.push_back("grace-ratio-jitter: must be in [0, 0.5)");
  }
  if (o.initial_backoff <= absl::ZeroDuration()) problems.push_back("initial-backoff: must be positive");
  if (o.max_backoff < o.initial_backoff) problems.push_back("max-backoff: must not be below initial-backoff");
  if (o.root_push_timeout < absl::ZeroDuration()) problems.push_back("root-push-timeout: must not be negative");
  if (problems.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrJoin(problems, "; "));
}

class SubscriptionImpl;
using Notes = std::vector<std::pair<std::shared_ptr<xds::ResourceWatcher>, xds::ResourceUpdate>>;

struct Entry {
  uint64_t id = 0;
  bool is_agent = false;
  std::string minted_for;  // a workload identity asked for with ImpersonatedIdentity
  std::string spiffe_id;   // empty until the first certificate
  // Workload identities: the newest token the CA accepted (or, before that, the one to try).
  SecretString token;
  absl::Time token_expiry = absl::InfiniteFuture();
  std::set<std::string> token_hashes;

  xds::ResourcePtr resource;  // the certificate being served
  X509Ptr leaf;               // its leaf certificate
  absl::Time created;
  absl::Time not_after;
  std::string anchor;
  std::string serial;
  std::optional<Issued> held;  // waits for ROOTCA to reach every stream

  absl::Time next_attempt = absl::InfinitePast();
  absl::Time last_attempt = absl::InfinitePast();
  std::optional<absl::Time> scheduled_at;
  bool in_flight = false;
  int failures = 0;
  absl::Status last_error;
  bool expired_published = false;
  bool failure_published = false;  // no certificate yet and the last attempt failed
  std::set<SubscriptionImpl*> watchers;

  std::string Who() const {
    if (!spiffe_id.empty()) return spiffe_id;
    if (!minted_for.empty()) return minted_for;
    return is_agent ? "the agent's identity" : "a workload token";
  }
};

// Set by Impl's constructor, never null afterwards.
struct CacheMetrics {
  Counter* csr_requests = nullptr;
  Counter* rotations = nullptr;
  Counter* bundle_updates = nullptr;
  Counter* revoked_replaced = nullptr;
};

// What SecretCache::Create received.
struct Collaborators {
  const Clock& clock;
  RandomSource& random;
  CaClient& ca;
  TokenSource& agent_token;
  MetricsRegistry& metrics;
  LoggerPtr logger;  // never null
};

class SecretCache::Impl {
 public:
  // Schedules the agent's own certificate at once and registers the metrics.
  Impl(const SecretCacheOptions& options, Collaborators deps) : options_(options), deps_(std::move(deps)) {
    {
      absl::MutexLock lock(&mu_);
      auto entry = std::make_unique<Entry>();
      entry->id = next_entry_id_++;
      entry->is_agent = true;
      entry->next_attempt = deps_.clock.Now();
      agent_entry_ = entry->id;
      Entry& e = *entry;
      entries_[e.id] = std::move(entry);
      RescheduleLocked(e);  // warm the agent's own certificate right away
    }
    // Outside the cache lock: a scrape holds the registry's lock while it asks the cache.
    MetricsRegistry& m = deps_.metrics;
    metrics_.csr_requests =
        &m.AddCounter("meshid_agent_csr_requests_total", "Certificate signing requests sent to the CA.");
    metrics_.rotations =
        &m.AddCounter("meshid_agent_certificate_rotations_total", "Cached certificates replaced by renewed ones.");
    metrics_.bundle_updates =
        &m.AddCounter("meshid_agent_trust_bundle_updates_total", "New ROOTCA trust bundle versions published.");
    metrics_.revoked_replaced = &m.AddCounter("meshid_agent_revoked_certificates_total",
                                              "Served certificates found in a new CRL and replaced at once.");
    m.AddComputedGauge("meshid_agent_cached_secrets", "Workload certificates (with their keys) held in memory.",
                       [this] { return static_cast<double>(Stats().identities); });
    m.AddComputedGauge("meshid_agent_cert_expiry_seconds",
                       "Seconds until the earliest cached certificate expires (negative once expired; NaN if none).",
                       [this] {
                         auto stats = Stats();
                         if (!stats.earliest_expiry) return std::numeric_limits<double>::quiet_NaN();
                         return absl::ToDoubleSeconds(*stats.earliest_expiry - deps_.clock.Now());
                       });
  }

  ~Impl() {
    absl::MutexLock lock(&mu_);
    entries_.clear();
  }

  // --- subscriptions (called through SubscriptionImpl) ---
  absl::StatusOr<std::unique_ptr<xds::Subscription>> Subscribe(absl::string_view token,
                                                               std::shared_ptr<xds::ResourceWatcher> watcher);
  absl::StatusOr<std::unique_ptr<xds::Subscription>> SubscribeMinted(absl::string_view spiffe_id,
                                                                     std::shared_ptr<xds::ResourceWatcher> watcher);
  absl::StatusOr<std::vector<xds::ResourceUpdate>> SetNames(SubscriptionImpl* sub, const std::set<std::string>& names);
  void ReportApplied(SubscriptionImpl* sub, absl::string_view name, absl::string_view version, bool accepted);
  void Unsubscribe(SubscriptionImpl* sub);
  std::string Describe(const SubscriptionImpl* sub) const;

  // --- work ---
  bool RunOne();
  std::optional<absl::Time> NextDueTime() const {
    absl::MutexLock lock(&mu_);
    return NextDueLocked();
  }
  void WaitForWork(absl::Duration max_wait) {
    absl::MutexLock lock(&mu_);
    const uint64_t epoch = wake_epoch_;
    if (auto due = NextDueLocked(); due.has_value()) {
      const absl::Duration until = *due - deps_.clock.Now();
      if (until <= absl::ZeroDuration()) return;
      max_wait = std::min(max_wait, until);
    }
    const absl::Time deadline = absl::Now() + max_wait;
    while (wake_epoch_ == epoch) {
      if (work_cv_.WaitWithDeadline(&mu_, deadline)) break;
    }
  }
  void WakeAll() {
    absl::MutexLock lock(&mu_);
    ++wake_epoch_;
    work_cv_.SignalAll();
  }

  absl::Status SetExtraTrustAnchors(absl::string_view pem_bundle);
  void SetCrl(std::string crl_pem, std::shared_ptr<const RevocationIndex> index);
  absl::Status SetCaTrustBundle(absl::string_view pem_bundle);
  int64_t CrlNumberOfRootVersion(absl::string_view version) const {
    absl::MutexLock lock(&mu_);
    for (const RootVersion& v : root_versions_) {
      if (v.version == version) return v.crl_number;
    }
    return 0;
  }
  std::string TrustBundleOfRootVersion(absl::string_view version) const {
    absl::MutexLock lock(&mu_);
    for (const RootVersion& v : root_versions_) {
      if (v.version == version) return v.trust_bundle;
    }
    return "";
  }
  std::string TrustBundle() const {
    absl::MutexLock lock(&mu_);
    return root_versions_.empty() ? "" : root_versions_.back().trust_bundle;
  }
  SecretCacheStats Stats() const;
  std::string AgentSpiffeId() const {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(agent_entry_);
    return it == entries_.end() ? "" : it->second->spiffe_id;
  }

 private:
  friend class SubscriptionImpl;

  std::optional<absl::Time> NextDueLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::optional<absl::Time> due;
    if (!schedule_.empty()) due = schedule_.begin()->first;
    if (root_deadline_.has_value() && (!due || *root_deadline_ < *due)) due = root_deadline_;
    return due;
  }

  void RescheduleLocked(Entry& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (e.scheduled_at.has_value()) schedule_.erase({*e.scheduled_at, e.id});
    e.scheduled_at.reset();
    if (e.in_flight) return;
    absl::Time due = e.next_attempt;
    if (e.resource != nullptr && !e.expired_published) due = std::min(due, e.not_after);
    if (due == absl::InfiniteFuture()) return;
    const bool earliest = schedule_.empty() || due < schedule_.begin()->first;
    schedule_.insert({due, e.id});
    e.scheduled_at = due;
    if (earliest) {
      ++wake_epoch_;
      work_cv_.SignalAll();
    }
  }

  Entry* FindLocked(uint64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = entries_.find(id);
    return it == entries_.end() ? nullptr : it->second.get();
  }

  void AttachLocked(SubscriptionImpl* sub, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A new stream wants an identity that has no valid certificate because the CA failed: retry
  // now (as istio-agent does for every new stream) unless an attempt is running or the last one
  // was less than initial_backoff ago. True if the stream should wait for that attempt.
  bool RetryForNewStreamLocked(Entry& e, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (e.in_flight) return true;
    if (now - e.last_attempt < options_.initial_backoff) return false;
    e.next_attempt = now;
    RescheduleLocked(e);
    return true;
  }
  void DetachLocked(SubscriptionImpl* sub) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::optional<xds::ResourceUpdate> CurrentDefaultLocked(const Entry& e, absl::Time now) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::optional<absl::Status> RootErrorLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PublishDefaultLocked(const Entry& e, const xds::ResourceUpdate& update, Notes& notes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnIssuedLocked(Entry& e, Issued issued, Notes& notes, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnFailureLocked(Entry& e, const absl::Status& status, Notes& notes, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void InstallLocked(Entry& e, Notes& notes, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MergeLocked(Entry& from, Entry& into) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DropLocked(Entry& e, Notes& notes, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AddAnchorLocked(const std::string& anchor) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!anchor.empty()) ++anchor_refs_[anchor];
  }
  void RemoveAnchorLocked(const std::string& anchor) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = anchor_refs_.find(anchor);
    if (it != anchor_refs_.end() && --it->second == 0) anchor_refs_.erase(it);
  }
  // Rebuilds ROOTCA when the roots changed (or, with `crl_changed`, when the CRL did) and
  // pushes it to every ROOTCA stream; only new roots hold certificates back.
  void RecomputeRootsLocked(Notes& notes, absl::Time now, bool crl_changed = false) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReleaseHeldLocked(Notes& notes, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RootBarrierPassedLocked(Notes& notes, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Every stream has applied the current ROOTCA: let RunOne() release the held certificates.
  // (Subscription calls never deliver updates themselves: their caller holds a stream lock.)
  void BarrierDueLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    root_deadline_ = now;
    ++wake_epoch_;
    work_cv_.SignalAll();
  }

  // `minted_for`: ask with the agent's token for that workload identity.
  absl::StatusOr<Issued> Issue(bool is_agent, const SecretString& workload_token, const std::string& minted_for);

  static void Deliver(Notes& notes) {
    for (auto& [watcher, update] : notes) watcher->OnUpdate(update);
    notes.clear();
  }

  const SecretCacheOptions options_;
  const Collaborators deps_;
  CacheMetrics metrics_;
  std::atomic<uint64_t> next_generation_{1};

  mutable absl::Mutex mu_;
  absl::CondVar work_cv_;
  uint64_t wake_epoch_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_entry_id_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t agent_entry_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<uint64_t, std::unique_ptr<Entry>> entries_ ABSL_GUARDED_BY(mu_);
  struct TokenRef {
    uint64_t entry = 0;
    absl::Time expiry;
  };
  std::map<std::string, TokenRef> by_token_hash_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, uint64_t> by_spiffe_ ABSL_GUARDED_BY(mu_);  // token and agent identities
  std::map<std::string, uint64_t> by_minted_ ABSL_GUARDED_BY(mu_);
  std::set<std::pair<absl::Time, uint64_t>> schedule_ ABSL_GUARDED_BY(mu_);

  // Trust bundle.
  std::vector<std::string> extra_anchors_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> ca_bundle_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> anchor_refs_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> roots_ ABSL_GUARDED_BY(mu_);
  xds::ResourcePtr root_resource_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> acked_roots_ ABSL_GUARDED_BY(mu_);
  std::set<SubscriptionImpl*> root_watchers_ ABSL_GUARDED_BY(mu_);
  std::set<SubscriptionImpl*> root_waiting_ ABSL_GUARDED_BY(mu_);
  std::optional<absl::Time> root_deadline_ ABSL_GUARDED_BY(mu_);
  // The CRL ROOTCA carries ("" none) and its index, to find served certificates it revokes.
  std::string crl_pem_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const RevocationIndex> crl_index_ ABSL_GUARDED_BY(mu_);
  // What the last 64 ROOTCA resources carried, newest last.
  struct RootVersion {
    std::string version;
    int64_t crl_number = 0;    // 0: no CRL
    std::string trust_bundle;  // RootSetFingerprint of its roots
  };
  std::deque<RootVersion> root_versions_ ABSL_GUARDED_BY(mu_);
};

class SubscriptionImpl final : public xds::Subscription {
 public:
  SubscriptionImpl(SecretCache::Impl* impl, std::shared_ptr<xds::ResourceWatcher> watcher, SecretString token,
                   absl::Time token_expiry, std::string minted_for = "")
      : impl_(impl),
        watcher_(std::move(watcher)),
        token_(std::move(token)),
        token_expiry_(token_expiry),
        minted_for_(std::move(minted_for)) {
    if (!token_.empty()) token_hash_ = Sha256Hex(token_.view());
  }
  ~SubscriptionImpl() override { impl_->Unsubscribe(this); }

  absl::StatusOr<std::vector<xds::ResourceUpdate>> SetNames(const std::set<std::string>& names) override {
    return impl_->SetNames(this, names);
  }
  void ReportApplied(absl::string_view name, absl::string_view version, bool accepted) override {
    impl_->ReportApplied(this, name, version, accepted);
  }
  std::string Describe() const override { return impl_->Describe(this); }

  SecretCache::Impl* const impl_;
  const std::shared_ptr<xds::ResourceWatcher> watcher_;
  const SecretString token_;
  const absl::Time token_expiry_;
  const std::string minted_for_;
  std::string token_hash_;
  // Guarded by impl_->mu_.
  std::set<std::string> names_;
  uint64_t entry_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Subscriptions

absl::StatusOr<std::unique_ptr<xds::Subscription>> SecretCache::Impl::Subscribe(
    absl::string_view token, std::shared_ptr<xds::ResourceWatcher> watcher) {
  absl::Time expiry = absl::InfiniteFuture();
  if (!token.empty()) {
    // Decoded only for its expiry (how long the CA's acceptance may be reused); the CA verifies.
    if (auto jwt = DecodeJwt(token); jwt.ok()) {
      auto exp = jwt->payload.find("exp");
      if (exp != jwt->payload.end() && exp->is_number()) expiry = absl::FromUnixSeconds(exp->get<int64_t>());
    }
  }
  return std::unique_ptr<xds::Subscription>(
      std::make_unique<SubscriptionImpl>(this, std::move(watcher), SecretString(std::string(token)), expiry));
}

absl::StatusOr<std::unique_ptr<xds::Subscription>> SecretCache::Impl::SubscribeMinted(
    absl::string_view spiffe_id, std::shared_ptr<xds::ResourceWatcher> watcher) {
  MESHID_ASSIGN_OR_RETURN(auto id, SpiffeId::Parse(spiffe_id));
  return std::unique_ptr<xds::Subscription>(std::make_unique<SubscriptionImpl>(this, std::move(watcher), SecretString(),
                                                                               absl::InfiniteFuture(), id.ToString()));
}

absl::StatusOr<std::vector<xds::ResourceUpdate>> SecretCache::Impl::SetNames(SubscriptionImpl* sub,
                                                                             const std::set<std::string>& names) {
  std::vector<std::string> unknown;
  for (const auto& name : names) {
    if (name != kDefault && name != kRoot) unknown.push_back(absl::StrCat("\"", name, "\""));
  }
  if (!unknown.empty()) {
    return absl::NotFoundError(absl::StrCat("no SDS resource named ", absl::StrJoin(unknown, ", "),
                                            "; this agent serves \"default\" (the workload certificate) and "
                                            "\"ROOTCA\" (the trust bundle)"));
  }
  std::vector<xds::ResourceUpdate> current;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = deps_.clock.Now();
    if (names.contains(std::string(kDefault))) {
      if (sub->entry_ == 0) AttachLocked(sub, now);
      if (Entry* e = FindLocked(sub->entry_); e != nullptr) {
        auto update = CurrentDefaultLocked(*e, now);
        if (update.has_value() && (update->error.ok() || !RetryForNewStreamLocked(*e, now))) {
          current.push_back(std::move(*update));
        }
      }
    } else if (sub->entry_ != 0) {
      DetachLocked(sub);
    }
    if (names.contains(std::string(kRoot))) {
      root_watchers_.insert(sub);
      if (root_resource_ != nullptr) {
        current.push_back({std::string(kRoot), root_resource_, absl::OkStatus()});
      } else if (auto error = RootErrorLocked()) {
        Entry* agent = FindLocked(agent_entry_);
        if (agent == nullptr || !RetryForNewStreamLocked(*agent, now))
          current.push_back({std::string(kRoot), nullptr, *error});
      }
    } else {
      root_watchers_.erase(sub);
      if (root_waiting_.erase(sub) > 0 && root_waiting_.empty()) BarrierDueLocked(now);
    }
    sub->names_ = names;
  }
  return current;
}

void SecretCache::Impl::AttachLocked(SubscriptionImpl* sub, absl::Time now) {
  Entry* e = nullptr;
  if (!sub->minted_for_.empty()) {
    auto it = by_minted_.find(sub->minted_for_);
    if (it != by_minted_.end()) {
      e = FindLocked(it->second);
    } else {
      auto entry = std::make_unique<Entry>();
      entry->id = next_entry_id_++;
      entry->minted_for = sub->minted_for_;
      entry->next_attempt = now;
      by_minted_[entry->minted_for] = entry->id;
      e = entry.get();
      entries_[e->id] = std::move(entry);
      RescheduleLocked(*e);
    }
  } else if (sub->token_hash_.empty()) {
    e = FindLocked(agent_entry_);
  } else {
    auto it = by_token_hash_.find(sub->token_hash_);
    if (it != by_token_hash_.end() && it->second.expiry > now) {
      e = FindLocked(it->second.entry);
    } else {
      if (it != by_token_hash_.end()) {
        if (Entry* old = FindLocked(it->second.entry)) old->token_hashes.erase(it->first);
        by_token_hash_.erase(it);
      }
      auto entry = std::make_unique<Entry>();
      entry->id = next_entry_id_++;
      entry->token = sub->token_.Clone();
      entry->token_expiry = sub->token_expiry_;
      entry->token_hashes.insert(sub->token_hash_);
      entry->next_attempt = now;
      by_token_hash_[sub->token_hash_] = {entry->id, sub->token_expiry_};
      e = entry.get();
      entries_[e->id] = std::move(entry);
      RescheduleLocked(*e);
    }
  }
  if (e == nullptr) return;  // cannot happen: the agent entry always exists
  e->watchers.insert(sub);
  sub->entry_ = e->id;
}

void SecretCache::Impl::DetachLocked(SubscriptionImpl* sub) {
  if (Entry* e = FindLocked(sub->entry_)) e->watchers.erase(sub);
  sub->entry_ = 0;
}

std::optional<xds::ResourceUpdate> SecretCache::Impl::CurrentDefaultLocked(const Entry& e, absl::Time now) const {
  if (e.resource != nullptr && now < e.not_after)
    return xds::ResourceUpdate{std::string(kDefault), e.resource, absl::OkStatus()};
  if (e.resource != nullptr) {
    return xds::ResourceUpdate{
        std::string(kDefault), nullptr,
        absl::UnavailableError(absl::StrCat("the certificate of ", e.Who(), " expired at ", Rfc3339(e.not_after),
                                            " and renewing it keeps failing: ", e.last_error.message()))};
  }
  if (e.failure_published) {
    return xds::ResourceUpdate{std::string(kDefault), nullptr,
                               absl::Status(e.last_error.code(), absl::StrCat("cannot obtain a certificate for ",
                                                                              e.Who(), ": ", e.last_error.message()))};
  }
  return std::nullopt;
}

std::optional<absl::Status> SecretCache::Impl::RootErrorLocked() const {
  auto it = entries_.find(agent_entry_);
  if (root_resource_ != nullptr || it == entries_.end() || !it->second->failure_published) return std::nullopt;
  return absl::UnavailableError(
      absl::StrCat("no trust bundle yet: the CA has not answered: ", it->second->last_error.message()));
}

void SecretCache::Impl::PublishDefaultLocked(const Entry& e, const xds::ResourceUpdate& update, Notes& notes) {
  for (SubscriptionImpl* sub : e.watchers) notes.emplace_back(sub->watcher_, update);
}

void SecretCache::Impl::ReportApplied(SubscriptionImpl* sub, absl::string_view name, absl::string_view version,
                                      bool accepted) {
  if (name != kRoot) return;
  absl::MutexLock lock(&mu_);
  if (root_resource_ == nullptr || version != root_resource_->version) return;
  if (!accepted) {
    deps_.logger->warn("a proxy rejected trust bundle version {}; certificates from new roots are not held for it",
                       version);
  }
  if (root_waiting_.erase(sub) > 0 && root_waiting_.empty()) BarrierDueLocked(deps_.clock.Now());
}

void SecretCache::Impl::Unsubscribe(SubscriptionImpl* sub) {
  absl::MutexLock lock(&mu_);
  DetachLocked(sub);
  root_watchers_.erase(sub);
  if (root_waiting_.erase(sub) > 0 && root_waiting_.empty()) BarrierDueLocked(deps_.clock.Now());
}

std::string SecretCache::Impl::Describe(const SubscriptionImpl* sub) const {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(sub->entry_);
  if (it != entries_.end() && !it->second->spiffe_id.empty()) return it->second->spiffe_id;
  if (!sub->minted_for_.empty()) return sub->minted_for_;
  return sub->token_hash_.empty() ? "agent identity" : "workload token";
}

// ---------------------------------------------------------------------------------------------
// Work

bool SecretCache::Impl::RunOne() {
  Notes notes;
  uint64_t job = 0;
  bool is_agent = false;
  SecretString token;
  std::string minted_for;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = deps_.clock.Now();
    if (root_deadline_.has_value() && *root_deadline_ <= now) {
      if (!root_waiting_.empty()) {
        deps_.logger->warn("{} stream(s) did not apply trust bundle version {} within {}; releasing held certificates",
                           root_waiting_.size(), root_resource_ ? root_resource_->version : "",
                           absl::FormatDuration(options_.root_push_timeout));
      }
      root_waiting_.clear();
      RootBarrierPassedLocked(notes, now);
    } else {
      if (schedule_.empty() || schedule_.begin()->first > now) return false;
      Entry& e = *FindLocked(schedule_.begin()->second);
      schedule_.erase(schedule_.begin());
      e.scheduled_at.reset();
      if (e.resource != nullptr && now >= e.not_after && !e.expired_published) {
        e.expired_published = true;
        deps_.logger->error("the certificate of {} expired at {}", e.Who(), Rfc3339(e.not_after));
        if (auto update = CurrentDefaultLocked(e, now)) PublishDefaultLocked(e, *update, notes);
      }
      if (now < e.next_attempt) {
        RescheduleLocked(e);
      } else if (!e.is_agent && e.watchers.empty()) {
        deps_.logger->info("dropping {}: no stream uses it", e.Who());
        DropLocked(e, notes, now);
      } else {
        e.in_flight = true;
        e.last_attempt = now;
        job = e.id;
        is_agent = e.is_agent;
        minted_for = e.minted_for;
        if (!is_agent && minted_for.empty()) token = e.token.Clone();
      }
    }
  }
  Deliver(notes);
  if (job == 0) return true;

  absl::StatusOr<Issued> issued = Issue(is_agent, token, minted_for);
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = deps_.clock.Now();
    Entry* e = FindLocked(job);
    if (e != nullptr) {
      e->in_flight = false;
      if (issued.ok()) {
        OnIssuedLocked(*e, std::move(*issued), notes, now);
      } else {
        OnFailureLocked(*e, issued.status(), notes, now);
      }
    }
  }
  if (!issued.ok()) {
    // Outside the cache lock: a scrape holds the registry's lock while it asks the cache.
    deps_.metrics
        .AddCounter("meshid_agent_csr_failures_total", "Certificate requests that failed, by gRPC status code.",
                    {{"code", absl::StatusCodeToString(issued.status().code())}})
        .Increment();
  }
  Deliver(notes);
  return true;
}

absl::StatusOr<Issued> SecretCache::Impl::Issue(bool is_agent, const SecretString& workload_token,
                                                const std::string& minted_for) {
  SecretString token;
  if (is_agent || !minted_for.empty()) {
    MESHID_ASSIGN_OR_RETURN(token, deps_.agent_token.Token());
  } else {
    token = workload_token.Clone();
  }
  MESHID_ASSIGN_OR_RETURN(auto key, GenerateKey(options_.key_algorithm));
  MESHID_ASSIGN_OR_RETURN(auto key_pem, PrivateKeyToPem(key.get()));
  MESHID_ASSIGN_OR_RETURN(auto csr, BuildCsrPem(key.get()));
  metrics_.csr_requests->Increment();
  MESHID_ASSIGN_OR_RETURN(auto chain, deps_.ca.CreateCertificate(csr, token.view(), options_.secret_ttl, minted_for));
  MESHID_ASSIGN_OR_RETURN(Issued issued,
                          PackageIssued(chain, key.get(), key_pem, deps_.clock.Now(), next_generation_.fetch_add(1)));
  if (!minted_for.empty() && issued.spiffe_id != minted_for) {
    return absl::InternalError(
        absl::StrCat("asked the CA for ", minted_for, " but it returned a certificate for ", issued.spiffe_id));
  }
  return issued;
}

void SecretCache::Impl::OnIssuedLocked(Entry& entry, Issued issued, Notes& notes, absl::Time now) {
  Entry* e = &entry;
  auto existing = e->minted_for.empty() ? by_spiffe_.find(issued.spiffe_id) : by_spiffe_.end();
  if (existing != by_spiffe_.end() && existing->second != e->id) {
    Entry* into = FindLocked(existing->second);
    if (into != nullptr) {
      MergeLocked(*e, *into);
      e = into;
    }
  }
  if (e->spiffe_id != issued.spiffe_id) {
    if (!e->spiffe_id.empty() && e->minted_for.empty()) by_spiffe_.erase(e->spiffe_id);
    e->spiffe_id = issued.spiffe_id;
  }
  if (e->minted_for.empty()) by_spiffe_[e->spiffe_id] = e->id;
  e->failures = 0;
  e->last_error = absl::OkStatus();
  e->failure_published = false;
  ca_bundle_ = issued.bundle;
  if (e->held.has_value()) RemoveAnchorLocked(e->held->anchor);
  AddAnchorLocked(issued.anchor);
  const std::string anchor = issued.anchor;
  e->held = std::move(issued);
  RecomputeRootsLocked(notes, now);
  if (acked_roots_.contains(anchor)) {
    InstallLocked(*e, notes, now);
  } else {
    deps_.logger->info("holding the new certificate of {} until every ROOTCA stream has applied trust bundle {}",
                       e->Who(), root_resource_ ? root_resource_->version : "");
    e->next_attempt = absl::InfiniteFuture();  // set when the certificate is installed
    RescheduleLocked(*e);
  }
}

void SecretCache::Impl::InstallLocked(Entry& e, Notes& notes, absl::Time now) {
  Issued issued = std::move(*e.held);
  e.held.reset();
  const bool rotation = e.resource != nullptr;
  if (rotation) RemoveAnchorLocked(e.anchor);
  e.resource = std::move(issued.resource);
  e.leaf = std::move(issued.leaf);
  e.created = now;
  e.not_after = issued.not_after;
  e.anchor = std::move(issued.anchor);  // its reference moves from `held` to the installed cert
  e.serial = std::move(issued.serial);
  e.expired_published = false;
  e.next_attempt = RotationTime(now, e.not_after, options_.grace_ratio, options_.grace_ratio_jitter, deps_.random);
  RescheduleLocked(e);
  if (rotation) metrics_.rotations->Increment();
  deps_.logger->info("certificate for {} (serial {}) valid until {}, renewal at {}, {} stream(s)", e.spiffe_id,
                     e.serial, Rfc3339(e.not_after), Rfc3339(e.next_attempt), e.watchers.size());
  PublishDefaultLocked(e, xds::ResourceUpdate{std::string(kDefault), e.resource, absl::OkStatus()}, notes);
  if (rotation) RecomputeRootsLocked(notes, now);  // the previous anchor may no longer be needed
}

void SecretCache::Impl::MergeLocked(Entry& from, Entry& into) {
  for (SubscriptionImpl* sub : from.watchers) {
    sub->entry_ = into.id;
    into.watchers.insert(sub);
  }
  from.watchers.clear();
  for (const auto& hash : from.token_hashes) {
    by_token_hash_[hash].entry = into.id;
    into.token_hashes.insert(hash);
  }
  from.token_hashes.clear();
  if (!from.token.empty() && (into.token.empty() || from.token_expiry > into.token_expiry)) {
    into.token = std::move(from.token);
    into.token_expiry = from.token_expiry;
  }
  if (from.is_agent) {
    into.is_agent = true;
    agent_entry_ = into.id;
  }
  if (from.held.has_value()) RemoveAnchorLocked(from.held->anchor);
  if (from.resource != nullptr) RemoveAnchorLocked(from.anchor);
  if (from.scheduled_at.has_value()) schedule_.erase({*from.scheduled_at, from.id});
  if (!from.spiffe_id.empty() && by_spiffe_[from.spiffe_id] == from.id) by_spiffe_.erase(from.spiffe_id);
  entries_.erase(from.id);  // `from` is gone after this line
}

void SecretCache::Impl::OnFailureLocked(Entry& e, const absl::Status& status, Notes& notes, absl::Time now) {
  e.failures++;
  e.last_error = status;
  const bool never_issued = e.resource == nullptr && !e.held.has_value();
  if (!e.is_agent && e.minted_for.empty() && never_issued) {
    // An unproven workload token: its streams learn why, and a new stream tries again.
    deps_.logger->warn("the CA refused a workload token: {}", status.ToString());
    e.failure_published = true;
    if (auto update = CurrentDefaultLocked(e, now)) PublishDefaultLocked(e, *update, notes);
    DropLocked(e, notes, now);
    return;
  }
  const absl::Duration delay = Backoff(options_.initial_backoff, options_.max_backoff, deps_.random).Delay(e.failures);
  e.next_attempt = now + delay;
  deps_.logger->warn("certificate request for {} failed (attempt {}, retry in {}): {}", e.Who(), e.failures,
                     absl::FormatDuration(delay), status.ToString());
  if (never_issued) {
    e.failure_published = true;
    if (auto update = CurrentDefaultLocked(e, now)) PublishDefaultLocked(e, *update, notes);
    if (auto error = RootErrorLocked()) {
      for (SubscriptionImpl* sub : root_watchers_) {
        notes.emplace_back(sub->watcher_, xds::ResourceUpdate{std::string(kRoot), nullptr, *error});
      }
    }
  } else if (e.resource != nullptr && now >= e.not_after) {
    if (auto update = CurrentDefaultLocked(e, now)) PublishDefaultLocked(e, *update, notes);
  }
  if (IsTokenRejection(status.code()) && !e.is_agent && e.token_expiry <= now && e.resource != nullptr) {
    // The remembered token has expired, so retrying with it is pointless: only a stream with a
    // fresh token can renew this identity now (it is merged in here when it does). Try again
    // at expiry at the earliest.
    e.next_attempt = std::max(e.next_attempt, e.not_after);
  }
  RescheduleLocked(e);
}

void SecretCache::Impl::DropLocked(Entry& e, Notes& notes, absl::Time now) {
  for (SubscriptionImpl* sub : e.watchers) sub->entry_ = 0;
  for (const auto& hash : e.token_hashes) {
    auto it = by_token_hash_.find(hash);
    if (it != by_token_hash_.end() && it->second.entry == e.id) by_token_hash_.erase(it);
  }
  if (!e.spiffe_id.empty()) {
    auto it = by_spiffe_.find(e.spiffe_id);
    if (it != by_spiffe_.end() && it->second == e.id) by_spiffe_.erase(it);
  }
  if (!e.minted_for.empty()) {
    auto it = by_minted_.find(e.minted_for);
    if (it != by_minted_.end() && it->second == e.id) by_minted_.erase(it);
  }
  if (e.scheduled_at.has_value()) schedule_.erase({*e.scheduled_at, e.id});
  const bool had_anchor = e.resource != nullptr || e.held.has_value();
  if (e.resource != nullptr) RemoveAnchorLocked(e.anchor);
  if (e.held.has_value()) RemoveAnchorLocked(e.held->anchor);
  entries_.erase(e.id);  // wipes the token and releases the key material
  if (had_anchor) RecomputeRootsLocked(notes, now);
}

// ---------------------------------------------------------------------------------------------
// Trust bundle

void SecretCache::Impl::RecomputeRootsLocked(Notes& notes, absl::Time now, bool crl_changed) {
  std::set<std::string> roots(extra_anchors_.begin(), extra_anchors_.end());
  roots.insert(ca_bundle_.begin(), ca_bundle_.end());
  for (const auto& [anchor, refs] : anchor_refs_) roots.insert(anchor);
  std::vector<std::string> sorted(roots.begin(), roots.end());
  const bool roots_changed = sorted != roots_ && !sorted.empty();
  if (!roots_changed && !(crl_changed && !roots_.empty())) return;
  if (!roots_changed) sorted = roots_;
  auto resource = sds::MakeValidationContextResource(kRoot, sorted, next_generation_.fetch_add(1), crl_pem_);
  if (!resource.ok()) {
    deps_.logger->error("cannot build the trust bundle: {}", resource.status().ToString());
    return;
  }
  roots_ = std::move(sorted);
  root_resource_ = std::move(*resource);
  root_versions_.push_back(
      RootVersion{root_resource_->version, crl_index_ ? crl_index_->number() : 0, RootSetFingerprintOfPems(roots_)});
  if (root_versions_.size() > 64) root_versions_.pop_front();
  metrics_.bundle_updates->Increment();
  deps_.logger->info("trust bundle version {} with {} root(s){}, pushed to {} stream(s)", root_resource_->version,
                     roots_.size(), crl_index_ ? absl::StrCat(" and CRL ", crl_index_->number()) : "",
                     root_watchers_.size());
  for (SubscriptionImpl* sub : root_watchers_) {
    notes.emplace_back(sub->watcher_, xds::ResourceUpdate{std::string(kRoot), root_resource_, absl::OkStatus()});
  }
  if (!roots_changed) return;  // a new CRL alone holds no certificate back
  root_waiting_ = root_watchers_;
  if (root_waiting_.empty()) {
    acked_roots_ = std::set<std::string>(roots_.begin(), roots_.end());
    root_deadline_.reset();
  } else {
    root_deadline_ = now + options_.root_push_timeout;
    ++wake_epoch_;
    work_cv_.SignalAll();
  }
}

void SecretCache::Impl::SetCrl(std::string crl_pem, std::shared_ptr<const RevocationIndex> index) {
  Notes notes;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = deps_.clock.Now();
    crl_pem_ = std::move(crl_pem);
    crl_index_ = std::move(index);
    RecomputeRootsLocked(notes, now, /*crl_changed=*/true);
    if (crl_index_ != nullptr) {
      for (auto& [id, e] : entries_) {
        if (e->leaf == nullptr || !crl_index_->IsRevoked(e->leaf.get())) continue;
        deps_.logger->warn("the certificate of {} (serial {}) is revoked by CRL {}; replacing it now", e->Who(),
                           e->serial, crl_index_->number());
        metrics_.revoked_replaced->Increment();
        e->leaf.reset();  // asked for once per revoked certificate
        e->next_attempt = now;
        RescheduleLocked(*e);
      }
    }
  }
  Deliver(notes);
}

void SecretCache::Impl::RootBarrierPassedLocked(Notes& notes, absl::Time now) {
  acked_roots_ = std::set<std::string>(roots_.begin(), roots_.end());
  root_deadline_.reset();
  ReleaseHeldLocked(notes, now);
}

void SecretCache::Impl::ReleaseHeldLocked(Notes& notes, absl::Time now) {
  std::vector<uint64_t> ready;
  for (const auto& [id, entry] : entries_) {
    if (entry->held.has_value() && acked_roots_.contains(entry->held->anchor)) ready.push_back(id);
  }
  for (uint64_t id : ready) {
    Entry* e = FindLocked(id);
    if (e != nullptr && e->held.has_value()) InstallLocked(*e, notes, now);
  }
}

absl::Status SecretCache::Impl::SetExtraTrustAnchors(absl::string_view pem_bundle) {
  std::vector<std::string> anchors;
  if (!pem_bundle.empty()) {
    MESHID_ASSIGN_OR_RETURN(auto certs, CertsFromPem(pem_bundle, "trust anchors"));
    for (const auto& cert : certs) {
      if (!IsCa(cert.get())) return absl::InvalidArgumentError("trust anchors: a certificate is not a CA");
      anchors.push_back(CertToPem(cert.get()));
    }
  }
  Notes notes;
  {
    absl::MutexLock lock(&mu_);
    extra_anchors_ = std::move(anchors);
    const absl::Time now = deps_.clock.Now();
    RecomputeRootsLocked(notes, now);
    if (root_waiting_.empty()) ReleaseHeldLocked(notes, now);
  }
  Deliver(notes);
  return absl::OkStatus();
}

absl::Status SecretCache::Impl::SetCaTrustBundle(absl::string_view pem_bundle) {
  MESHID_ASSIGN_OR_RETURN(auto certs, CertsFromPem(pem_bundle, "trust bundle"));
  std::vector<std::string> roots;
  for (const auto& cert : certs) {
    if (!IsCa(cert.get())) return absl::InvalidArgumentError("trust bundle: a certificate is not a CA");
    roots.push_back(CertToPem(cert.get()));
  }
  if (roots.empty()) return absl::InvalidArgumentError("trust bundle: no certificate");
  Notes notes;
  {
    absl::MutexLock lock(&mu_);
    ca_bundle_ = std::move(roots);
    const absl::Time now = deps_.clock.Now();
    RecomputeRootsLocked(notes, now);
    if (root_waiting_.empty()) ReleaseHeldLocked(notes, now);
  }
  Deliver(notes);
  return absl::OkStatus();
}

SecretCacheStats SecretCache::Impl::Stats() const {
  absl::MutexLock lock(&mu_);
  const absl::Time now = deps_.clock.Now();
  SecretCacheStats stats;
  for (const auto& [id, e] : entries_) {
    if (e->resource == nullptr) continue;
    ++stats.identities;
    if (!stats.earliest_expiry || e->not_after < *stats.earliest_expiry) stats.earliest_expiry = e->not_after;
    if (e->is_agent && now < e->not_after) stats.agent_identity_ready = true;
  }
  return stats;
}

// ---------------------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<SecretCache>> SecretCache::Create(const SecretCacheOptions& options, CaClient& ca,
                                                                 TokenSource& agent_token, const Clock& clock,
                                                                 RandomSource& random, MetricsRegistry& metrics,
                                                                 LoggerPtr logger) {
  MESHID_RETURN_IF_ERROR(ValidateSecretCacheOptions(options));
  auto impl =
      std::make_unique<Impl>(options, Collaborators{clock, random, ca, agent_token, metrics, std::move(logger)});
  return std::unique_ptr<SecretCache>(new SecretCache(std::move(impl)));
}

SecretCache::SecretCache(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SecretCache::~SecretCache() = default;

absl::StatusOr<std::unique_ptr<xds::Subscription>> SecretCache::Subscribe(
    const xds::StreamCaller& caller, std::shared_ptr<xds::ResourceWatcher> watcher) {
  return impl_->Subscribe(caller.bearer_token, std::move(watcher));
}
absl::StatusOr<std::unique_ptr<xds::Subscription>> SecretCache::Subscribe(
    absl::string_view bearer_token, std::shared_ptr<xds::ResourceWatcher> watcher) {
  return impl_->Subscribe(bearer_token, std::move(watcher));
}
absl::StatusOr<std::unique_ptr<xds::Subscription>> SecretCache::SubscribeMinted(
    absl::string_view spiffe_id, std::shared_ptr<xds::ResourceWatcher> watcher) {
  return impl_->SubscribeMinted(spiffe_id, std::move(watcher));
}
bool SecretCache::IsKnownName(absl::string_view name) const { return name == kDefault || name == kRoot; }
bool SecretCache::RunOne() { return impl_->RunOne(); }
std::optional<absl::Time> SecretCache::NextDueTime() const { return impl_->NextDueTime(); }
void SecretCache::WaitForWork(absl::Duration max_wait) { impl_->WaitForWork(max_wait); }
void SecretCache::WakeAll() { impl_->WakeAll(); }
absl::Status SecretCache::SetExtraTrustAnchors(absl::string_view pem_bundle) {
  return impl_->SetExtraTrustAnchors(pem_bundle);
}
void SecretCache::SetCrl(std::string crl_pem, std::shared_ptr<const RevocationIndex> index) {
  impl_->SetCrl(std::move(crl_pem), std::move(index));
}
absl::Status SecretCache::SetCaTrustBundle(absl::string_view pem_bundle) { return impl_->SetCaTrustBundle(pem_bundle); }

std::string SecretCache::TrustBundleOfRootVersion(absl::string_view version) const {
  return impl_->TrustBundleOfRootVersion(version);
}

std::string SecretCache::TrustBundle() const { return impl_->TrustBundle(); }

int64_t SecretCache::CrlNumberOfRootVersion(absl::string_view version) const {
  return impl_->CrlNumberOfRootVersion(version);
}
SecretCacheStats SecretCache::Stats() const { return impl_->Stats(); }
std::string SecretCache::AgentSpiffeId() const { return impl_->AgentSpiffeId(); }

CacheWorkers::CacheWorkers(SecretCache& cache, int threads) : cache_(cache) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Loop(); });
}

CacheWorkers::~CacheWorkers() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  cache_.WakeAll();
  for (auto& t : threads_) t.join();
}

void CacheWorkers::Loop() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
    }
    if (!cache_.RunOne()) cache_.WaitForWork(absl::Seconds(1));
  }
}

}  // namespace meshid
