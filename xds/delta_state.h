// The xDS incremental (delta) rules for one stream of one resource type, without any transport.
// Not thread-safe; the stream serializes calls.
//
//  - subscribe/unsubscribe lists are deltas and are applied from every request, whatever its
//    nonce (they must never be dropped);
//  - a request echoing a nonce ACKs (or, with error_detail, NACKs) the resources of that
//    response (stale_nonce tells whether it was an older one); a NACKed version is never resent;
//  - initial_resource_versions on the first request tell what the client already has: a
//    resource whose version matches is not sent again;
//  - a name nobody serves is answered in removed_resources (the delta "does not exist"
//    signal) plus a resource_errors entry with NOT_FOUND for clients that read it.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "envoy/service/discovery/v3/discovery.pb.h"
#include "xds/provider.h"
#include "xds/resource_type.h"
#include "xds/stream_bookkeeping.h"

namespace meshid::xds {

struct DeltaRequestResult : AckOrNack {
  bool first = false;  // the stream's first request: node_id() is known from now on
  bool stale_nonce = false;
  bool names_changed = false;
  std::set<std::string> names;  // the full watched set after this request (known names only)
};

class DeltaStreamState {
 public:
  // A stream of resources of `type` (requests naming another type are refused), which must
  // outlive the state. (The type's SotwRules do not apply to delta streams.)
  explicit DeltaStreamState(const ResourceType& type) : type_url_(type.type_url) {}

  // `known` decides which names exist; unknown ones are answered as removed.
  template <typename KnownFn>
  absl::StatusOr<DeltaRequestResult> OnRequest(const envoy::service::discovery::v3::DeltaDiscoveryRequest& request,
                                               KnownFn known) {
    std::vector<bool> flags;
    flags.reserve(request.resource_names_subscribe_size());
    for (const auto& name : request.resource_names_subscribe()) flags.push_back(known(name));
    return OnRequestImpl(request, flags);
  }

  absl::Status OnUpdate(const xds::ResourceUpdate& update);
  std::optional<envoy::service::discovery::v3::DeltaDiscoveryResponse> TakeResponse(const std::string& nonce);
  bool HasPendingResponse() const;
  const std::string& node_id() const { return node_id_; }

 private:
  struct NameState {
    xds::ResourcePtr latest;
    std::string client_version;  // what the client has (sent by us, or declared on reconnect)
    std::string rejected_version;
  };
  absl::StatusOr<DeltaRequestResult> OnRequestImpl(const envoy::service::discovery::v3::DeltaDiscoveryRequest& request,
                                                   const std::vector<bool>& known);
  bool Due(const NameState& state) const;

  const std::string& type_url_;
  bool started_ = false;
  std::string node_id_;
  std::map<std::string, NameState> names_;
  std::set<std::string> unknown_pending_;  // to answer in removed_resources
  SentResponses sent_;
};

}  // namespace meshid::xds
