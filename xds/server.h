// The serving side of every meshid xDS stream (SDS's StreamSecrets and DeltaSecrets, the policy
// stream's StreamPolicies, and the next ones): one gRPC callback reactor per stream, the same
// for state-of-the-world and delta, following the rules of sotw_state.h / delta_state.h for the
// stream's ResourceType. Idle streams cost memory, not threads.
//
// Per stream: a read loop; at most one write in flight (what becomes due meanwhile goes out
// after it, newest first); responses wiped once written (they may carry private keys); fresh
// nonces; a Subscription of the ResourceProvider whose names follow the client's requests; ACKs
// and NACKs reported to the provider and counted; a deferred Finish when a write is in flight.
//
// Who the caller is: with an Authenticator the stream is refused unless it authenticates (TLS
// peer certificate chain, authorization metadata) and the identity appears in logs and events;
// with bearer_token_to_provider the `authorization: Bearer <token>` metadata goes to the
// provider's Subscribe, which decides what the stream may see (SDS: the workload's identity).
//
// Threading: OpenSotw/OpenDelta are called by gRPC; every reactor method runs on gRPC's
// threads, provider callbacks on the provider's. Shutdown, open_streams are thread-safe.
#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/service_type.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/random.h"
#include "envoy/config/core/v3/base.pb.h"
#include "envoy/service/discovery/v3/discovery.pb.h"
#include "xds/provider.h"
#include "xds/resource_type.h"
#include "xds/stream_bookkeeping.h"

namespace meshid::xds {

// What the transport knows about a caller.
struct Caller {
  bool tls = false;
  std::string peer_cert_pem;
  std::vector<std::string> peer_chain_pems;
  std::vector<std::string> authorization;  // every "authorization" metadata value
};
Caller CallerOf(const grpc::CallbackServerContext& context);

// The caller's bearer token: "" when it sent no authorization metadata; Unauthenticated when
// that metadata is not "Bearer <token>".
absl::StatusOr<std::string> BearerToken(const grpc::CallbackServerContext& context);

// Returns the caller's identity (e.g. a SPIFFE ID) or Unauthenticated/PermissionDenied.
using Authenticator = std::function<absl::StatusOr<std::string>(const Caller&)>;

// One stream's life as observers see it.
struct StreamEvent {
  enum class Kind { kConnected, kAcked, kNacked, kClosed };
  Kind kind = Kind::kConnected;
  uint64_t stream_id = 0;              // unique per server
  std::string identity;                // from the Authenticator ("" without one)
  envoy::config::core::v3::Node node;  // from the stream's first request
  ClientStatus client;                 // what the client reports it runs
};

struct StreamServerOptions {
  // The RPCs' method names, for logs and the streams gauge ("StreamSecrets", "DeltaSecrets").
  std::string sotw_rpc;
  std::string delta_rpc;  // "": the type has no delta stream
  // Metrics: <prefix>_streams (gauge of open streams, labelled rpc=<method> when
  // label_streams_by_rpc), <prefix>_pushes_total, <prefix>_acks_total, <prefix>_nacks_total and
  // <prefix>_stream_errors_total (streams closed with an error status).
  std::string metrics_prefix;
  bool label_streams_by_rpc = false;
  std::string subject;  // what the streams carry, in help texts and messages: "SDS", "policy"
  // Null: no authentication (whoever can connect, e.g. to a Unix socket whose mode decides).
  Authenticator authenticate;
  bool bearer_token_to_provider = false;
  // Called for every stream event, on gRPC's threads, with the stream's lock held: must be quick
  // and must not call back into the server. Null: none (streams then keep no node or status).
  std::function<void(const StreamEvent&)> observer;
};

class StreamServer {
 public:
  // `type`, `provider`, `metrics` and `random` must outlive the server, and the server every
  // stream: shut the grpc::Server down (which ends the streams) before destroying it.
  static std::unique_ptr<StreamServer> Create(const ResourceType& type, StreamServerOptions options,
                                              ResourceProvider& provider, MetricsRegistry& metrics,
                                              RandomSource& random, LoggerPtr logger);
  virtual ~StreamServer() = default;

  // A new stream's reactor, for a (generated) CallbackService's method to return; it deletes
  // itself when gRPC is done with it.
  virtual grpc::ServerBidiReactor<envoy::service::discovery::v3::DiscoveryRequest,
                                  envoy::service::discovery::v3::DiscoveryResponse>*
  OpenSotw(grpc::CallbackServerContext* context) = 0;
  virtual grpc::ServerBidiReactor<envoy::service::discovery::v3::DeltaDiscoveryRequest,
                                  envoy::service::discovery::v3::DeltaDiscoveryResponse>*
  OpenDelta(grpc::CallbackServerContext* context) = 0;

  // Ends every open stream with UNAVAILABLE (clients reconnect, e.g. to another replica) and
  // refuses new ones; call before shutting the grpc::Server down so it does not wait for them.
  virtual void Shutdown() = 0;
  virtual int64_t open_streams() const = 0;
};

// A grpc::Service with the one method `type.sotw_method`, served by `server`: a new stream needs
// no generated service code. Register it with a grpc::ServerBuilder; `type` and `server` must
// outlive it.
std::unique_ptr<grpc::Service> MakeSotwService(const ResourceType& type, StreamServer& server);

}  // namespace meshid::xds
