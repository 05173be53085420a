#include "workload/workload_api.h"

#include <openssl/crypto.h>

#include <map>
#include <optional>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "common/crl.h"
#include "common/pem.h"
#include "common/spiffe_id.h"
#include "sds/resource.h"
#include "xds/provider.h"

namespace meshid::workload {
namespace {

constexpr absl::string_view kSecurityHeader = "workload.spiffe.io";
constexpr absl::string_view kNoIdentity = "no identity issued";

// The spec's check: the header is there and says "true" (a browser or a proxy would not send it).
grpc::Status CheckSecurityHeader(const grpc::CallbackServerContext& context) {
  auto range = context.client_metadata().equal_range(std::string(kSecurityHeader));
  for (auto it = range.first; it != range.second; ++it) {
    if (absl::string_view(it->second.data(), it->second.size()) == "true") return grpc::Status::OK;
  }
  return grpc::Status(
      grpc::StatusCode::INVALID_ARGUMENT,
      absl::StrCat("security header missing from request: the metadata \"", kSecurityHeader, ": true\" is required"));
}

// Concatenated DER of every PEM block of `type` in `pem`.
absl::StatusOr<std::string> PemToDer(absl::string_view pem, absl::string_view type) {
  auto blocks = ParsePemBlocks(pem, {.max_input_bytes = 16 << 20});
  if (!blocks.ok()) return blocks.status();
  std::string der;
  for (const auto& block : *blocks) {
    if (block.type == type) der += block.der;
  }
  if (der.empty()) return absl::InternalError(absl::StrCat("no ", type, " in the cached PEM"));
  return der;
}

// The bundle and CRL of a ROOTCA resource in the Workload API's DER forms.
struct BundleDer {
  std::string roots;
  std::string crl;  // "" without one
};
absl::StatusOr<BundleDer> BundleOf(const xds::Resource& root) {
  auto parts = sds::ReadValidationContext(root);
  if (!parts.ok()) return parts.status();
  BundleDer out;
  auto roots = PemToDer(parts->roots_pem, "CERTIFICATE");
  if (!roots.ok()) return roots.status();
  out.roots = std::move(*roots);
  if (!parts->crl_pem.empty()) {
    auto crl = CrlDerFromPem(parts->crl_pem);
    if (!crl.ok()) return crl.status();
    out.crl = std::move(*crl);
  }
  return out;
}

std::string TrustDomainId(const std::string& spiffe_id) {
  auto id = SpiffeId::Parse(spiffe_id);
  return id.ok() ? absl::StrCat("spiffe://", id->trust_domain()) : "";
}

// A server stream that always sends the newest content: at most one write in flight, and what
// was offered meanwhile replaces what waited. Subclasses hold their state under mu_.
template <typename Response>
class LatestWriter : public grpc::ServerWriteReactor<Response> {
 public:
  explicit LatestWriter(const WorkloadApiService::Shared& shared, absl::string_view method)
      : shared_(shared), method_(method) {}

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    Wipe(*in_flight_);
    in_flight_.reset();
    if (!ok) return FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the client went away"));
    if (waiting_ != nullptr) {
      in_flight_ = std::move(waiting_);
      this->StartWrite(in_flight_.get());
    }
  }
  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    FinishLocked(grpc::Status::CANCELLED);
  }
  void OnDone() override {
    Release();  // outside mu_: detaching waits for callbacks that take it
    delete this;
  }

 protected:
  // Drops every subscription and watch (called once, from OnDone, without mu_).
  virtual void Release() = 0;
  virtual void Wipe(Response&) {}

  void OfferLocked(std::unique_ptr<Response> response) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    if (in_flight_ != nullptr) {
      if (waiting_ != nullptr) Wipe(*waiting_);
      waiting_ = std::move(response);
      return;
    }
    in_flight_ = std::move(response);
    this->StartWrite(in_flight_.get());
  }
  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    if (waiting_ != nullptr) Wipe(*waiting_);
    waiting_.reset();
    shared_.Count(method_, status);
    if (!status.ok() && status.error_code() != grpc::StatusCode::CANCELLED) {
      shared_.logger->info("Workload API {}: {}", method_, status.error_message());
    }
    this->Finish(status);
  }

  const WorkloadApiService::Shared& shared_;
  const std::string method_;
  absl::Mutex mu_;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  std::unique_ptr<Response> in_flight_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<Response> waiting_ ABSL_GUARDED_BY(mu_);
};

// FetchX509SVID: one subscription per identity the caller's selectors match.
class X509SvidStream final : public LatestWriter<X509SVIDResponse> {
 public:
  X509SvidStream(const WorkloadApiService::Shared& shared, grpc::CallbackServerContext* context)
      : LatestWriter(shared, "FetchX509SVID") {
    absl::MutexLock lock(&mu_);
    if (grpc::Status header = CheckSecurityHeader(*context); !header.ok()) {
      FinishLocked(header);
      return;
    }
    auto selectors = shared_.attest(context->peer());
    if (!selectors.ok()) {
      shared_.logger->warn("Workload API: caller {} not attested: {}", context->peer(), selectors.status().message());
      FinishLocked(grpc::Status(grpc::StatusCode::PERMISSION_DENIED, std::string(kNoIdentity)));
      return;
    }
    selectors_ = std::move(*selectors);
    // The watch's callback takes mu_: it is added while mu_ is held, so it runs after this.
    entries_watch_ = shared_.entries.AddWatch([this] {
      std::vector<Identity> dropped;
      {
        absl::MutexLock lock(&mu_);
        RecomputeLocked(dropped);
      }
      EndAll(dropped);
    });
    std::vector<Identity> dropped;  // stays empty: nothing is subscribed yet
    RecomputeLocked(dropped);
  }

 private:
  struct Identity {
    std::shared_ptr<xds::ForwardingWatcher> watcher;
    std::unique_ptr<xds::Subscription> subscription;
    xds::ResourcePtr certificate;
    absl::Status error;
  };
  // Ends subscriptions; without mu_, since detaching waits for a running callback, which may
  // be waiting for mu_.
  static void EndAll(std::vector<Identity>& identities) {
    for (auto& identity : identities) {
      identity.watcher->Detach();
      identity.subscription.reset();
    }
  }

  void Release() override {
    entries_watch_.reset();
    std::vector<Identity> identities;
    {
      absl::MutexLock lock(&mu_);
      for (auto& [id, identity] : identities_) identities.push_back(std::move(identity));
      identities_.clear();
    }
    EndAll(identities);
  }
  void Wipe(X509SVIDResponse& response) override {
    for (auto& svid : *response.mutable_svids()) {
      std::string* key = svid.mutable_x509_svid_key();
      if (!key->empty()) OPENSSL_cleanse(key->data(), key->size());
    }
  }

  // Matches the entries in force against the caller and subscribes to new identities; the ones
  // that no longer match move to `dropped`, for the caller to end once mu_ is released.
  void RecomputeLocked(std::vector<Identity>& dropped) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    auto entries = shared_.entries.current();
    if (entries == nullptr) return;  // not yet received from the server: wait
    std::set<std::string> wanted;
    for (const registration::NodeEntry* entry : entries->Matching(selectors_)) wanted.insert(entry->spiffe_id);
    if (wanted.empty()) {
      return FinishLocked(grpc::Status(grpc::StatusCode::PERMISSION_DENIED, std::string(kNoIdentity)));
    }
    for (auto it = identities_.begin(); it != identities_.end();) {
      if (wanted.contains(it->first)) {
        ++it;
        continue;
      }
      dropped.push_back(std::move(it->second));
      it = identities_.erase(it);
    }
    for (const std::string& id : wanted) {
      if (identities_.contains(id)) continue;
      Identity identity;
      identity.watcher = std::make_shared<xds::ForwardingWatcher>([this, id](const xds::ResourceUpdate& update) {
        absl::MutexLock lock(&mu_);
        OnUpdateLocked(id, update);
        MaybeSendLocked();
      });
      auto subscription = shared_.cache.SubscribeMinted(id, identity.watcher);
      if (!subscription.ok()) return FinishLocked(grpc::Status(grpc::StatusCode::INTERNAL, "cannot subscribe"));
      identity.subscription = std::move(*subscription);
      auto current = identity.subscription->SetNames(
          {std::string(sds::kWorkloadResourceName), std::string(sds::kRootResourceName)});
      identities_[id] = std::move(identity);
      if (current.ok()) {
        for (const auto& update : *current) OnUpdateLocked(id, update);
      }
    }
    MaybeSendLocked();
  }

  void OnUpdateLocked(const std::string& id, const xds::ResourceUpdate& update) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (update.name == sds::kRootResourceName) {
      if (update.resource != nullptr && (root_ == nullptr || update.resource->generation > root_->generation)) {
        root_ = update.resource;
      }
      return;
    }
    auto it = identities_.find(id);
    if (it == identities_.end()) return;
    if (!update.error.ok()) {
      it->second.error = update.error;
    } else if (update.resource != nullptr && (it->second.certificate == nullptr ||
                                              update.resource->generation > it->second.certificate->generation)) {
      it->second.certificate = update.resource;
      it->second.error = absl::OkStatus();
    }
  }

  void MaybeSendLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || root_ == nullptr || identities_.empty()) return;
    std::string sent_key = root_->version;
    bool any = false;
    for (const auto& [id, identity] : identities_) {
      if (identity.certificate == nullptr && identity.error.ok()) return;  // still coming
      if (identity.certificate != nullptr) {
        any = true;
        absl::StrAppend(&sent_key, "|", id, "=", identity.certificate->version);
      }
    }
    if (!any) {
      const absl::Status& error = identities_.begin()->second.error;
      return FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                       absl::StrCat("no certificate could be obtained: ", error.message())));
    }
    if (sent_key == last_sent_) return;
    auto bundle = BundleOf(*root_);
    if (!bundle.ok()) return FinishLocked(grpc::Status(grpc::StatusCode::INTERNAL, "the trust bundle is unusable"));
    auto response = std::make_unique<X509SVIDResponse>();
    for (const auto& [id, identity] : identities_) {
      if (identity.certificate == nullptr) continue;
      auto parts = sds::ReadTlsCertificate(*identity.certificate);
      if (!parts.ok()) return FinishLocked(grpc::Status(grpc::StatusCode::INTERNAL, "a certificate is unusable"));
      auto chain = PemToDer(parts->chain_pem, "CERTIFICATE");
      auto key = PemToDer(parts->private_key_pem.view(), "PRIVATE KEY");
      if (!chain.ok() || !key.ok()) {
        if (key.ok()) OPENSSL_cleanse(key->data(), key->size());
        return FinishLocked(grpc::Status(grpc::StatusCode::INTERNAL, "a certificate is unusable"));
      }
      X509SVID* svid = response->add_svids();
      svid->set_spiffe_id(id);
      svid->set_x509_svid(std::move(*chain));
      svid->set_x509_svid_key(std::move(*key));
      svid->set_bundle(bundle->roots);
    }
    if (!bundle->crl.empty()) response->add_crl(bundle->crl);
    last_sent_ = std::move(sent_key);
    OfferLocked(std::move(response));
  }

  absl::flat_hash_set<std::string> selectors_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Identity> identities_ ABSL_GUARDED_BY(mu_);
  xds::ResourcePtr root_ ABSL_GUARDED_BY(mu_);
  std::string last_sent_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<registration::EntryReceiver::Watch> entries_watch_;
};

// FetchX509Bundles: the ROOTCA of the agent's own identity, re-sent when it changes.
class X509BundlesStream final : public LatestWriter<X509BundlesResponse> {
 public:
  X509BundlesStream(const WorkloadApiService::Shared& shared, grpc::CallbackServerContext* context)
      : LatestWriter(shared, "FetchX509Bundles") {
    absl::MutexLock lock(&mu_);
    if (grpc::Status header = CheckSecurityHeader(*context); !header.ok()) {
      FinishLocked(header);
      return;
    }
    if (auto selectors = shared_.attest(context->peer()); !selectors.ok()) {
      shared_.logger->warn("Workload API: caller {} not attested: {}", context->peer(), selectors.status().message());
      FinishLocked(grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "the caller could not be attested"));
      return;
    }
    watcher_ = std::make_shared<xds::ForwardingWatcher>([this](const xds::ResourceUpdate& update) {
      absl::MutexLock lock(&mu_);
      OnRootLocked(update);
    });
    auto subscription = shared_.cache.Subscribe(xds::StreamCaller{}, watcher_);
    if (!subscription.ok()) {
      FinishLocked(grpc::Status(grpc::StatusCode::INTERNAL, "cannot subscribe"));
      return;
    }
    subscription_ = std::move(*subscription);
    auto current = subscription_->SetNames({std::string(sds::kRootResourceName)});
    if (current.ok()) {
      for (const auto& update : *current) OnRootLocked(update);
    }
  }

 private:
  void Release() override {
    if (watcher_ != nullptr) watcher_->Detach();
    subscription_.reset();
  }

  void OnRootLocked(const xds::ResourceUpdate& update) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || update.resource == nullptr) return;
    if (root_ != nullptr && update.resource->generation <= root_->generation) return;
    const std::string trust_domain = TrustDomainId(shared_.cache.AgentSpiffeId());
    if (trust_domain.empty()) return;  // the agent's own certificate names it; not there yet
    auto bundle = BundleOf(*update.resource);
    if (!bundle.ok()) return FinishLocked(grpc::Status(grpc::StatusCode::INTERNAL, "the trust bundle is unusable"));
    root_ = update.resource;
    auto response = std::make_unique<X509BundlesResponse>();
    (*response->mutable_bundles())[trust_domain] = std::move(bundle->roots);
    if (!bundle->crl.empty()) response->add_crl(std::move(bundle->crl));
    OfferLocked(std::move(response));
  }

  std::shared_ptr<xds::ForwardingWatcher> watcher_;
  std::unique_ptr<xds::Subscription> subscription_;
  xds::ResourcePtr root_ ABSL_GUARDED_BY(mu_);
};

// The answer of a JWT method: the header is checked first, as on every call.
grpc::Status JwtStatus(const grpc::CallbackServerContext& context) {
  if (grpc::Status header = CheckSecurityHeader(context); !header.ok()) return header;
  return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "JWT-SVIDs are not served by this agent yet");
}

template <typename Response>
grpc::ServerWriteReactor<Response>* JwtStream(const WorkloadApiService::Shared& shared,
                                              const grpc::CallbackServerContext& context, absl::string_view method) {
  class Done final : public grpc::ServerWriteReactor<Response> {
   public:
    void OnDone() override { delete this; }
  };
  auto* reactor = new Done();
  const grpc::Status status = JwtStatus(context);
  shared.Count(method, status);
  reactor->Finish(status);
  return reactor;
}

}  // namespace

PeerSelectors AttestedPeerSelectors(const PeerRegistry& peers, const WorkloadAttestor& attestor) {
  return [&peers, &attestor](const std::string& peer) -> absl::StatusOr<absl::flat_hash_set<std::string>> {
    auto process = peers.Lookup(peer);
    if (!process.ok()) return absl::PermissionDeniedError(process.status().message());
    auto attributes = attestor.Attest(*process);
    if (!attributes.ok()) return absl::PermissionDeniedError(attributes.status().message());
    return absl::flat_hash_set<std::string>(attributes->selectors.begin(), attributes->selectors.end());
  };
}

void WorkloadApiService::Shared::Count(absl::string_view method, const grpc::Status& status) const {
  metrics
      .AddCounter("meshid_agent_workload_api_calls_total", "Workload API calls by method and final gRPC status.",
                  {{"method", std::string(method)}, {"code", absl::StrCat(status.error_code())}})
      .Increment();
}

WorkloadApiService::WorkloadApiService(SecretCache& cache, registration::EntryReceiver& entries, PeerSelectors attest,
                                       MetricsRegistry& metrics, LoggerPtr logger)
    : shared_{cache, entries, std::move(attest), metrics, std::move(logger)} {}

grpc::ServerWriteReactor<X509SVIDResponse>* WorkloadApiService::FetchX509SVID(grpc::CallbackServerContext* context,
                                                                              const X509SVIDRequest*) {
  return new X509SvidStream(shared_, context);
}

grpc::ServerWriteReactor<X509BundlesResponse>* WorkloadApiService::FetchX509Bundles(
    grpc::CallbackServerContext* context, const X509BundlesRequest*) {
  return new X509BundlesStream(shared_, context);
}

grpc::ServerUnaryReactor* WorkloadApiService::FetchJWTSVID(grpc::CallbackServerContext* context, const JWTSVIDRequest*,
                                                           JWTSVIDResponse*) {
  const grpc::Status status = JwtStatus(*context);
  shared_.Count("FetchJWTSVID", status);
  auto* reactor = context->DefaultReactor();
  reactor->Finish(status);
  return reactor;
}

grpc::ServerWriteReactor<JWTBundlesResponse>* WorkloadApiService::FetchJWTBundles(grpc::CallbackServerContext* context,
                                                                                  const JWTBundlesRequest*) {
  return JwtStream<JWTBundlesResponse>(shared_, *context, "FetchJWTBundles");
}

grpc::ServerUnaryReactor* WorkloadApiService::ValidateJWTSVID(grpc::CallbackServerContext* context,
                                                              const ValidateJWTSVIDRequest*, ValidateJWTSVIDResponse*) {
  const grpc::Status status = JwtStatus(*context);
  shared_.Count("ValidateJWTSVID", status);
  auto* reactor = context->DefaultReactor();
  reactor->Finish(status);
  return reactor;
}

}  // namespace meshid::workload
