// `meshid agent`: the node agent wired together — a CA client that re-reads its trust bundle,
// the secret cache and its worker threads, the SDS server on a Unix socket, and the monitoring
// endpoint (/metrics, /healthz, /readyz).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/logging.h"
#include "nodeagent/secret_cache.h"
#include "policy/relay.h"
#include "sds/sds_server.h"

namespace meshid::daemons {

// Who a token-free SDS stream is (docs/configuration.md, "Agent modes").
enum class AgentMode {
  kWorkload,  // one agent per workload (istio-agent's model): the agent's own identity
  kNode,      // one agent for the node (SPIRE's model): the attested caller's, or none
};

struct AgentConfig {
  AgentMode mode = AgentMode::kWorkload;
  // The SPIFFE Workload API (workload/workload_api.h), in both modes; "" serves none (`meshid
  // agent` puts it beside the SDS socket unless told otherwise).
  std::string workload_api_socket;
  std::string ca_address = "127.0.0.1:15012";                          // CA_ADDR
  std::string ca_root_file = "./var/run/secrets/istio/root-cert.pem";  // CA_ROOT_CA
  std::string ca_server_name;                                          // ISTIOD_SAN
  bool ca_insecure_plaintext = false;
  std::string token_file = "./var/run/secrets/tokens/istio-token";
  sds::SdsServerOptions sds;
  std::string monitoring_address = "127.0.0.1:15020";
  SecretCacheOptions cache;
  // Extra roots ROOTCA always carries (Istio's caCertificatesPem); re-read when it changes.
  std::string trust_anchors_file;
  int worker_threads = 4;
  absl::Duration file_poll_interval = absl::Seconds(5);
  // Policy snapshots from the server, relayed to proxies on the SDS socket (policy/relay.h).
  // server_address empty: ca_address.
  policy::PolicyRelayOptions policy;
  // The server's CRL (revocation/receiver.h): received over the connection to the server, put
  // into ROOTCA, and kept in crl_state_file ("" keeps none) for restarts while the server is away.
  bool revocations = true;
  std::string crl_state_file = "./var/run/secrets/istio/crl.pem";
  // The CA's trust bundle as the server pushes it (trustbundle/receiver.h): accepted when it
  // shares a root with what the agent trusts, kept in this file, and trusted beside --ca-root
  // (for the server's certificate, CRLs) and served in ROOTCA. Required: a CA rotation reaches
  // the node through it.
  std::string trust_bundle_state_file = "./var/run/secrets/istio/trust-bundle.pem";

  // Every problem, each naming its flag; OK if none.
  absl::Status Validate() const;
};

class Agent {
 public:
  // Validates the config and starts everything. Errors name the flag or file at fault.
  static absl::StatusOr<std::unique_ptr<Agent>> Start(const AgentConfig& config, const Clock& clock, LoggerPtr logger);
  virtual ~Agent() = default;  // stops serving and wipes every cached key

  virtual std::string sds_target() const = 0;
  virtual uint16_t monitoring_port() const = 0;
  virtual SecretCacheStats Stats() const = 0;
  // The number of the CRL in force (0: none).
  virtual int64_t crl_number() const = 0;
};

}  // namespace meshid::daemons
