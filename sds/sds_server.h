// Envoy's SecretDiscoveryService (v3) on a Unix domain socket: StreamSecrets (state of the
// world) and DeltaSecrets (incremental) are xds::StreamServer streams of sds::SecretType()
// (xds/server.h, the rules of xds/sotw_state.h and xds/delta_state.h); FetchSecrets (unary) is
// served here. Built on gRPC's callback API, so ten thousand idle streams cost memory, not
// threads.
//
// Identity: a stream's `authorization: Bearer <token>` metadata (if any) is handed to the
// provider, which decides what "default" means for that stream.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/random.h"
#include "xds/provider.h"
#include "xds/server.h"

namespace grpc {
class Service;
}  // namespace grpc

namespace meshid::sds {

struct SdsServerOptions {
  // The Unix socket to listen on (see UnixSocketPath for how an existing file is treated).
  std::string socket_path = "./var/run/secrets/workload-spiffe-uds/socket";
  int socket_mode = 0600;  // 0660 when `socket_group` is set
  std::optional<gid_t> socket_group;
  int max_concurrent_streams = 100000;
  // Further services on the same socket (the agent's policy relay); not owned, must outlive
  // the server.
  std::vector<grpc::Service*> extra_services;
  // Every stream's events (connected with its node, ACK, NACK, closed), on gRPC's threads with
  // the stream's lock held: must be quick. Null: none.
  std::function<void(const xds::StreamEvent&)> observer;
  // Connections accepted by the caller itself, to learn which process is calling
  // (workload/peer_listener.h): called once with the started server, it hands them over for as
  // long as the server lives (and must stop before the server goes). Its error fails Create.
  // Null: none.
  std::function<absl::Status(grpc::Server& server)> adopt_connections;
  // False: the server does not listen on socket_path itself (adopt_connections serves it).
  bool listen = true;
};

// Counters the server keeps (registered in the MetricsRegistry passed to Create):
//   meshid_agent_sds_streams{rpc}            open StreamSecrets/DeltaSecrets streams
//   meshid_agent_sds_pushes_total            responses sent (including the first of a stream)
//   meshid_agent_sds_acks_total              ACKs received
//   meshid_agent_sds_nacks_total             NACKs received (also logged with the reason)
//   meshid_agent_sds_fetches_total{result}   FetchSecrets calls
//   meshid_agent_sds_stream_errors_total     streams closed with an error status
class SdsServer {
 public:
  // Takes the socket path (see UnixSocketPath::Acquire: a live socket is refused, a stale one
  // replaced) and starts serving. `provider`, `metrics` and `random` must outlive the server.
  static absl::StatusOr<std::unique_ptr<SdsServer>> Create(const SdsServerOptions& options,
                                                           xds::ResourceProvider& provider, MetricsRegistry& metrics,
                                                           RandomSource& random, LoggerPtr logger);
  virtual ~SdsServer() = default;  // stops serving, closes every stream, removes the socket

  // The address clients dial: "unix:<socket path>".
  virtual std::string target() const = 0;
  // Open StreamSecrets and DeltaSecrets streams. Thread-safe.
  virtual int64_t connected_streams() const = 0;
};

}  // namespace meshid::sds
