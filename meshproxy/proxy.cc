#include "meshproxy/proxy.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/spiffe_id.h"
#include "common/status_macros.h"
#include "meshproxy/proxy_internal.h"

namespace meshid::meshproxy {

// ---- flags and names ----

absl::StatusOr<Upstream> ParseUpstreamFlag(absl::string_view flag, absl::string_view own_namespace,
                                           absl::string_view domain) {
  const size_t eq = flag.find('=');
  if (eq == absl::string_view::npos || eq == 0) {
    return absl::InvalidArgumentError(absl::StrCat("\"", flag, "\" is not NAME=ADDR[,spiffe://ID][,listen=ADDR]"));
  }
  Upstream u;
  u.name = absl::AsciiStrToLower(flag.substr(0, eq));
  std::vector<std::string> labels = absl::StrSplit(u.name, '.');
  for (const auto& l : labels) {
    if (l.empty() || !std::all_of(l.begin(), l.end(), [](char c) { return absl::ascii_isalnum(c) || c == '-'; })) {
      return absl::InvalidArgumentError(absl::StrCat("upstream name \"", u.name, "\" is not a DNS name"));
    }
  }
  const std::string svc_domain = absl::StrCat("svc.", domain);
  if (labels.size() == 1) {
    u.namespace_ = std::string(own_namespace);
  } else if (labels.size() == 2 || (labels.size() == 3 && labels[2] == "svc") ||
             u.name == absl::StrCat(labels[0], ".", labels[1], ".", svc_domain)) {
    u.namespace_ = labels[1];
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("upstream name \"", u.name,
                     "\" must be <service>, <service>.<namespace> or <service>.<namespace>.", svc_domain));
  }
  u.service_account = labels[0];
  u.fqdn = absl::StrCat(labels[0], ".", u.namespace_, ".", svc_domain);
  std::vector<absl::string_view> parts = absl::StrSplit(flag.substr(eq + 1), ',');
  auto addr = ParseHostPort(parts[0]);
  if (!addr.ok()) return absl::InvalidArgumentError(absl::StrCat("upstream ", u.name, ": ", addr.status().message()));
  u.address = *addr;
  for (size_t i = 1; i < parts.size(); ++i) {
    absl::string_view p = parts[i];
    if (absl::ConsumePrefix(&p, "listen=")) {
      auto listen = ParseHostPort(p);
      if (!listen.ok())
        return absl::InvalidArgumentError(absl::StrCat("upstream ", u.name, ": listen=: ", listen.status().message()));
      u.tcp_listen = *listen;
    } else if (absl::StartsWith(p, "spiffe://")) {
      auto id = SpiffeId::Parse(p);
      if (!id.ok()) return absl::InvalidArgumentError(absl::StrCat("upstream ", u.name, ": ", id.status().message()));
      u.spiffe_id = id->ToString();
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("upstream ", u.name, ": \"", p, "\" is neither spiffe://... nor listen=ADDR"));
    }
  }
  return u;
}

std::string ExpectedUpstreamIdentity(const Upstream& upstream, absl::string_view own_spiffe_id) {
  if (!upstream.spiffe_id.empty()) return upstream.spiffe_id;
  auto own = SpiffeId::Parse(own_spiffe_id);
  const std::string td = own.ok() ? own->trust_domain() : "cluster.local";
  return absl::StrCat("spiffe://", td, "/ns/", upstream.namespace_, "/sa/", upstream.service_account);
}

bool HostMatchesUpstream(absl::string_view host, const Upstream& upstream) {
  if (const size_t colon = host.rfind(':');
      colon != absl::string_view::npos && host.find(']') == absl::string_view::npos) {
    host = host.substr(0, colon);
  }
  const std::string h = absl::AsciiStrToLower(host);
  const std::string short_ns = absl::StrCat(upstream.service_account, ".", upstream.namespace_);
  return h == upstream.name || h == upstream.fqdn || h == short_ns || h == absl::StrCat(short_ns, ".svc");
}

// ---- policy → listeners ----

namespace {

// Istio's protocol selection from a Service port name: "<protocol>[-<suffix>]".
PortProtocol ProtocolFromPortName(absl::string_view name) {
  if (name.empty()) return PortProtocol::kDetect;
  const std::string p = absl::AsciiStrToLower(name.substr(0, name.find('-')));
  if (p == "http") return PortProtocol::kHttp;
  // HTTP/2 and gRPC are proxied as TCP: this proxy speaks HTTP/1.1 only.
  for (const char* tcp : {"http2", "grpc", "https", "tcp", "tls", "mongo", "mysql", "redis", "thrift", "udp"}) {
    if (p == tcp) return PortProtocol::kTcp;
  }
  return PortProtocol::kDetect;
}

}  // namespace

std::vector<PortPolicy> ComputePortPolicies(const authz::PolicyEngine& engine, const ProxyOptions& options) {
  const authz::PolicySet& set = engine.policies();
  const std::string fqdn = absl::StrCat(options.service, ".", options.namespace_, ".svc.", options.domain);
  const rbac::Service* service = nullptr;
  for (const auto& s : set.rbac.services) {
    if (s.hostname == fqdn) service = &s;
  }
  std::map<std::string, std::string> labels;
  if (service != nullptr) labels = service->selector;
  for (const auto& [k, v] : options.labels) labels[k] = v;
  std::vector<const authz::PeerAuthentication*> beta;
  for (const auto& p : set.peer_authn) {
    if (p.ref.namespace_ == options.namespace_ || p.ref.namespace_ == options.root_namespace) beta.push_back(&p);
  }
  std::vector<const authz::AuthnPolicy*> alpha;
  for (const auto& p : set.authn) {
    if (p.is_mesh() || p.ref.namespace_ == options.namespace_) alpha.push_back(&p);
  }
  std::vector<PortPolicy> out;
  for (const auto& in : options.inbound) {
    PortPolicy pp;
    const uint32_t workload_port = in.app.port;
    const rbac::ServicePort* sp = service != nullptr ? service->PortForWorkloadPort(workload_port) : nullptr;
    if (auto composed =
            authz::ComposePeerAuthentication(beta, options.namespace_, labels, workload_port, options.root_namespace)) {
      pp.mode = composed->mode;
    } else if (const authz::AuthnPolicy* p = authz::SelectAuthnPolicy(
                   alpha, options.service, options.namespace_, sp ? sp->port : workload_port, sp ? sp->name : "")) {
      pp.mode = authz::AlphaPolicyMode(p);
    } else {
      pp.mode = authz::PeerMode::kPermissive;  // no authentication policy at all
    }
    if (pp.mode == authz::PeerMode::kUnset) pp.mode = authz::PeerMode::kPermissive;
    pp.protocol = sp != nullptr ? ProtocolFromPortName(sp->name) : PortProtocol::kDetect;
    out.push_back(pp);
  }
  return out;
}

// ---- stats ----

ProxyStats::ProxyStats(MetricsRegistry& m) : metrics(m) {
  for (int k : {kInbound, kOutbound}) {
    const MetricLabels l = {{"listener", k == kInbound ? "inbound" : "outbound"}};
    cx_total[k] = &m.AddCounter("meshid_proxy_downstream_cx_total", "Connections accepted", l);
    cx_active[k] = &m.AddGauge("meshid_proxy_downstream_cx_active", "Connections open", l);
    tls_handshake_failures[k] =
        &m.AddCounter("meshid_proxy_tls_handshake_failures_total",
                      "Failed TLS handshakes (inbound: with callers; outbound: with upstreams)", l);
    bad_requests[k] = &m.AddCounter("meshid_proxy_bad_requests_total", "Requests refused as malformed HTTP", l);
  }
  strict_plaintext_refused = &m.AddCounter("meshid_proxy_strict_plaintext_refused_total",
                                           "Plaintext connections closed because the port is mTLS STRICT");
  rbac_allowed_http = &m.AddCounter("meshid_proxy_rbac_allowed_total", "Requests/connections allowed by policy",
                                    {{"protocol", "http"}});
  rbac_allowed_tcp =
      &m.AddCounter("meshid_proxy_rbac_allowed_total", "Requests/connections allowed by policy", {{"protocol", "tcp"}});
  rbac_denied_http = &m.AddCounter("meshid_proxy_rbac_denied_total", "Requests/connections denied by authorization",
                                   {{"protocol", "http"}});
  rbac_denied_tcp = &m.AddCounter("meshid_proxy_rbac_denied_total", "Requests/connections denied by authorization",
                                  {{"protocol", "tcp"}});
  authn_failed = &m.AddCounter("meshid_proxy_authn_failed_total", "Requests refused by authentication (401)");
  policy_errors =
      &m.AddCounter("meshid_proxy_policy_errors_total", "Requests/connections the policy could not evaluate (denied)");
  shadow_denied = &m.AddCounter("meshid_proxy_rbac_shadow_denied_total",
                                "Requests/connections shadow (dry-run/permissive) rules would have denied");
  upstream_connect_failures =
      &m.AddCounter("meshid_proxy_upstream_cx_connect_failures_total", "Failed TCP connects to upstream proxies");
  upstream_identity_mismatch = &m.AddCounter("meshid_proxy_upstream_identity_mismatch_total",
                                             "Upstreams refused because their SPIFFE ID was not the expected one");
  app_connect_failures =
      &m.AddCounter("meshid_proxy_app_cx_connect_failures_total", "Failed connects to the local app");
  revoked_peers_refused = &m.AddCounter("meshid_proxy_revoked_peers_refused_total",
                                        "TLS handshakes refused because the peer's certificate is on the CRL");
  revoked_connections_closed = &m.AddCounter("meshid_proxy_revoked_connections_closed_total",
                                             "Open connections closed because a new CRL revoked their peer");
}

Counter& ProxyStats::Response(ListenerKind listener, int code) {
  if (code < 0 || code >= 600) code = 0;
  std::atomic<Counter*>& slot = codes_[listener][code];
  Counter* c = slot.load(std::memory_order_acquire);
  if (c == nullptr) {
    c = &metrics.AddCounter(
        "meshid_proxy_requests_total", "HTTP responses sent downstream, by status code",
        {{"listener", listener == kInbound ? "inbound" : "outbound"}, {"response_code", absl::StrCat(code)}});
    slot.store(c, std::memory_order_release);
  }
  return *c;
}

// ---- the proxy ----

namespace {

auto Redirect(ErrorCode& ec) { return asio::redirect_error(asio::use_awaitable, ec); }

using Serve = std::function<Task<void>(tcp::socket)>;

Task<void> AcceptLoop(tcp::acceptor& acceptor, Serve serve, LoggerPtr logger) {
  auto ex = co_await asio::this_coro::executor;
  while (true) {
    ErrorCode ec;
    tcp::socket socket = co_await acceptor.async_accept(Redirect(ec));
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
      // Out of descriptors or memory: wait a little instead of spinning.
      logger->warn("accept failed: {}", ec.message());
      asio::steady_timer pause(ex, std::chrono::milliseconds(50));
      co_await pause.async_wait(Redirect(ec));
      continue;
    }
    asio::co_spawn(ex, serve(std::move(socket)), asio::detached);
  }
}

std::string Rfc3339(absl::Time t) { return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone()); }

nlohmann::json CertJson(const CertificateInfo& c, absl::Time now) {
  return {{"serial_number", c.serial},
          {"spiffe_id", c.spiffe_id},
          {"valid_from", Rfc3339(c.not_before)},
          {"expiration_time", Rfc3339(c.not_after)},
          {"seconds_until_expiration", absl::ToInt64Seconds(c.not_after - now)}};
}

class ProxyImpl final : public Proxy {
 public:
  // Resolves the addresses and binds every listener (the workers start serving at once).
  static absl::StatusOr<std::unique_ptr<Proxy>> Create(ProxyOptions options, LoggerPtr logger, MetricsRegistry& metrics,
                                                       const Clock& clock) {
    std::unique_ptr<ProxyImpl> proxy(new ProxyImpl(std::move(options), std::move(logger), metrics, clock));
    MESHID_RETURN_IF_ERROR(proxy->Listen(metrics));
    return proxy;
  }

  ~ProxyImpl() override { Shutdown(); }

 private:
  ProxyImpl(ProxyOptions options, LoggerPtr logger, MetricsRegistry& metrics, const Clock& clock)
      : core_(std::make_shared<ProxyCore>(std::move(options), std::move(logger), metrics, clock)) {}

  absl::Status Listen(MetricsRegistry& metrics) {
    ProxyCore& core = *core_;
    const ProxyOptions& o = core.options;
    core.service_fqdn = absl::StrCat(o.service, ".", o.namespace_, ".svc.", o.domain);
    asio::io_context resolver_io;
    tcp::resolver resolver(resolver_io);
    auto resolve = [&](const HostPort& hp, absl::string_view what) -> absl::StatusOr<tcp::endpoint> {
      ErrorCode ec;
      auto results = resolver.resolve(hp.host, std::to_string(hp.port), ec);
      if (ec || results.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(what, " ", hp.ToString(), ": cannot resolve: ", ec.message()));
      }
      return results.begin()->endpoint();
    };
    for (const auto& in : o.inbound) {
      auto ep = resolve(in.app, "--app");
      if (!ep.ok()) return ep.status();
      core.app_endpoints.push_back(*ep);
    }
    for (const auto& u : o.upstreams) {
      auto ep = resolve(u.address, absl::StrCat("--upstream ", u.name));
      if (!ep.ok()) return ep.status();
      core.upstream_endpoints.push_back(*ep);
    }

    const int n = o.workers > 0 ? o.workers : std::max(1u, std::thread::hardware_concurrency());
    for (int i = 0; i < n; ++i) workers_.push_back(std::make_unique<Worker>());

    // One acceptor per worker and listener, all on the port the first one got.
    std::weak_ptr<ProxyCore> weak = core_;
    auto listen = [&](const HostPort& hp, absl::string_view what,
                      std::function<Serve(Worker&)> make_serve) -> absl::StatusOr<HostPort> {
      auto ep = resolve(hp, what);
      if (!ep.ok()) return ep.status();
      tcp::endpoint bind_ep = *ep;
      for (auto& w : workers_) {
        auto acceptor = std::make_unique<tcp::acceptor>(w->io);
        ErrorCode ec;
        acceptor->open(bind_ep.protocol(), ec);
        if (!ec) acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
        if (!ec) {
          const int one = 1;
          if (::setsockopt(acceptor->native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
            ec = ErrorCode(errno, asio::error::get_system_category());
          }
        }
        if (!ec) acceptor->bind(bind_ep, ec);
        if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
        if (ec) return absl::UnavailableError(absl::StrCat(what, " ", hp.ToString(), ": ", ec.message()));
        bind_ep = acceptor->local_endpoint();
        w->pending.push_back({acceptor.get(), make_serve(*w)});
        w->acceptors.push_back(std::move(acceptor));
      }
      return HostPort{bind_ep.address().to_string(), bind_ep.port()};
    };
    for (size_t i = 0; i < o.inbound.size(); ++i) {
      auto bound = listen(o.inbound[i].listen, "--inbound", [this, i](Worker& w) -> Serve {
        return [this, i, &w](tcp::socket s) { return ServeInbound(*core_, w.conns, std::move(s), i); };
      });
      if (!bound.ok()) return bound.status();
      inbound_addresses_.push_back(*bound);
    }
    if (o.outbound) {
      auto bound = listen(*o.outbound, "--outbound", [this](Worker& w) -> Serve {
        return [this, &w](tcp::socket s) { return ServeOutbound(*core_, w.conns, std::move(s)); };
      });
      if (!bound.ok()) return bound.status();
      outbound_address_ = *bound;
    }
    for (size_t i = 0; i < o.upstreams.size(); ++i) {
      if (!o.upstreams[i].tcp_listen) continue;
      auto bound =
          listen(*o.upstreams[i].tcp_listen, absl::StrCat("--upstream ", o.upstreams[i].name, " listen="),
                 [this, i](Worker& w) -> Serve {
                   return [this, i, &w](tcp::socket s) { return ServeUpstreamTcp(*core_, w.conns, std::move(s), i); };
                 });
      if (!bound.ok()) return bound.status();
      upstream_tcp_addresses_.push_back(*bound);
    }

    metrics.AddComputedGauge("meshid_proxy_ready", "1 once a certificate, a root and a policy are in force", [weak] {
      auto c = weak.lock();
      return c && c->tls() && c->policy() ? 1.0 : 0.0;
    });
    metrics.AddComputedGauge("meshid_proxy_cert_expiry_seconds",
                             "Seconds until the workload certificate chain in use expires (-1: none yet)", [weak] {
                               auto c = weak.lock();
                               auto tls = c ? c->tls() : nullptr;
                               if (!tls) return -1.0;
                               absl::Time earliest = absl::InfiniteFuture();
                               for (const auto& i : tls->cert().info) earliest = std::min(earliest, i.not_after);
                               return absl::ToDoubleSeconds(earliest - c->clock.Now());
                             });
    metrics.AddComputedGauge("meshid_proxy_root_expiry_seconds",
                             "Seconds until the earliest trusted root expires (-1: none yet)", [weak] {
                               auto c = weak.lock();
                               auto tls = c ? c->tls() : nullptr;
                               if (!tls) return -1.0;
                               absl::Time earliest = absl::InfiniteFuture();
                               for (const auto& i : tls->bundle().info) earliest = std::min(earliest, i.not_after);
                               return absl::ToDoubleSeconds(earliest - c->clock.Now());
                             });
    // The CRL the handshakes check (from ROOTCA; NaN without one).
    auto crl_gauge = [weak](double (*value)(const RevocationIndex&, absl::Time)) {
      return [weak, value] {
        auto c = weak.lock();
        auto tls = c ? c->tls() : nullptr;
        if (!tls || tls->bundle().revoked == nullptr) return std::numeric_limits<double>::quiet_NaN();
        return value(*tls->bundle().revoked, c->clock.Now());
      };
    };
    metrics.AddComputedGauge("meshid_proxy_crl_number", "cRLNumber of the CRL new handshakes are checked against.",
                             crl_gauge([](const RevocationIndex& r, absl::Time) { return double(r.number()); }));
    metrics.AddComputedGauge("meshid_proxy_crl_entries", "Revoked certificates in that CRL.",
                             crl_gauge([](const RevocationIndex& r, absl::Time) { return double(r.size()); }));
    metrics.AddComputedGauge("meshid_proxy_crl_age_seconds", "Seconds since that CRL's thisUpdate.",
                             crl_gauge([](const RevocationIndex& r, absl::Time now) {
                               return absl::ToDoubleSeconds(now - r.this_update());
                             }));
    policy_updates_ok_ = &metrics.AddCounter("meshid_proxy_policy_updates_total",
                                             "Policy snapshots offered to the proxy", {{"result", "applied"}});
    policy_updates_failed_ = &metrics.AddCounter("meshid_proxy_policy_updates_total",
                                                 "Policy snapshots offered to the proxy", {{"result", "rejected"}});
    cert_updates_ = &metrics.AddCounter("meshid_proxy_secret_updates_total", "Certificates and roots taken into use",
                                        {{"secret", "default"}});
    root_updates_ = &metrics.AddCounter("meshid_proxy_secret_updates_total", "Certificates and roots taken into use",
                                        {{"secret", "ROOTCA"}});

    for (auto& w : workers_) {
      Worker* worker = w.get();
      for (auto& [acceptor, serve] : worker->pending) {
        asio::co_spawn(worker->io, AcceptLoop(*acceptor, std::move(serve), core.logger), asio::detached);
      }
      worker->pending.clear();
      worker->thread = std::thread([worker] {
        worker->io.run();
        worker->finished.Notify();
      });
    }
    return absl::OkStatus();
  }

 public:
  absl::Status ApplyWorkloadCert(std::shared_ptr<const WorkloadCert> cert) override {
    if (cert == nullptr || cert->chain.empty()) return absl::InvalidArgumentError("no certificate");
    absl::MutexLock lock(&mu_);
    if (bundle_ != nullptr) MESHID_RETURN_IF_ERROR(Publish(cert, bundle_));
    cert_ = cert;
    cert_updates_->Increment();
    core_->logger->info("certificate {} (serial {}, expires {}) in use for new connections", cert->spiffe_id,
                        cert->info[0].serial, Rfc3339(cert->info[0].not_after));
    return absl::OkStatus();
  }

  absl::Status ApplyTrustBundle(std::shared_ptr<const TrustBundle> bundle) override {
    if (bundle == nullptr || bundle->roots.empty()) return absl::InvalidArgumentError("no roots");
    absl::MutexLock lock(&mu_);
    if (cert_ != nullptr) MESHID_RETURN_IF_ERROR(Publish(cert_, bundle));
    const bool new_crl = bundle->revoked != nullptr && (bundle_ == nullptr || bundle_->revoked == nullptr ||
                                                        bundle_->revoked->number() != bundle->revoked->number() ||
                                                        bundle_->revoked->size() != bundle->revoked->size());
    bundle_ = bundle;
    root_updates_->Increment();
    core_->logger->info(
        "trust bundle version {} ({} roots{}) in use for new connections", bundle->version, bundle->roots.size(),
        bundle->revoked
            ? absl::StrCat(", CRL ", bundle->revoked->number(), " with ", bundle->revoked->size(), " revoked")
            : "");
    if (new_crl) {
      // Connections already open from (or to) a peer the new CRL lists end now, each on its
      // own worker. The bundle keeps the index alive until every worker has looked.
      for (auto& w : workers_) {
        Worker* worker = w.get();
        asio::post(worker->io, [worker, bundle, core = core_] {
          const size_t closed = worker->conns.CloseRevoked(*bundle->revoked);
          if (closed == 0) return;
          core->stats.revoked_connections_closed->Increment(static_cast<double>(closed));
          core->logger->warn("closed {} connection(s) whose peer CRL {} revokes", closed, bundle->revoked->number());
        });
      }
    }
    return absl::OkStatus();
  }

  absl::Status ApplyPolicy(const policy::PolicySource::Snapshot& snapshot) override {
    if (snapshot.engine == nullptr) {
      policy_updates_failed_->Increment();
      return absl::InvalidArgumentError("the policy snapshot has no engine");
    }
    auto state = std::make_shared<PolicyState>();
    state->version = snapshot.version;
    state->engine = snapshot.engine;
    state->ports = ComputePortPolicies(*snapshot.engine, core_->options);
    state->applied_at = core_->clock.Now();
    for (size_t i = 0; i < state->ports.size(); ++i) {
      core_->logger->info("policy {}: inbound port {} (app port {}) is mTLS {}, {}", snapshot.version,
                          inbound_addresses_[i].ToString(), core_->options.inbound[i].app.port,
                          authz::PeerModeName(state->ports[i].mode),
                          state->ports[i].protocol == PortProtocol::kHttp  ? "HTTP"
                          : state->ports[i].protocol == PortProtocol::kTcp ? "TCP"
                                                                           : "protocol detected per connection");
    }
    core_->policy_.store(std::shared_ptr<const PolicyState>(std::move(state)), std::memory_order_release);
    policy_updates_ok_->Increment();
    core_->logger->info("policy version {} in force", snapshot.version);
    return absl::OkStatus();
  }

  std::vector<HostPort> inbound_addresses() const override { return inbound_addresses_; }
  std::optional<HostPort> outbound_address() const override { return outbound_address_; }
  std::vector<HostPort> upstream_tcp_addresses() const override { return upstream_tcp_addresses_; }

  std::string WaitingFor() const override {
    std::vector<std::string> missing;
    {
      absl::MutexLock lock(&mu_);
      if (cert_ == nullptr) missing.push_back("certificate");
      if (bundle_ == nullptr) missing.push_back("root");
    }
    if (core_->policy() == nullptr) missing.push_back("policy");
    return absl::StrJoin(missing, ", ");
  }

  std::string CertsJson() const override {
    const absl::Time now = core_->clock.Now();
    nlohmann::json certs = nlohmann::json::array();
    auto tls = core_->tls();
    std::shared_ptr<const WorkloadCert> cert;
    std::shared_ptr<const TrustBundle> bundle;
    {
      absl::MutexLock lock(&mu_);
      cert = cert_;
      bundle = bundle_;
    }
    if (cert) {
      nlohmann::json chain = nlohmann::json::array();
      for (const auto& c : cert->info) chain.push_back(CertJson(c, now));
      certs.push_back({{"name", "default"},
                       {"type", "Cert Chain"},
                       {"status", tls && &tls->cert() == cert.get() ? "ACTIVE" : "WARMING"},
                       {"version", cert->version},
                       {"cert_chain", chain}});
    }
    if (bundle) {
      nlohmann::json roots = nlohmann::json::array();
      for (const auto& c : bundle->info) roots.push_back(CertJson(c, now));
      certs.push_back({{"name", "ROOTCA"},
                       {"type", "CA"},
                       {"status", tls && &tls->bundle() == bundle.get() ? "ACTIVE" : "WARMING"},
                       {"version", bundle->version},
                       {"ca_cert", roots}});
      if (bundle->revoked != nullptr) {
        certs.back()["crl"] = {{"number", bundle->revoked->number()},
                               {"entries", bundle->revoked->size()},
                               {"this_update", Rfc3339(bundle->revoked->this_update())},
                               {"next_update", Rfc3339(bundle->revoked->next_update())}};
      }
    }
    auto policy = core_->policy();
    nlohmann::json out = {{"certificates", certs}, {"policy_version", policy ? policy->version : ""}};
    return out.dump(2) + "\n";
  }

  std::string PolicyJson() const override {
    auto policy = core_->policy();
    nlohmann::json out = {{"version", policy ? policy->version : ""}};
    if (policy) {
      out["applied_at"] = Rfc3339(policy->applied_at);
      nlohmann::json ports = nlohmann::json::array();
      for (size_t i = 0; i < policy->ports.size(); ++i) {
        ports.push_back({{"listener", inbound_addresses_[i].ToString()},
                         {"app_port", core_->options.inbound[i].app.port},
                         {"mtls", authz::PeerModeName(policy->ports[i].mode)},
                         {"protocol", policy->ports[i].protocol == PortProtocol::kHttp  ? "HTTP"
                                      : policy->ports[i].protocol == PortProtocol::kTcp ? "TCP"
                                                                                        : "AUTO"}});
      }
      out["inbound"] = ports;
      out["warnings"] = policy->engine->warnings();
    }
    return out.dump(2) + "\n";
  }

 private:
  struct Worker {
    asio::io_context io{1};
    std::thread thread;
    std::vector<std::unique_ptr<tcp::acceptor>> acceptors;
    std::vector<std::pair<tcp::acceptor*, Serve>> pending;  // accept loops to start
    ConnRegistry conns;
    absl::Notification finished;
  };

  // Builds contexts from the pair and publishes them; the caller holds mu_.
  absl::Status Publish(const std::shared_ptr<const WorkloadCert>& cert,
                       const std::shared_ptr<const TrustBundle>& bundle) {
    auto contexts = TlsContexts::Create(cert, bundle);
    if (!contexts.ok()) return absl::InvalidArgumentError(contexts.status().message());
    core_->tls_.store(*contexts, std::memory_order_release);
    return absl::OkStatus();
  }

  void Shutdown() {
    // Stop accepting and end every connection on its own worker, then give the workers a
    // moment to run the coroutines to completion before stopping them outright.
    core_->stopping = true;
    for (auto& w : workers_) {
      Worker* worker = w.get();
      asio::post(worker->io, [worker] {
        for (auto& a : worker->acceptors) {
          ErrorCode ignored;
          a->close(ignored);
        }
        worker->conns.CloseAll();
      });
    }
    for (auto& w : workers_) {
      if (!w->thread.joinable()) continue;
      if (!w->finished.WaitForNotificationWithTimeout(absl::Seconds(5))) w->io.stop();
      w->thread.join();
    }
    workers_.clear();
  }

  std::shared_ptr<ProxyCore> core_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<HostPort> inbound_addresses_;
  std::optional<HostPort> outbound_address_;
  std::vector<HostPort> upstream_tcp_addresses_;
  Counter* policy_updates_ok_ = nullptr;
  Counter* policy_updates_failed_ = nullptr;
  Counter* cert_updates_ = nullptr;
  Counter* root_updates_ = nullptr;
  mutable absl::Mutex mu_;  // serialises certificate/bundle updates
  std::shared_ptr<const WorkloadCert> cert_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const TrustBundle> bundle_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<std::unique_ptr<Proxy>> Proxy::Create(ProxyOptions options, LoggerPtr logger, MetricsRegistry& metrics,
                                                     const Clock& clock) {
  if (options.service.empty()) return absl::InvalidArgumentError("--service: required");
  if (options.namespace_.empty()) return absl::InvalidArgumentError("--namespace: required");
  if (options.inbound.empty() && !options.outbound && options.upstreams.empty()) {
    return absl::InvalidArgumentError("nothing to proxy: give --app (inbound) or --upstream (outbound)");
  }
  if (!options.upstreams.empty() && !options.outbound &&
      std::none_of(options.upstreams.begin(), options.upstreams.end(),
                   [](const Upstream& u) { return u.tcp_listen.has_value(); })) {
    return absl::InvalidArgumentError("--upstream without --outbound or listen=: no listener leads to it");
  }
  for (size_t i = 0; i < options.upstreams.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (options.upstreams[i].fqdn == options.upstreams[j].fqdn) {
        return absl::InvalidArgumentError(absl::StrCat("--upstream ", options.upstreams[i].name, " is given twice"));
      }
    }
  }
  return ProxyImpl::Create(std::move(options), std::move(logger), metrics, clock);
}

}  // namespace meshid::meshproxy
