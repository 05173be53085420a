#include "workload/node_sds.h"

#include "absl/strings/str_cat.h"

namespace meshid::workload {

absl::StatusOr<std::unique_ptr<xds::Subscription>> NodeSecretProvider::Subscribe(
    const xds::StreamCaller& caller, std::shared_ptr<xds::ResourceWatcher> watcher) {
  if (!caller.bearer_token.empty()) return cache_.Subscribe(caller, std::move(watcher));
  auto selectors = attest_(caller.peer);
  if (!selectors.ok())
    return absl::PermissionDeniedError(absl::StrCat("no identity issued: ", selectors.status().message()));
  auto entries = entries_.current();
  if (entries == nullptr) {
    return absl::UnavailableError("the agent has not received its registration entries from the server yet");
  }
  auto matching = entries->Matching(*selectors);
  if (matching.empty()) return absl::PermissionDeniedError("no identity issued");
  return cache_.SubscribeMinted(matching.front()->spiffe_id, std::move(watcher));
}

}  // namespace meshid::workload
