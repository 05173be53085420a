// SDS for an agent in node mode (`meshid agent --mode node`, SPIRE's model): a stream that
// presents a workload token gets that workload's identity, as in workload mode; a stream without
// one gets the identity of the process behind it, attested from the kernel and matched against
// the agent's registration entries (the first matching identity, by SPIFFE ID), or nothing:
// never the agent's own identity. The identity is chosen when the stream opens.
#pragma once

#include <memory>

#include "nodeagent/secret_cache.h"
#include "registration/receiver.h"
#include "workload/workload_api.h"
#include "xds/provider.h"

namespace meshid::workload {

class NodeSecretProvider final : public xds::ResourceProvider {
 public:
  // Every reference must outlive the provider.
  NodeSecretProvider(SecretCache& cache, registration::EntryReceiver& entries, PeerSelectors attest)
      : cache_(cache), entries_(entries), attest_(std::move(attest)) {}

  // PermissionDenied "no identity issued" for an unknown caller; Unavailable before the entries
  // arrived from the server.
  absl::StatusOr<std::unique_ptr<xds::Subscription>> Subscribe(const xds::StreamCaller& caller,
                                                               std::shared_ptr<xds::ResourceWatcher> watcher) override;
  bool IsKnownName(absl::string_view name) const override { return cache_.IsKnownName(name); }

 private:
  SecretCache& cache_;
  registration::EntryReceiver& entries_;
  const PeerSelectors attest_;
};

}  // namespace meshid::workload
