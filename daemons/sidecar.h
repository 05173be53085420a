// `meshid proxy` as a library: the data path (Proxy) wired to its sources — certificates from
// the node agent over SDS (SdsClient: "default" and "ROOTCA"), the policy from a PolicySource
// — and the admin endpoint:
//   /stats, /stats/prometheus  Prometheus text (proxy, SDS client and policy reload metrics)
//   /ready                     200 "LIVE" once a certificate, a root and a policy are in force;
//                              503 naming what is missing otherwise
//   /certs                     JSON: the certificates in use (serial, SPIFFE ID, validity),
//                              as `istioctl proxy-config secret` shows them, and the policy version
//   /policy                    JSON: the policy version in force, when it was applied, and the
//                              mTLS mode and protocol of every inbound port
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/clock.h"
#include "common/http_status_server.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/random.h"
#include "meshproxy/proxy.h"
#include "policy/file_watcher.h"
#include "policy/source.h"
#include "sds/sds_client.h"

namespace meshid::daemons {

struct SidecarConfig {
  meshproxy::ProxyOptions proxy;
  std::string sds_socket = "./var/run/secrets/workload-spiffe-uds/socket";
  std::string token_file;                         // optional: the workload's token, presented on the SDS streams
  std::string admin_address = "127.0.0.1:15000";  // "" = no admin endpoint
  // Where the policy comes from: the agent's policy stream on `sds_socket` (policy/agent_source.h)
  // or the watched files of `policy_files` (policy/file_source.h). Both compile with
  // policy_files.load and policy_files.engine.
  bool policy_from_agent = false;
  policy::PolicyWatcher::Options policy_files;
};

class Sidecar {
 public:
  // Starts the proxy's listeners, then the policy source (whose first snapshot must be good:
  // a broken initial configuration fails here), then the SDS streams and the admin endpoint.
  // `metrics` must outlive the sidecar.
  static absl::StatusOr<std::unique_ptr<Sidecar>> Start(SidecarConfig config, LoggerPtr logger,
                                                        MetricsRegistry& metrics, const Clock& clock);
  // Stops the admin endpoint, the SDS streams, the policy source, then the proxy.
  ~Sidecar();

  meshproxy::Proxy& proxy() { return *proxy_; }
  uint16_t admin_port() const;

 private:
  Sidecar() = default;
  OpenSslRandom random_;
  std::unique_ptr<meshproxy::Proxy> proxy_;
  std::unique_ptr<policy::PolicySource> policy_;
  std::unique_ptr<sds::SdsClient> sds_;
  std::unique_ptr<HttpStatusServer> admin_;
};

}  // namespace meshid::daemons
