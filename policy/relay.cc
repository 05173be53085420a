#include "policy/relay.h"

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "policy/client.h"
#include "policy/server.h"

namespace meshid::policy {
namespace {

using meshid::policy::v1::PolicyStatusReport;
using meshid::policy::v1::PolicyStatusReportResponse;

}  // namespace

std::string DefaultAgentId() {
  char host[256] = {};
  if (::gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') return "agent";
  return host;
}

class PolicyRelay::Impl {
 public:
  Impl(const PolicyRelayOptions& options, xds::UpstreamSource& upstream, const TrustStatusSource& trust,
       const Clock& clock, RandomSource& random, MetricsRegistry& metrics, LoggerPtr logger)
      : options_(options),
        upstream_(upstream),
        trust_(trust),
        clock_(clock),
        random_(random),
        metrics_(metrics),
        logger_(std::move(logger)),
        version_gauge_(metrics.AddGauge("meshid_agent_policy_version",
                                        "The policy version the agent relays to its proxies (0: none).")),
        reports_ok_(metrics.AddCounter("meshid_agent_policy_reports_total", "Status reports sent to the server.",
                                       {{"result", "ok"}})),
        reports_failed_(metrics.AddCounter("meshid_agent_policy_reports_total", "Status reports sent to the server.",
                                           {{"result", "error"}})),
        publisher_({std::string(kPolicySnapshotName)}) {}

  ~Impl() { Stop(); }

  absl::Status Init() {
    PolicyDistributionOptions service_options;
    service_options.metrics_prefix = "meshid_agent_policy";
    service_options.observer = [this](const PolicyStreamEvent& e) { OnProxyEvent(e); };
    service_ = PolicyDistributionService::Create(std::move(service_options), publisher_, metrics_, random_, logger_);
    return absl::OkStatus();
  }

  void ReportSoon() { MarkDirty(); }

  absl::Status Start() {
    PolicyStreamClientOptions client_options;
    client_options.node.id = options_.agent_id;
    auto client = PolicyStreamClient::Create(
        std::move(client_options), upstream_, [this](const PolicySnapshotPtr& s) { return Relay(s); },
        [this] { MarkDirty(); }, random_, logger_);
    if (!client.ok()) return client.status();
    {
      absl::MutexLock lock(&mu_);
      client_ = std::move(*client);
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
    std::unique_ptr<PolicyStreamClient> client;
    {
      absl::MutexLock lock(&mu_);
      client = std::move(client_);
    }
    client.reset();  // joins its thread, which may call back into this object
  }

  PolicyDistributionService* service() { return service_.get(); }

  int64_t relayed_version() const { return PublishedPolicyVersion(publisher_).value_or(0); }
  size_t proxies() const {
    absl::MutexLock lock(&mu_);
    return proxies_.size();
  }

 private:
  struct ProxyState {
    uint64_t stream_id = 0;
    PolicyNode node;
    int64_t applied_version = 0;
    int64_t rejected_version = 0;
    std::string last_error;
    bool connected = false;
    absl::Time changed_at;
  };

  absl::Status Relay(const PolicySnapshotPtr& snapshot) {
    PublishPolicySnapshot(publisher_, *snapshot);
    version_gauge_.Set(static_cast<double>(snapshot->version()));
    logger_->info("relaying policy version {} ({} documents) to {} proxies", snapshot->version(),
                  snapshot->documents_size(), proxies());
    return absl::OkStatus();
  }

  void OnProxyEvent(const PolicyStreamEvent& e) {
    absl::MutexLock lock(&mu_);
    ProxyState& p = proxies_[e.node.id];
    if (e.kind == PolicyStreamEvent::Kind::kClosed) {
      if (p.stream_id != e.stream_id) return;  // an older stream of a proxy that reconnected
      p.connected = false;
    } else {
      p.stream_id = e.stream_id;
      p.node = e.node;
      p.connected = true;
      if (e.kind != PolicyStreamEvent::Kind::kConnected || p.applied_version == 0) {
        p.applied_version = e.applied_version;
      }
      if (e.kind == PolicyStreamEvent::Kind::kNacked) {
        p.rejected_version = e.rejected_version;
        p.last_error = e.last_error;
      }
    }
    p.changed_at = clock_.Now();
    dirty_ = true;
  }

  void MarkDirty() {
    absl::MutexLock lock(&mu_);
    dirty_ = true;
  }

  PolicyStatusReport BuildReportLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const absl::Time now = clock_.Now();
    for (auto it = proxies_.begin(); it != proxies_.end();) {
      if (!it->second.connected && now - it->second.changed_at > options_.forget_after) {
        it = proxies_.erase(it);
      } else {
        ++it;
      }
    }
    PolicyStatusReport report;
    report.set_agent_id(options_.agent_id);
    report.set_crl_number(trust_.AgentCrlNumber());
    report.set_trust_bundle(trust_.AgentTrustBundle());
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
      proxy->set_crl_number(trust_.ProxyCrlNumber(id));
      proxy->set_trust_bundle(trust_.ProxyTrustBundle(id));
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
        channel = upstream_.CurrentChannel();
        if (channel == nullptr) continue;  // not connected yet; a connection makes us dirty
        dirty_ = false;
        report = BuildReportLocked();
      }
      next_heartbeat = absl::Now() + options_.report_interval;
      // The streams' connection may carry a client certificate that has expired since it was
      // opened: a report goes on a channel with the certificate of now.
      if (auto fresh = upstream_.CallChannel(); fresh.ok()) channel = *std::move(fresh);
      grpc::ClientContext context;
      context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
      auto metadata = upstream_.Metadata();
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
        logger_->warn("policy status report to {} failed: {}", upstream_.Describe(), status.error_message());
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
  xds::UpstreamSource& upstream_;
  const TrustStatusSource& trust_;
  const Clock& clock_;
  RandomSource& random_;
  MetricsRegistry& metrics_;
  LoggerPtr logger_;
  Gauge& version_gauge_;
  Counter& reports_ok_;
  Counter& reports_failed_;
  xds::ResourcePublisher publisher_;  // what the proxies' streams get
  std::unique_ptr<PolicyDistributionService> service_;
  std::unique_ptr<PolicyStreamClient> client_ ABSL_GUARDED_BY(mu_);
  std::thread reporter_;
  std::string report_error_;  // reporter thread only
  mutable absl::Mutex mu_;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  bool dirty_ ABSL_GUARDED_BY(mu_) = true;
  std::map<std::string, ProxyState> proxies_ ABSL_GUARDED_BY(mu_);
};

PolicyRelay::PolicyRelay(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

absl::StatusOr<std::unique_ptr<PolicyRelay>> PolicyRelay::Create(const PolicyRelayOptions& options,
                                                                 xds::UpstreamSource& upstream,
                                                                 const TrustStatusSource& trust, const Clock& clock,
                                                                 RandomSource& random, MetricsRegistry& metrics,
                                                                 LoggerPtr logger) {
  if (options.agent_id.empty() || options.agent_id.size() > 256) {
    return absl::InvalidArgumentError("--agent-id: must be 1 to 256 characters");
  }
  auto impl = std::make_unique<Impl>(options, upstream, trust, clock, random, metrics, std::move(logger));
  if (auto s = impl->Init(); !s.ok()) return s;
  return std::unique_ptr<PolicyRelay>(new PolicyRelay(std::move(impl)));
}

PolicyRelay::~PolicyRelay() = default;

grpc::Service* PolicyRelay::service() { return impl_->service()->service(); }
absl::Status PolicyRelay::Start() { return impl_->Start(); }
void PolicyRelay::ReportSoon() { impl_->ReportSoon(); }
int64_t PolicyRelay::relayed_version() const { return impl_->relayed_version(); }
size_t PolicyRelay::proxies() const { return impl_->proxies(); }

}  // namespace meshid::policy
