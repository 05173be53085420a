#include "nodeagent/policy_relay.h"

#include <openssl/crypto.h>
#include <unistd.h>

#include <grpcpp/grpcpp.h>

#include <functional>

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/grpc_status.h"
#include "common/secret.h"
#include "envoy/extensions/transport_sockets/tls/v3/secret.pb.h"
#include "sds/resource.h"

namespace meshid {
namespace {

using meshid::policy::v1::PolicyStatusReport;
using meshid::policy::v1::PolicyStatusReportResponse;

// The agent's own certificate and key, as the cache publishes them.
struct Svid {
  std::string chain_pem;
  SecretString key_pem;
};

absl::StatusOr<Svid> SvidFromResource(const sds::SdsResource& resource) {
  envoy::extensions::transport_sockets::tls::v3::Secret secret;
  absl::string_view bytes = resource.serialized_secret.view();
  if (!secret.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())) || !secret.has_tls_certificate()) {
    return absl::InternalError("the agent's certificate resource is not a tls_certificate");
  }
  auto* tls = secret.mutable_tls_certificate();
  Svid svid{tls->certificate_chain().inline_bytes(), SecretString(tls->private_key().inline_bytes())};
  std::string* key = tls->mutable_private_key()->mutable_inline_bytes();
  if (!key->empty()) OPENSSL_cleanse(key->data(), key->size());
  return svid;
}

// Forwards the cache's updates to the relay until detached.
class SvidWatcher final : public sds::SdsWatcher {
 public:
  explicit SvidWatcher(std::function<void(const sds::SdsUpdate&)> sink) : sink_(std::move(sink)) {}
  void OnUpdate(const sds::SdsUpdate& update) override {
    absl::MutexLock lock(&mu_);
    if (sink_) sink_(update);
  }
  // After this returns no callback is running or will run.
  void Detach() {
    absl::MutexLock lock(&mu_);
    sink_ = nullptr;
  }

 private:
  absl::Mutex mu_;
  std::function<void(const sds::SdsUpdate&)> sink_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

std::string DefaultAgentId() {
  char host[256] = {};
  if (::gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') return "agent";
  return host;
}

class PolicyRelay::Impl {
 public:
  Impl(const PolicyRelayOptions& options, Dependencies deps)
      : options_(options),
        deps_(std::move(deps)),
        version_gauge_(deps_.metrics->AddGauge("meshid_agent_policy_version",
                                               "The policy version the agent relays to its proxies (0: none).")),
        reports_ok_(deps_.metrics->AddCounter("meshid_agent_policy_reports_total", "Status reports sent to the server.",
                                              {{"result", "ok"}})),
        reports_failed_(deps_.metrics->AddCounter("meshid_agent_policy_reports_total",
                                                  "Status reports sent to the server.", {{"result", "error"}})) {}

  ~Impl() { Stop(); }

  absl::Status Init() {
    authz::PolicyDistributionOptions service_options;
    service_options.metrics_prefix = "meshid_agent_policy";
    service_options.observer = [this](const authz::PolicyStreamEvent& e) { OnProxyEvent(e); };
    service_ = authz::PolicyDistributionService::Create(std::move(service_options), publisher_, *deps_.metrics,
                                                        *deps_.random, deps_.logger);
    return absl::OkStatus();
  }

  absl::Status Start() {
    watcher_ = std::make_shared<SvidWatcher>([this](const sds::SdsUpdate& u) { OnSvidUpdate(u); });
    auto subscription = deps_.secrets->Subscribe("", watcher_);
    if (!subscription.ok()) return subscription.status();
    subscription_ = std::move(*subscription);
    auto current = subscription_->SetNames({std::string(sds::kWorkloadResourceName)});
    if (!current.ok()) return current.status();
    for (const auto& update : *current) OnSvidUpdate(update);

    authz::PolicyStreamClientOptions client_options;
    client_options.node.id = options_.agent_id;
    client_options.peer = absl::StrCat("meshid server at ", options_.server_address);
    client_options.channel = [this] { return NewChannel(); };
    client_options.metadata = [this] { return Metadata(); };
    auto client = authz::PolicyStreamClient::Start(
        std::move(client_options), [this](const authz::PolicySnapshotPtr& s) { return Relay(s); },
        [this] { MarkDirty(); }, *deps_.random, deps_.logger);
    {
      absl::MutexLock lock(&mu_);
      client_ = std::move(client);
    }
    reporter_ = std::thread([this] { ReportLoop(); });
    return absl::OkStatus();
  }

  void Stop() {
    {
      absl::MutexLock lock(&mu_);
      if (stopped_) return;
      stopped_ = true;
    }
    if (reporter_.joinable()) reporter_.join();
    if (watcher_ != nullptr) watcher_->Detach();
    subscription_.reset();
    std::unique_ptr<authz::PolicyStreamClient> client;
    {
      absl::MutexLock lock(&mu_);
      client = std::move(client_);
    }
    client.reset();  // joins its thread, which may call back into this object
  }

  // The agent's own certificate changed.
  void OnSvidUpdate(const sds::SdsUpdate& update) {
    if (update.name != sds::kWorkloadResourceName || update.resource == nullptr) return;
    absl::MutexLock lock(&mu_);
    if (svid_ != nullptr && svid_->generation >= update.resource->generation) return;
    const bool first = svid_ == nullptr;
    svid_ = update.resource;
    // The first certificate: connect with it now rather than keep the token's connection or
    // wait out a backoff.
    if (first && client_ != nullptr && using_token_) client_->Reconnect();
  }

  authz::PolicyDistributionService* service() { return service_.get(); }

  int64_t relayed_version() const {
    auto current = publisher_.Current();
    return current ? current->version() : 0;
  }
  size_t proxies() const {
    absl::MutexLock lock(&mu_);
    return proxies_.size();
  }

 private:
  struct ProxyState {
    uint64_t stream_id = 0;
    authz::PolicyNode node;
    int64_t applied_version = 0;
    int64_t rejected_version = 0;
    std::string last_error;
    bool connected = false;
    absl::Time changed_at;
  };

  absl::Status Relay(const authz::PolicySnapshotPtr& snapshot) {
    publisher_.Publish(snapshot);
    version_gauge_.Set(static_cast<double>(snapshot->version()));
    deps_.logger->info("relaying policy version {} ({} documents) to {} proxies", snapshot->version(),
                       snapshot->documents_size(), proxies());
    return absl::OkStatus();
  }

  absl::StatusOr<std::shared_ptr<grpc::Channel>> NewChannel() {
    grpc::ChannelArguments args = authz::PolicyChannelArguments();
    std::shared_ptr<grpc::ChannelCredentials> creds;
    if (deps_.insecure_plaintext) {
      creds = grpc::InsecureChannelCredentials();
    } else {
      auto root = ReadFile(deps_.ca_root_file, 1 << 20);
      if (!root.ok()) return absl::FailedPreconditionError(absl::StrCat("--ca-root: ", root.status().message()));
      grpc::SslCredentialsOptions ssl;
      ssl.pem_root_certs = *root;
      sds::SdsResourcePtr svid_resource;
      {
        absl::MutexLock lock(&mu_);
        svid_resource = svid_;
        using_token_ = svid_resource == nullptr;
      }
      if (svid_resource != nullptr) {
        auto svid = SvidFromResource(*svid_resource);
        if (!svid.ok()) return svid.status();
        ssl.pem_cert_chain = svid->chain_pem;
        ssl.pem_private_key = std::string(svid->key_pem.view());
      }
      creds = grpc::SslCredentials(ssl);
      if (!ssl.pem_private_key.empty()) OPENSSL_cleanse(ssl.pem_private_key.data(), ssl.pem_private_key.size());
      if (!deps_.server_name.empty()) args.SetSslTargetNameOverride(deps_.server_name);
    }
    auto channel = grpc::CreateCustomChannel(options_.server_address, creds, args);
    absl::MutexLock lock(&mu_);
    channel_ = channel;
    return channel;
  }

  // The token goes along only when there is no certificate yet (or without TLS).
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> Metadata() {
    bool token = deps_.insecure_plaintext;
    {
      absl::MutexLock lock(&mu_);
      token = token || using_token_;
    }
    std::vector<std::pair<std::string, std::string>> out;
    if (!token) return out;
    auto t = deps_.token->Token();
    if (!t.ok()) return t.status();
    out.emplace_back("authorization", absl::StrCat("Bearer ", t->view()));
    return out;
  }

  void OnProxyEvent(const authz::PolicyStreamEvent& e) {
    absl::MutexLock lock(&mu_);
    ProxyState& p = proxies_[e.node.id];
    if (e.kind == authz::PolicyStreamEvent::Kind::kClosed) {
      if (p.stream_id != e.stream_id) return;  // an older stream of a proxy that reconnected
      p.connected = false;
    } else {
      p.stream_id = e.stream_id;
      p.node = e.node;
      p.connected = true;
      if (e.kind != authz::PolicyStreamEvent::Kind::kConnected || p.applied_version == 0) {
        p.applied_version = e.applied_version;
      }
      if (e.kind == authz::PolicyStreamEvent::Kind::kNacked) {
        p.rejected_version = e.rejected_version;
        p.last_error = e.last_error;
      }
    }
    p.changed_at = deps_.clock->Now();
    dirty_ = true;
  }

  void MarkDirty() {
    absl::MutexLock lock(&mu_);
    dirty_ = true;
  }

  PolicyStatusReport BuildReportLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const absl::Time now = deps_.clock->Now();
    for (auto it = proxies_.begin(); it != proxies_.end();) {
      if (!it->second.connected && now - it->second.changed_at > options_.forget_after) {
        it = proxies_.erase(it);
      } else {
        ++it;
      }
    }
    PolicyStatusReport report;
    report.set_agent_id(options_.agent_id);
    if (client_ != nullptr) {
      auto state = client_->state();
      report.set_applied_version(state.applied_version);
      report.set_rejected_version(state.rejected_version);
      report.set_last_error(state.last_error);
    }
    for (const auto& [id, p] : proxies_) {
      auto* proxy = report.add_proxies();
      proxy->set_proxy_id(id);
      proxy->set_service(p.node.service);
      proxy->set_namespace_(p.node.namespace_);
      proxy->set_applied_version(p.applied_version);
      proxy->set_rejected_version(p.rejected_version);
      proxy->set_last_error(p.last_error);
      proxy->set_connected(p.connected);
      proxy->set_changed_at_unix_micros(absl::ToUnixMicros(p.changed_at));
    }
    return report;
  }

  void ReportLoop() {
    // Real time: the reporter only paces network calls; what it reports carries the clock's times.
    absl::Time next_heartbeat = absl::Now();
    for (;;) {
      PolicyStatusReport report;
      std::shared_ptr<grpc::Channel> channel;
      {
        absl::MutexLock lock(&mu_);
        auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopped_ || dirty_; };
        mu_.AwaitWithDeadline(absl::Condition(&wake), next_heartbeat);
        if (stopped_) return;
        if (dirty_) {
          // Let a burst of changes (a version reaching every proxy) settle into one report.
          auto stopped = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopped_; };
          if (mu_.AwaitWithTimeout(absl::Condition(&stopped), options_.report_delay)) return;
        }
        channel = channel_;
        if (channel == nullptr) continue;  // not connected yet; a connection makes us dirty
        dirty_ = false;
        report = BuildReportLocked();
      }
      next_heartbeat = absl::Now() + options_.report_interval;
      grpc::ClientContext context;
      context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
      auto metadata = Metadata();
      if (metadata.ok()) {
        for (const auto& [k, v] : *metadata) context.AddMetadata(k, v);
      }
      PolicyStatusReportResponse response;
      auto stub = meshid::policy::v1::PolicyDistributionService::NewStub(channel);
      grpc::Status status = stub->ReportStatus(&context, report, &response);
      if (status.ok()) {
        reports_ok_.Increment();
        report_error_.clear();
        continue;
      }
      reports_failed_.Increment();
      if (status.error_message() != report_error_) {
        deps_.logger->warn("policy status report to {} failed: {}", options_.server_address, status.error_message());
        report_error_ = status.error_message();
      }
      absl::MutexLock lock(&mu_);
      dirty_ = true;
      // Retry after a pause rather than in a tight loop.
      auto stopped = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopped_; };
      if (mu_.AwaitWithTimeout(absl::Condition(&stopped), absl::Seconds(2))) return;
    }
  }

  const PolicyRelayOptions options_;
  const Dependencies deps_;
  Gauge& version_gauge_;
  Counter& reports_ok_;
  Counter& reports_failed_;
  authz::PolicySnapshotPublisher publisher_;
  std::unique_ptr<authz::PolicyDistributionService> service_;
  std::shared_ptr<SvidWatcher> watcher_;
  std::unique_ptr<sds::SdsSubscription> subscription_;
  std::unique_ptr<authz::PolicyStreamClient> client_ ABSL_GUARDED_BY(mu_);
  std::thread reporter_;
  std::string report_error_;  // reporter thread only
  mutable absl::Mutex mu_;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  bool dirty_ ABSL_GUARDED_BY(mu_) = true;
  sds::SdsResourcePtr svid_ ABSL_GUARDED_BY(mu_);
  bool using_token_ ABSL_GUARDED_BY(mu_) = false;
  std::shared_ptr<grpc::Channel> channel_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, ProxyState> proxies_ ABSL_GUARDED_BY(mu_);
};

PolicyRelay::PolicyRelay(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

absl::StatusOr<std::unique_ptr<PolicyRelay>> PolicyRelay::Create(const PolicyRelayOptions& options, Dependencies deps) {
  if (options.server_address.empty()) return absl::InvalidArgumentError("--policy-server: required");
  if (options.agent_id.empty() || options.agent_id.size() > 256) {
    return absl::InvalidArgumentError("--agent-id: must be 1 to 256 characters");
  }
  if (deps.secrets == nullptr || deps.token == nullptr || deps.clock == nullptr || deps.random == nullptr ||
      deps.metrics == nullptr || deps.logger == nullptr) {
    return absl::InternalError("PolicyRelay: missing dependency");
  }
  if (!deps.insecure_plaintext && deps.ca_root_file.empty()) return absl::InvalidArgumentError("--ca-root: required");
  auto impl = std::make_unique<Impl>(options, std::move(deps));
  if (auto s = impl->Init(); !s.ok()) return s;
  auto relay = std::unique_ptr<PolicyRelay>(new PolicyRelay(std::move(impl)));
  relay->service_ = relay->impl_->service();
  return relay;
}

PolicyRelay::~PolicyRelay() = default;

absl::Status PolicyRelay::Start() { return impl_->Start(); }
int64_t PolicyRelay::relayed_version() const { return impl_->relayed_version(); }
size_t PolicyRelay::proxies() const { return impl_->proxies(); }

}  // namespace meshid
