// Internals shared by proxy.cc (lifecycle, snapshots, admin) and sessions.cc (connections).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "authz/authn_policies.h"
#include "authz/policy_engine.h"
#include "meshproxy/proxy.h"
#include "meshproxy/transport.h"

namespace meshid::meshproxy {

enum class PortProtocol { kHttp, kTcp, kDetect };

struct PortPolicy {
  authz::PeerMode mode = authz::PeerMode::kPermissive;
  PortProtocol protocol = PortProtocol::kDetect;
};

// One applied policy, with what the listeners derive from it (computed off the workers).
struct PolicyState {
  std::string version;
  std::shared_ptr<const authz::PolicyEngine> engine;
  std::vector<PortPolicy> ports;  // parallel to ProxyOptions::inbound
  absl::Time applied_at;
};

// The listener-level mTLS mode and protocol of each inbound port under `engine`.
std::vector<PortPolicy> ComputePortPolicies(const authz::PolicyEngine& engine, const ProxyOptions& options);

enum ListenerKind { kInbound = 0, kOutbound = 1 };

struct ProxyStats {
  explicit ProxyStats(MetricsRegistry& metrics);
  // meshid_proxy_requests_total{listener,response_code}; registered on first use of a code.
  Counter& Response(ListenerKind listener, int code);

  MetricsRegistry& metrics;
  std::array<Counter*, 2> cx_total{};
  std::array<Gauge*, 2> cx_active{};
  std::array<Counter*, 2> tls_handshake_failures{};  // inbound: callers; outbound: upstreams
  std::array<Counter*, 2> bad_requests{};            // requests refused by the parser
  Counter* strict_plaintext_refused = nullptr;
  Counter* rbac_allowed_http = nullptr;
  Counter* rbac_denied_http = nullptr;
  Counter* rbac_allowed_tcp = nullptr;
  Counter* rbac_denied_tcp = nullptr;
  Counter* authn_failed = nullptr;
  Counter* policy_errors = nullptr;
  Counter* shadow_denied = nullptr;
  Counter* upstream_connect_failures = nullptr;
  Counter* upstream_identity_mismatch = nullptr;
  Counter* app_connect_failures = nullptr;
  Counter* revoked_peers_refused = nullptr;       // handshakes refused: the peer's certificate is on the CRL
  Counter* revoked_connections_closed = nullptr;  // open connections closed when a new CRL listed their peer

 private:
  std::array<std::array<std::atomic<Counter*>, 600>, 2> codes_{};
};

// What the sessions need from the proxy.
struct ProxyCore {
  ProxyCore(ProxyOptions o, LoggerPtr l, MetricsRegistry& m, const Clock& c)
      : options(std::move(o)), logger(std::move(l)), clock(c), stats(m) {}

  std::shared_ptr<const PolicyState> policy() const { return policy_.load(std::memory_order_acquire); }
  std::shared_ptr<const TlsContexts> tls() const { return tls_.load(std::memory_order_acquire); }

  const ProxyOptions options;
  LoggerPtr logger;
  const Clock& clock;
  ProxyStats stats;
  std::string service_fqdn;                       // <service>.<ns>.svc.<domain>
  std::vector<tcp::endpoint> app_endpoints;       // parallel to options.inbound
  std::vector<tcp::endpoint> upstream_endpoints;  // parallel to options.upstreams

  std::atomic<std::shared_ptr<const PolicyState>> policy_;
  std::atomic<std::shared_ptr<const TlsContexts>> tls_;
  std::atomic<bool> stopping{false};  // set before shutdown: new connections are closed at once
};

struct Conn;
// The live connections of one worker, so that shutdown can end them. Used on that worker only.
class ConnRegistry {
 public:
  void Add(Conn* c) { conns_.insert(c); }
  void Remove(Conn* c) { conns_.erase(c); }
  // Closes every connection's sockets; their coroutines then finish on their own.
  void CloseAll();
  // Closes what `revoked` lists the peer of: an inbound connection whole (its caller is no longer
  // trusted; a request in flight is reset, as when Envoy closes a connection), an outbound one's
  // upstream side (the app's request in flight gets Envoy's 503 for a terminated upstream).
  // Returns how many connections it closed.
  size_t CloseRevoked(const RevocationIndex& revoked);

 private:
  std::unordered_set<Conn*> conns_;
};

// Connection handlers, run as coroutines on the accepting worker (whose registry is `reg`).
Task<void> ServeInbound(ProxyCore& core, ConnRegistry& reg, tcp::socket socket, size_t port_index);
Task<void> ServeOutbound(ProxyCore& core, ConnRegistry& reg, tcp::socket socket);
Task<void> ServeUpstreamTcp(ProxyCore& core, ConnRegistry& reg, tcp::socket socket, size_t upstream_index);

}  // namespace meshid::meshproxy
