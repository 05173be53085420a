// `meshid server`: the CA service wired together — signing material, caller authentication,
// the TLS gRPC endpoint and the monitoring endpoint.
#pragma once

#include <algorithm>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/keys.h"
#include "common/logging.h"
#include "pkcs11/token_key.h"

namespace meshid::daemons {

// The CA's private key in a PKCS#11 token (`--ca-key pkcs11:...`), for `meshid server` and the
// offline `meshid certs crl`.
struct CaTokenKeyConfig {
  std::string uri;       // RFC 7512; empty: the key is a file
  std::string module;    // --pkcs11-module; or the URI's module-path
  std::string pin_file;  // --pkcs11-pin-file
  // The MESHID_PKCS11_PIN environment variable, used without a pin_file (a PIN is never a flag
  // value); without either, the URI's pin-source.
  std::string pin;
  int sessions = 4;  // the session pool

  // Problems, each naming its flag, appended to `problems`.
  void Validate(std::vector<std::string>& problems) const;
};

// Opens the key `config` names; errors are prefixed with the flag at fault (--ca-key,
// --pkcs11-pin-file).
absl::StatusOr<std::shared_ptr<const pkcs11::TokenKey>> OpenCaTokenKey(const CaTokenKeyConfig& config,
                                                                       const Clock& clock);

struct CaServerConfig {
  std::string data_dir = "./var/lib/meshid";
  std::string cacerts_dir;  // Istio plug-in layout; empty = self-signed root in data_dir
  CaTokenKeyConfig ca_key;  // empty uri: ca-key.pem in data_dir or cacerts_dir
  std::string listen_address = "127.0.0.1:15012";
  std::string monitoring_address = "127.0.0.1:15014";
  std::string trust_domain = "cluster.local";
  std::string self_signed_key = "ecdsa-p256";
  std::vector<std::string> server_sans;
  bool insecure_plaintext = false;
  absl::Duration default_workload_ttl = absl::Hours(1);
  absl::Duration max_workload_ttl = absl::Hours(24);
  std::vector<std::string> token_audiences = {"istio-ca"};
  // issuer → JWKS file, or http(s):// URL; both re-read while serving
  std::vector<std::pair<std::string, std::string>> jwt_issuers;
  // How often the plug-in files (cacerts_dir) and the JWKS files are checked for a change.
  absl::Duration reload_interval = absl::Seconds(5);
  // How often a JWKS URL is fetched again.
  absl::Duration jwks_refresh_interval = absl::Minutes(5);
  bool local_token_issuer = true;
  // The CA (or local token key) differs from the one the store records for its replicas, on
  // purpose: record this server's instead of refusing to start (ca/shared_ca.h).
  bool replace_store_ca = false;
  // Store URL (sqlite://..., postgresql://...); empty: sqlite://<data_dir>/meshid.db; "none":
  // no ledger, registry or deny list (benchmarks only).
  std::string datastore;
  bool require_registration = false;
  // Istio's CA_TRUSTED_NODE_ACCOUNTS: "<namespace>/<serviceaccount>" items. Callers with these
  // identities may mint (ImpersonatedIdentity) any identity that has a registry entry; others
  // only the identities whose entries name them as parent. Needs a datastore.
  std::vector<std::string> trusted_node_accounts;
  absl::Duration ledger_retention = absl::Hours(24 * 30);  // expired ledger rows older than this are pruned
  // The longest a ledger record waits for records being signed (GroupCommitOptions::commit_interval).
  absl::Duration ledger_commit_interval = absl::Milliseconds(1);
  // How often the newest policy version is looked up in the store (policy distribution to agents,
  // policy/server.h); needs a datastore.
  absl::Duration policy_poll_interval = absl::Seconds(1);
  // How often the store's CRL number is read (a revocation reaches agents within about this), and
  // how long each CRL is valid (it is re-signed at half of it); need a datastore.
  absl::Duration crl_poll_interval = absl::Milliseconds(250);
  // How often the registry generation is read for the agents' registration entries.
  absl::Duration registration_poll_interval = absl::Milliseconds(250);
  absl::Duration crl_validity = absl::Hours(24);
  // Signing limits (ca/signing_limiter.h): certificates per second refilled into each
  // authenticated caller's bucket (a node agent minting others' certificates spends its own),
  // the bucket's size, and signings in progress at once over all callers. 0 disables each.
  double signing_rate_per_caller = 10;
  double signing_burst_per_caller = 50;
  int max_concurrent_signing = 4 * static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));

  // Every problem, each naming its flag; OK if none.
  absl::Status Validate() const;
};

class CaServer {
 public:
  // Validates the config, loads or creates the CA keys, writes <data_dir>/root-cert.pem, and
  // starts serving. Errors name the flag or file at fault.
  static absl::StatusOr<std::unique_ptr<CaServer>> Start(const CaServerConfig& config, const Clock& clock,
                                                         LoggerPtr logger);
  virtual ~CaServer() = default;

  virtual int port() const = 0;
  virtual int monitoring_port() const = 0;
  // Blocks until Shutdown() is called from another thread.
  virtual void Wait() = 0;
  // Stops accepting calls and lets in-flight calls finish (up to `grace`).
  virtual void Shutdown(absl::Duration grace = absl::Seconds(5)) = 0;
};

}  // namespace meshid::daemons
