// The declaration of one xDS stream: what its server and its clients must agree on. A new
// stream (registration entries, trust bundles, revocations, ...) is added by declaring one of
// these, handing it to xds::StreamServer (server.h) with a ResourceProvider (a
// ResourcePublisher, publisher.h, unless the resources come from elsewhere) and to
// xds::SotwClient (client.h) with a handler for what arrives. Nothing of the stream machinery is
// written again.
//
// A declaration is immutable and outlives every stream, server and client that uses it (they
// keep a reference): declare it as a function-local static.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "envoy/service/discovery/v3/discovery.pb.h"

namespace meshid::xds {

// How a state-of-the-world server treats requests of a type, beyond the xDS rules every type
// follows (sotw_state.h). The defaults are Envoy's rules as SDS serves them.
struct SotwRules {
  // Flow control: at most one response awaits its ACK or NACK; what changes meanwhile is sent
  // (newest only) once it is answered. For receivers that take long to apply a response.
  bool one_response_in_flight = false;
  // The stream's first request must carry node.id (InvalidArgument otherwise).
  bool require_node_id = false;
  // The names a request that names no resource subscribes to (a "wildcard" request). Empty:
  // such a request subscribes to nothing.
  std::vector<std::string> wildcard_names;
  // Strict ACKs: only a request echoing the latest nonce, once, answers a response; an older
  // or repeated nonce is stale and reports nothing (no ACK, no NACK); an "ACK" whose
  // version_info is not the response's is a NACK; and a rejected version stays rejected for the
  // stream even when the client subscribes again.
  bool strict_ack = false;
  // Type-specific checks of every request (`first`: the stream's first), after the type URL
  // and node checks; an error ends the stream with it. Null: none.
  std::function<absl::Status(const envoy::service::discovery::v3::DiscoveryRequest& request, bool first)>
      validate_request;
};

struct ResourceType {
  // The type URL of the resources, e.g. "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret".
  std::string type_url;
  // The full name of the gRPC method carrying the state-of-the-world stream, e.g.
  // "/envoy.service.secret.v3.SecretDiscoveryService/StreamSecrets".
  std::string sotw_method;
  SotwRules sotw;
  // Client side: a response identical to the one last applied (same version_info, type URL and
  // resource bytes, e.g. after a reconnect) is ACKed without calling the handler again.
  bool client_acks_unchanged_without_handler = false;
};

}  // namespace meshid::xds
