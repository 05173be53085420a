// An SDS v3 client, subscribing the way Envoy does: one StreamSecrets stream per secret name
// (Envoy's SdsApi gives every secret its own subscription), all over one gRPC channel. Each is
// an xds::SotwClient of sds::SecretType() (xds/client.h) with the SDS response checks below.
//
// xDS rules, as Envoy applies them:
//  * the first request of a stream carries the node, the one resource name, the type URL and
//    the version last accepted (empty at first); every request carries the node;
//  * a response whose secret the handler accepts is ACKed (version_info = the response's
//    version, response_nonce = its nonce); one it refuses is NACKed (version_info = the last
//    accepted version, error_detail = INVALID_ARGUMENT with the handler's message) and the
//    last good secret stays in use;
//  * a response must hold exactly one Secret named as subscribed (Envoy's "Missing SDS
//    resources" / "Unexpected SDS secrets length" / "Unexpected SDS secret" are NACKs);
//  * a stream that ends (agent restart, NOT_FOUND, UNAVAILABLE, ...) is reopened after a
//    jittered exponential backoff (common/backoff.h; 500 ms doubling to 30 s, Envoy's xDS
//    defaults), reset by the first response of a new stream.
// Credentials: with `token_file`, its content is sent as `authorization: Bearer <token>` on
// every stream (re-read at every connect: projected tokens rotate), so the agent serves that
// workload's identity on it.
//
// Threading: each stream runs on its own thread; the handler is called on that thread, one
// response at a time per name (names may be handled concurrently). The destructor cancels the
// streams and joins the threads; no handler runs after it returns.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/random.h"
#include "envoy/extensions/transport_sockets/tls/v3/secret.pb.h"

namespace meshid::sds {

struct SdsClientOptions {
  std::string target;                       // gRPC target of the SDS server, e.g. "unix:/var/run/.../socket"
  std::vector<std::string> resource_names;  // e.g. {"default", "ROOTCA"}
  std::string node_id;                      // Envoy's node.id (Istio: sidecar~<ip>~<pod>.<ns>~<ns>.svc.cluster.local)
  std::string node_cluster;                 // Envoy's node.cluster (Istio: <service>.<ns>)
  std::string token_file;                   // optional workload token for `authorization: Bearer`
  absl::Duration initial_backoff = absl::Milliseconds(500);
  absl::Duration max_backoff = absl::Seconds(30);
};

// Applies a secret. OK → ACK; an error → NACK with its message, and the secret is not in use.
// `version` is the response's version_info.
using SecretHandler = std::function<absl::Status(const envoy::extensions::transport_sockets::tls::v3::Secret& secret,
                                                 const std::string& version)>;

// Metrics (in the registry passed to Create):
//   meshid_sds_client_updates_total{resource,result="ack"|"nack"}  responses applied / refused
//   meshid_sds_client_stream_failures_total{resource}              streams that ended or failed to open
class SdsClient {
 public:
  // Validates the options and starts one stream per name (InvalidArgument naming what is
  // wrong). `random` and `metrics` must outlive the client.
  static absl::StatusOr<std::unique_ptr<SdsClient>> Create(SdsClientOptions options, SecretHandler handler,
                                                           RandomSource& random, LoggerPtr logger,
                                                           MetricsRegistry& metrics);
  virtual ~SdsClient() = default;
};

}  // namespace meshid::sds
