#include "daemons/agent.h"

#include <sys/stat.h>

#include <atomic>
#include <map>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/file_poller.h"
#include "common/files.h"
#include "common/http_status_server.h"
#include "common/metrics.h"
#include "common/net.h"
#include "common/random.h"
#include "common/x509.h"
#include "nodeagent/ca_client.h"
#include "nodeagent/reloading_ca_client.h"
#include "nodeagent/server_upstream.h"
#include "nodeagent/token_source.h"
#include "policy/client.h"
#include "registration/receiver.h"
#include "registration/wire.h"
#include "revocation/receiver.h"
#include "revocation/wire.h"
#include "trustbundle/receiver.h"
#include "trustbundle/wire.h"
#include "workload/attestor.h"
#include "workload/node_sds.h"
#include "workload/peer_listener.h"
#include "workload/workload_api.h"
#include "xds/client.h"

namespace meshid::daemons {

using envoy::service::discovery::v3::DiscoveryResponse;

namespace {

// What the agent reports about trust in `meshid status`: the CRL it enforces and the roots its
// ROOTCA holds, and per proxy those of the ROOTCA its SDS streams last acknowledged. Fed by the
// CRL and trust bundle receivers' listeners and the SDS server's observer; read by the policy
// relay's reporter.
class NodeTrustStatus final : public policy::TrustStatusSource {
 public:
  explicit NodeTrustStatus(const SecretCache& cache) : cache_(cache) {}

  void SetAgentCrlNumber(int64_t number) {
    agent_crl_number_ = number;
    Changed();
  }
  void TrustBundleChanged() { Changed(); }
  // Called under an SDS stream's lock: only bookkeeping.
  void OnSdsEvent(const xds::StreamEvent& e) {
    {
      absl::MutexLock lock(&mu_);
      if (e.kind == xds::StreamEvent::Kind::kClosed) {
        streams_.erase(e.stream_id);
        return;
      }
      streams_[e.stream_id] = {e.node.id(), e.client.applied_version};
    }
    if (e.kind == xds::StreamEvent::Kind::kAcked) Changed();
  }
  void SetRelay(policy::PolicyRelay* relay) { relay_ = relay; }

  int64_t AgentCrlNumber() const override { return agent_crl_number_; }
  int64_t ProxyCrlNumber(const std::string& proxy_id) const override {
    int64_t number = 0;
    for (const std::string& v : ResourceVersionsOf(proxy_id))
      number = std::max(number, cache_.CrlNumberOfRootVersion(v));
    return number;
  }
  std::string AgentTrustBundle() const override { return cache_.TrustBundle(); }
  // How many proxies acknowledged a ROOTCA whose roots are not the agent's own now (during a CA
  // rotation: who has not applied the new root yet). Envoy counts too: it is read from the SDS
  // streams, not the policy ones.
  int ProxiesBehindTheAgentsRoots() const {
    const std::string roots = AgentTrustBundle();
    std::set<std::string> proxies;
    {
      absl::MutexLock lock(&mu_);
      for (const auto& [id, stream] : streams_) proxies.insert(stream.node_id);
    }
    int behind = 0;
    for (const std::string& proxy : proxies) {
      const std::string held = ProxyTrustBundle(proxy);
      if (!held.empty() && held != roots) ++behind;
    }
    return behind;
  }
  // A proxy with several ROOTCA streams is reported with the roots of one of them: they are
  // pushed the same ROOTCA.
  std::string ProxyTrustBundle(const std::string& proxy_id) const override {
    for (const std::string& v : ResourceVersionsOf(proxy_id)) {
      if (std::string roots = cache_.TrustBundleOfRootVersion(v); !roots.empty()) return roots;
    }
    return "";
  }

 private:
  struct Stream {
    std::string node_id;
    std::string applied_version;
  };
  // The resource versions the streams of `proxy_id` last acknowledged: a state-of-the-world
  // version names every resource of the response ("v1+v2").
  std::vector<std::string> ResourceVersionsOf(const std::string& proxy_id) const {
    std::vector<std::string> versions;
    absl::MutexLock lock(&mu_);
    for (const auto& [id, stream] : streams_) {
      if (stream.node_id != proxy_id) continue;
      for (absl::string_view v : absl::StrSplit(stream.applied_version, '+')) versions.emplace_back(v);
    }
    return versions;
  }
  void Changed() {
    if (policy::PolicyRelay* relay = relay_.load()) relay->ReportSoon();
  }

  const SecretCache& cache_;
  std::atomic<int64_t> agent_crl_number_{0};
  std::atomic<policy::PolicyRelay*> relay_{nullptr};  // set once the relay exists
  mutable absl::Mutex mu_;
  std::map<uint64_t, Stream> streams_ ABSL_GUARDED_BY(mu_);
};

class AgentImpl final : public Agent {
 public:
  std::string sds_target() const override { return sds_->target(); }
  uint16_t monitoring_port() const override { return monitoring_->port(); }
  SecretCacheStats Stats() const override { return cache_->Stats(); }
  int64_t crl_number() const override {
    auto crl = crl_ != nullptr ? crl_->current() : nullptr;
    return crl != nullptr ? crl->number : 0;
  }

  ~AgentImpl() override {
    // Order: stop taking requests, stop work, then drop the keys.
    monitoring_.reset();
    anchors_watcher_.reset();
    listeners_.clear();  // they hand connections to the SDS server
    sds_.reset();
    if (trust_status_ != nullptr) trust_status_->SetRelay(nullptr);
    policy_.reset();
    revocation_stream_.reset();
    trust_bundle_stream_.reset();
    entries_stream_.reset();
    upstream_.reset();
    workers_.reset();
    cache_.reset();
  }

  // Declared in dependency order; the destructor above tears down explicitly.
  OpenSslRandom random_;
  MetricsRegistry metrics_;
  std::unique_ptr<TokenSource> token_;
  std::unique_ptr<CaClient> ca_;
  std::unique_ptr<SecretCache> cache_;
  std::unique_ptr<CacheWorkers> workers_;
  std::unique_ptr<NodeTrustStatus> trust_status_;
  std::unique_ptr<ServerUpstream> upstream_;
  std::unique_ptr<revocation::CrlReceiver> crl_;
  std::unique_ptr<xds::SotwClient> revocation_stream_;
  std::unique_ptr<trustbundle::TrustBundleReceiver> trust_bundle_;
  std::unique_ptr<xds::SotwClient> trust_bundle_stream_;
  std::unique_ptr<registration::EntryReceiver> entries_;
  std::unique_ptr<xds::SotwClient> entries_stream_;
  std::unique_ptr<policy::PolicyRelay> policy_;
  workload::PeerRegistry peers_;
  std::unique_ptr<workload::WorkloadAttestor> attestor_;
  std::unique_ptr<workload::WorkloadApiService> workload_api_;
  std::unique_ptr<workload::NodeSecretProvider> node_secrets_;
  std::unique_ptr<sds::SdsServer> sds_;
  std::vector<std::unique_ptr<workload::PeerListener>> listeners_;
  std::unique_ptr<FilePoller> anchors_watcher_;
  std::unique_ptr<HttpStatusServer> monitoring_;
};

}  // namespace

absl::Status AgentConfig::Validate() const {
  std::vector<std::string> problems;
  auto check = [&](const absl::Status& s, absl::string_view flag) {
    if (!s.ok()) problems.push_back(absl::StrCat(flag, ": ", s.message()));
  };
  check(ParseServerTarget(ca_address).status(), "--ca-addr");
  if (!policy.server_address.empty()) check(ParseServerTarget(policy.server_address).status(), "--policy-server");
  if (!ca_insecure_plaintext && ca_root_file.empty())
    problems.push_back("--ca-root: required unless --ca-insecure-plaintext");
  if (token_file.empty()) problems.push_back("--token-file: required");
  if (sds.socket_path.empty()) problems.push_back("--sds-socket: required");
  if (mode == AgentMode::kNode && workload_api_socket.empty()) {
    problems.push_back("--workload-api-socket: required with --mode node");
  }
  if (!workload_api_socket.empty() && workload_api_socket == sds.socket_path) {
    problems.push_back("--workload-api-socket: must differ from --sds-socket");
  }
  if (sds.socket_mode != 0600 && sds.socket_mode != 0660) problems.push_back("socket mode must be 0600 or 0660");
  check(ParseHostPort(monitoring_address).status(), "--monitoring-addr");
  check(ValidateSecretCacheOptions(cache), "secret cache");
  if (worker_threads < 1 || worker_threads > 64) problems.push_back("--workers: must be between 1 and 64");
  if (problems.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrJoin(problems, "; "));
}

absl::StatusOr<std::unique_ptr<Agent>> Agent::Start(const AgentConfig& config, const Clock& clock, LoggerPtr logger) {
  if (auto status = config.Validate(); !status.ok()) return status;
  auto agent = std::make_unique<AgentImpl>();

  if (!config.ca_insecure_plaintext) {
    auto root = ReadFile(config.ca_root_file, 1 << 20);
    if (!root.ok()) return absl::InvalidArgumentError(absl::StrCat("--ca-root: ", root.status().message()));
    if (auto certs = CertsFromPem(*root, config.ca_root_file); !certs.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--ca-root: ", certs.status().message()));
    }
  } else {
    logger->warn("talking to the CA without TLS (--ca-insecure-plaintext): tokens travel in clear text");
  }
  if (struct stat st{}; ::stat(config.token_file.c_str(), &st) != 0) {
    logger->warn("token file {} does not exist yet; certificate requests fail until it does", config.token_file);
  }

  CaClientOptions ca_options;
  ca_options.address = config.ca_address;
  ca_options.tls_server_name = config.ca_server_name;
  ca_options.insecure_plaintext = config.ca_insecure_plaintext;
  // The roots: --ca-root, and the trust bundle the server pushed (written by the receiver below).
  const std::string pushed_bundle_file = config.ca_insecure_plaintext ? "" : config.trust_bundle_state_file;
  agent->ca_ = std::make_unique<ReloadingCaClient>(ca_options, config.ca_root_file, pushed_bundle_file, logger);
  agent->token_ = MakeFileTokenSource(config.token_file);

  auto cache =
      SecretCache::Create(config.cache, *agent->ca_, *agent->token_, clock, agent->random_, agent->metrics_, logger);
  if (!cache.ok()) return cache.status();
  agent->cache_ = std::move(*cache);

  if (!config.trust_anchors_file.empty()) {
    auto anchors = ReadFile(config.trust_anchors_file, 1 << 20);
    if (!anchors.ok()) return absl::InvalidArgumentError(absl::StrCat("--trust-anchors: ", anchors.status().message()));
    if (auto status = agent->cache_->SetExtraTrustAnchors(*anchors); !status.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--trust-anchors: ", status.message()));
    }
  }

  sds::SdsServerOptions sds_options = config.sds;
  const bool revocations = config.revocations && !config.ca_insecure_plaintext;
  if (config.revocations && config.ca_insecure_plaintext) {
    logger->warn("--ca-insecure-plaintext: no trust bundle to check CRLs against; revocations are not received");
  }
  const bool workloads = !config.workload_api_socket.empty();
  if (config.policy.enabled || workloads || !config.ca_insecure_plaintext) {
    // One connection to the server for every stream from it.
    ServerUpstreamOptions upstream_options;
    upstream_options.server_address =
        config.policy.server_address.empty() ? config.ca_address : config.policy.server_address;
    upstream_options.ca_root_file = config.ca_root_file;
    upstream_options.pushed_bundle_file = pushed_bundle_file;
    upstream_options.server_name = config.ca_server_name;
    upstream_options.insecure_plaintext = config.ca_insecure_plaintext;
    upstream_options.max_message_bytes = std::max<int>(
        policy::kMaxPolicyMessageBytes, static_cast<int>(revocation::kMaxRevocationListBytes) + (1 << 20));
    auto upstream = ServerUpstream::Create(upstream_options, *agent->cache_, *agent->token_);
    if (!upstream.ok()) return upstream.status();
    agent->upstream_ = std::move(*upstream);
  }
  agent->trust_status_ = std::make_unique<NodeTrustStatus>(*agent->cache_);
  NodeTrustStatus* status = agent->trust_status_.get();
  sds_options.observer = [status](const xds::StreamEvent& e) { status->OnSdsEvent(e); };
  // A stream from the server on the agent's one connection to it, named for its logs.
  auto open_stream = [&](const xds::ResourceType& type, const char* description, xds::ResponseHandler handler) {
    xds::SotwClientOptions options;
    options.node.set_id(config.policy.agent_id.empty() ? policy::DefaultAgentId() : config.policy.agent_id);
    options.description = description;
    return xds::SotwClient::Create(type, std::move(options), *agent->upstream_, std::move(handler), agent->random_,
                                   logger);
  };
  if (!config.ca_insecure_plaintext) {
    // The CA's trust bundle: a rotation's new root reaches ROOTCA, the CA client and the CRL check
    // before anything is signed under it, and the old root leaves when the rotation retires it.
    SecretCache* cache = agent->cache_.get();
    auto receiver = trustbundle::TrustBundleReceiver::Create(
        {.bootstrap_file = config.ca_root_file, .state_file = config.trust_bundle_state_file}, clock, agent->metrics_,
        logger, [cache, status, logger](const std::shared_ptr<const trustbundle::NodeTrustBundle>& bundle) {
          if (absl::Status s = cache->SetCaTrustBundle(bundle->roots_pem); !s.ok()) {
            logger->error("the pushed trust bundle cannot be served in ROOTCA: {}", s.message());
          }
          status->TrustBundleChanged();
        });
    if (!receiver.ok()) {
      return absl::Status(receiver.status().code(), absl::StrCat("--trust-bundle-file: ", receiver.status().message()));
    }
    agent->trust_bundle_ = std::move(*receiver);
    trustbundle::TrustBundleReceiver* bundles = agent->trust_bundle_.get();
    auto stream = open_stream(trustbundle::TrustBundleType(), "trust bundle stream",
                              [bundles](const DiscoveryResponse& response) { return bundles->OnResponse(response); });
    if (!stream.ok()) return stream.status();
    agent->trust_bundle_stream_ = std::move(*stream);
  }
  if (revocations) {
    SecretCache* cache = agent->cache_.get();
    auto receiver = revocation::CrlReceiver::Create(
        {.trust_bundle_file = config.ca_root_file,
         .pushed_bundle_file = pushed_bundle_file,
         .state_file = config.crl_state_file},
        clock, agent->metrics_, logger, [cache, status](const std::shared_ptr<const revocation::NodeCrl>& crl) {
          cache->SetCrl(crl->pem, crl->index);
          status->SetAgentCrlNumber(crl->number);
        });
    if (!receiver.ok())
      return absl::Status(receiver.status().code(), absl::StrCat("--crl-file: ", receiver.status().message()));
    agent->crl_ = std::move(*receiver);
    revocation::CrlReceiver* crl = agent->crl_.get();
    auto stream = open_stream(revocation::RevocationListType(), "revocation stream",
                              [crl](const DiscoveryResponse& response) { return crl->OnResponse(response); });
    if (!stream.ok()) return stream.status();
    agent->revocation_stream_ = std::move(*stream);
  }
  if (workloads) {
    // The registration entries whose parent is this agent, for the workloads on its node.
    SecretCache* cache = agent->cache_.get();
    agent->entries_ = std::make_unique<registration::EntryReceiver>([cache] { return cache->AgentSpiffeId(); },
                                                                    agent->metrics_, logger);
    registration::EntryReceiver* entries = agent->entries_.get();
    auto stream = open_stream(registration::EntrySetType(), "registration stream",
                              [entries](const DiscoveryResponse& response) { return entries->OnResponse(response); });
    if (!stream.ok()) return stream.status();
    agent->entries_stream_ = std::move(*stream);

    auto attestor = workload::WorkloadAttestor::Create({}, agent->metrics_);
    if (!attestor.ok()) return attestor.status();
    agent->attestor_ = std::move(*attestor);
    workload::PeerSelectors attest = workload::AttestedPeerSelectors(agent->peers_, *agent->attestor_);
    agent->workload_api_ =
        std::make_unique<workload::WorkloadApiService>(*agent->cache_, *entries, attest, agent->metrics_, logger);
    sds_options.extra_services.push_back(agent->workload_api_.get());
    if (config.mode == AgentMode::kNode) {
      agent->node_secrets_ = std::make_unique<workload::NodeSecretProvider>(*agent->cache_, *entries, attest);
      sds_options.listen = false;  // SDS callers are attested too: the agent accepts them itself
    }
    AgentImpl* raw = agent.get();
    sds_options.adopt_connections = [raw, &config, logger](grpc::Server& server) -> absl::Status {
      std::vector<workload::PeerListenerOptions> sockets;
      // Any local process may ask; what it gets depends on what it is.
      sockets.push_back({.socket_path = config.workload_api_socket, .socket_mode = 0666});
      if (config.mode == AgentMode::kNode) {
        // Open to every local process, like the Workload API socket (SPIRE serves SDS on that one
        // socket): a caller gets what attestation or its token says, and an unknown one nothing.
        // --sds-socket-group narrows it to a group.
        sockets.push_back({.socket_path = config.sds.socket_path,
                           .socket_mode = config.sds.socket_group.has_value() ? 0660 : 0666,
                           .socket_group = config.sds.socket_group});
      }
      for (const auto& options : sockets) {
        auto listener = workload::PeerListener::Create(options, raw->peers_, server, raw->metrics_, logger);
        if (!listener.ok()) {
          const char* flag =
              options.socket_path == config.workload_api_socket ? "--workload-api-socket" : "--sds-socket";
          return absl::Status(listener.status().code(), absl::StrCat(flag, ": ", listener.status().message()));
        }
        raw->listeners_.push_back(std::move(*listener));
      }
      return absl::OkStatus();
    };
  }
  if (config.policy.enabled) {
    auto relay = policy::PolicyRelay::Create(config.policy, *agent->upstream_, *agent->trust_status_, clock,
                                             agent->random_, agent->metrics_, logger);
    if (!relay.ok()) return relay.status();
    agent->policy_ = std::move(*relay);
    agent->trust_status_->SetRelay(agent->policy_.get());
    sds_options.extra_services.push_back(agent->policy_->service());
  }
  xds::ResourceProvider& secrets = agent->node_secrets_ != nullptr
                                       ? static_cast<xds::ResourceProvider&>(*agent->node_secrets_)
                                       : static_cast<xds::ResourceProvider&>(*agent->cache_);
  auto sds = sds::SdsServer::Create(sds_options, secrets, agent->metrics_, agent->random_, logger);
  if (!sds.ok()) {
    // The peer listeners' errors (adopt_connections) already name their flag.
    if (absl::StartsWith(sds.status().message(), "--")) return sds.status();
    return absl::Status(sds.status().code(), absl::StrCat("--sds-socket: ", sds.status().message()));
  }
  agent->sds_ = std::move(*sds);
  if (agent->policy_ != nullptr) {
    if (auto status = agent->policy_->Start(); !status.ok()) return status;
  }
  agent->workers_ = std::make_unique<CacheWorkers>(*agent->cache_, config.worker_threads);

  if (!config.trust_anchors_file.empty()) {
    SecretCache* cache_ptr = agent->cache_.get();
    agent->anchors_watcher_ = std::make_unique<FilePoller>(
        config.trust_anchors_file, config.file_poll_interval, [cache_ptr, logger](const std::string& pem) {
          if (auto status = cache_ptr->SetExtraTrustAnchors(pem); !status.ok()) {
            logger->error("ignoring the changed trust anchors file: {}", status.message());
          }
        });
  }

  agent->metrics_.AddComputedGauge(
      "meshid_agent_proxies_behind_trust_bundle",
      "Proxies whose acknowledged ROOTCA does not hold the roots the agent holds now (a CA rotation not yet applied)",
      [status] { return static_cast<double>(status->ProxiesBehindTheAgentsRoots()); });
  AgentImpl* raw = agent.get();
  std::map<std::string, HttpHandler> handlers;
  handlers["/metrics"] = [raw](const std::string&) {
    return HttpReply{200, "text/plain; version=0.0.4; charset=utf-8", raw->metrics_.RenderPrometheus()};
  };
  // Liveness: the agent runs and serves SDS. A CA outage does not make it unhealthy; restarting
  // it would only throw away certificates that are still valid.
  handlers["/healthz"] = [](const std::string&) { return HttpReply{200, "text/plain; charset=utf-8", "ok\n"}; };
  auto ready = [raw](const std::string&) {
    auto stats = raw->cache_->Stats();
    if (!stats.agent_identity_ready) {
      return HttpReply{503, "text/plain; charset=utf-8", "not ready: no valid certificate for the agent's identity\n"};
    }
    return HttpReply{
        200, "text/plain; charset=utf-8",
        absl::StrCat("ready: ", stats.identities, " identities, ", raw->sds_->connected_streams(), " streams\n")};
  };
  handlers["/readyz"] = ready;
  handlers["/healthz/ready"] = ready;  // istio-agent's path
  auto monitoring = HttpStatusServer::Create(config.monitoring_address, std::move(handlers));
  if (!monitoring.ok()) {
    return absl::Status(monitoring.status().code(), absl::StrCat("--monitoring-addr: ", monitoring.status().message()));
  }
  agent->monitoring_ = std::move(*monitoring);
  logger->info("sds listening on {} ({} mode), Workload API on {}, monitoring on port {}, CA {}", agent->sds_->target(),
               config.mode == AgentMode::kNode ? "node" : "workload", workloads ? config.workload_api_socket : "(none)",
               agent->monitoring_->port(), config.ca_address);
  return std::unique_ptr<Agent>(std::move(agent));
}

}  // namespace meshid::daemons
