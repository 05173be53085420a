// The xDS state-of-the-world rules for one stream of one resource type, without any transport:
// what a request means (initial, ACK, NACK, stale, subscription change) and what, if anything,
// to send next. Not thread-safe; the stream serializes calls.
//
// Rules (envoy docs/root/api-docs/xds_protocol.rst), for every type:
//  - a request naming another type URL is refused (an empty one means the stream's type);
//  - every response carries version_info (the versions of its resources joined by "+") and a
//    fresh nonce; later requests echo the latest;
//  - a request echoing an older nonce is stale: it changes nothing and is not answered (its
//    ACK/NACK of that older response is still reported, so the provider knows what the client
//    applied);
//  - echoing the latest nonce without error_detail is an ACK, with error_detail a NACK: the
//    rejected version is remembered and never resent; a newer version is sent when it comes;
//  - the first request (and a request without a nonce) starts a subscription: every requested
//    resource is sent once it is available;
//  - a changed resource list is answered with the resources of the new list;
//  - otherwise only a changed resource is sent, and only to a stream that watches it.
// A type's SotwRules (resource_type.h) add flow control, a required node, wildcard requests,
// strict ACKs and its own request checks.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "envoy/service/discovery/v3/discovery.pb.h"
#include "xds/provider.h"
#include "xds/resource_type.h"
#include "xds/stream_bookkeeping.h"

namespace meshid::xds {

struct SotwRequestResult : AckOrNack {
  bool first = false;  // the stream's first request: node_id() is known from now on
  bool stale = false;  // an older (or, with strict ACKs, repeated) nonce: only the AckOrNack fields may be set
  // Set when the subscription changed; `names` is then the full new set.
  bool names_changed = false;
  std::set<std::string> names;
};

class SotwStreamState {
 public:
  // A stream of resources of `type`, which must outlive the state.
  explicit SotwStreamState(const ResourceType& type) : type_(type) {}

  // Interprets a request. InvalidArgument (the stream should end with it) for another type URL,
  // a missing node.id when the type requires one, or what the type's request check refuses.
  absl::StatusOr<SotwRequestResult> OnRequest(const envoy::service::discovery::v3::DiscoveryRequest& request);

  // Takes in a provider update. Returns the update's error for a watched name (the stream
  // should fail with it); an update for an unwatched name or an older generation is ignored.
  absl::Status OnUpdate(const xds::ResourceUpdate& update);

  // The next response to send, if anything is due; `nonce` must be fresh. Afterwards the
  // response counts as sent.
  std::optional<envoy::service::discovery::v3::DiscoveryResponse> TakeResponse(const std::string& nonce);

  bool HasPendingResponse() const;
  const std::string& node_id() const { return node_id_; }
  std::set<std::string> names() const;

 private:
  struct NameState {
    xds::ResourcePtr latest;
    std::string sent_version;
    std::string rejected_version;
    bool must_send = false;
  };
  absl::Status Check(const envoy::service::discovery::v3::DiscoveryRequest& request) const;
  bool Due(const NameState& state) const;

  const ResourceType& type_;
  bool started_ = false;
  bool latest_answered_ = true;  // the latest response was ACKed or NACKed (or none was sent)
  std::string node_id_;
  std::map<std::string, NameState> names_;
  SentResponses sent_;
};

}  // namespace meshid::xds
