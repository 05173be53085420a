// The sidecar's data path: inbound listeners (mTLS termination, authentication and
// authorization of every request or TCP connection, forwarding to the local app) and outbound
// listeners (the app's plain connections, forwarded over mTLS to named upstreams whose SPIFFE
// ID is checked).
//
// Threading (Envoy's model): one worker thread with its own io_context per core; every
// listener has one SO_REUSEPORT acceptor per worker, and a connection lives on the worker that
// accepted it. Certificates, trust bundles and policies are prepared by the caller's threads
// (SDS client, policy source) and published with the Apply* calls as immutable snapshots
// (atomic shared_ptr swaps); a worker never blocks on them. A new certificate or root is used
// by the next handshake; established connections keep theirs. A new policy applies to the next
// HTTP request (also on kept-alive connections) and the next TCP connection.
//
// Listener behaviour:
//  * mTLS mode per inbound port from the policy (PeerAuthentication, else the v1alpha1
//    Policy, else PERMISSIVE): STRICT accepts only TLS with a client certificate chaining to
//    ROOTCA; PERMISSIVE and DISABLE also accept plaintext (the first byte decides: 0x16 is a
//    TLS ClientHello). With DISABLE, a TLS peer's identity is ignored by the policy engine.
//  * Protocol per inbound port as Istio selects it: the Service port (targetPort = the app
//    port) named http/http-*/ (HTTP), any other name (TCP: tcp, tls, https, mongo, grpc and
//    http2, since this proxy speaks HTTP/1.1 only); no Service or an unnamed port: sniffed (an
//    HTTP/1.x request line → HTTP, anything else or silence for the detection timeout → TCP).
//  * Denials: HTTP 403 "RBAC: access denied", 401 with Istio's authentication message; TCP:
//    the connection is closed. A policy evaluation error denies (403).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/net.h"
#include "http/http1.h"
#include "meshproxy/tls.h"
#include "policy/source.h"

namespace meshid::meshproxy {

struct InboundPort {
  HostPort listen;  // where callers connect (Istio: 15006)
  HostPort app;     // the local app; its port is the workload port policies name
};

struct Upstream {
  std::string name;  // as given: "reviews", "reviews.default", or an FQDN
  std::string fqdn;  // <name>.<ns>.svc.<domain>
  HostPort address;  // the upstream's inbound listener
  // The identity its certificate must carry. Empty: Istio derives the expected identities from
  // the service accounts of the service's pods; without a registry meshid expects the service
  // account named after the service, spiffe://<trust domain of our own certificate>/ns/<ns>/sa/<name>.
  std::string spiffe_id;
  std::string service_account;         // for the derived identity
  std::string namespace_;              // for the derived identity
  std::optional<HostPort> tcp_listen;  // a raw TCP outbound listener for this upstream
};

struct ProxyOptions {
  std::string service;  // short service name
  std::string namespace_ = "default";
  std::string domain = "cluster.local";       // FQDN suffix
  std::map<std::string, std::string> labels;  // workload labels (added to the Service's selector)
  std::vector<InboundPort> inbound;
  std::optional<HostPort> outbound;  // HTTP outbound listener (routes by Host to `upstreams`)
  std::vector<Upstream> upstreams;
  std::string root_namespace = "istio-system";
  int workers = 0;  // 0 = one per core
  http::HttpLimits limits;
  absl::Duration idle_timeout = absl::Hours(1);  // Envoy's HTTP/TCP idle timeouts
  absl::Duration connect_timeout = absl::Seconds(10);
  absl::Duration protocol_detection_timeout = absl::Seconds(1);
};

// Parses "--upstream NAME=ADDR[,spiffe://ID][,listen=ADDR]". NAME is "svc", "svc.ns" or
// "svc.ns.svc.<domain>"; a short name is in `own_namespace`.
absl::StatusOr<Upstream> ParseUpstreamFlag(absl::string_view flag, absl::string_view own_namespace,
                                           absl::string_view domain);
// The identity `upstream` must present, given our own SPIFFE ID (for the trust domain).
std::string ExpectedUpstreamIdentity(const Upstream& upstream, absl::string_view own_spiffe_id);
// Whether the Host header `host` (port ignored, case-insensitive) names `upstream`: its name,
// <svc>.<ns>, <svc>.<ns>.svc or its FQDN.
bool HostMatchesUpstream(absl::string_view host, const Upstream& upstream);

class Proxy {
 public:
  // Validates the options, binds every listener (port 0 → chosen by the OS) and starts the
  // workers. Connections are refused until a certificate, a root and a policy are applied.
  static absl::StatusOr<std::unique_ptr<Proxy>> Create(ProxyOptions options, LoggerPtr logger, MetricsRegistry& metrics,
                                                       const Clock& clock);
  virtual ~Proxy() = default;  // stops accepting, closes every connection, joins the workers

  // Publishing, from any thread but not from a worker. An error means the update was not
  // used (the caller NACKs); the previous one stays in force.
  virtual absl::Status ApplyWorkloadCert(std::shared_ptr<const WorkloadCert> cert) = 0;
  virtual absl::Status ApplyTrustBundle(std::shared_ptr<const TrustBundle> bundle) = 0;
  virtual absl::Status ApplyPolicy(const policy::PolicySource::Snapshot& snapshot) = 0;

  // Bound addresses, in option order.
  virtual std::vector<HostPort> inbound_addresses() const = 0;
  virtual std::optional<HostPort> outbound_address() const = 0;
  virtual std::vector<HostPort> upstream_tcp_addresses() const = 0;  // for upstreams with tcp_listen

  // Admin views (thread-safe).
  // What the proxy still waits for ("certificate", "root", "policy", comma-separated); ""
  // once all three are in force and it serves traffic.
  virtual std::string WaitingFor() const = 0;
  virtual std::string CertsJson() const = 0;
  virtual std::string PolicyJson() const = 0;
};

}  // namespace meshid::meshproxy
