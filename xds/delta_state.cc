#include "xds/delta_state.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace meshid::xds {
using envoy::service::discovery::v3::DeltaDiscoveryRequest;
using envoy::service::discovery::v3::DeltaDiscoveryResponse;

absl::StatusOr<DeltaRequestResult> DeltaStreamState::OnRequestImpl(const DeltaDiscoveryRequest& request,
                                                                   const std::vector<bool>& known) {
  if (!request.type_url().empty() && request.type_url() != type_url_) {
    return absl::InvalidArgumentError(
        absl::StrCat("type_url \"", request.type_url(), "\" is not served here; this stream serves ", type_url_));
  }
  DeltaRequestResult result;
  const bool first = !started_;
  if (first) {
    started_ = true;
    result.first = true;
    node_id_ = request.node().id();
  }
  if (!request.response_nonce().empty()) {
    result.stale_nonce = !sent_.IsLatest(request.response_nonce());
    sent_.Judge(request, names_, result);
  }

  bool changed = false;
  for (int i = 0; i < request.resource_names_subscribe_size(); ++i) {
    const std::string& name = request.resource_names_subscribe(i);
    if (!known[i]) {
      unknown_pending_.insert(name);
      continue;
    }
    unknown_pending_.erase(name);
    auto [it, inserted] = names_.try_emplace(name);
    if (!inserted) continue;
    changed = true;
    if (first) {
      auto declared = request.initial_resource_versions().find(name);
      if (declared != request.initial_resource_versions().end()) it->second.client_version = declared->second;
    }
  }
  for (const auto& name : request.resource_names_unsubscribe()) {
    unknown_pending_.erase(name);
    if (names_.erase(name) > 0) changed = true;
  }
  if (changed) {
    result.names_changed = true;
    for (const auto& [name, state] : names_) result.names.insert(name);
  }
  return result;
}

absl::Status DeltaStreamState::OnUpdate(const xds::ResourceUpdate& update) { return KeepNewest(names_, update); }

bool DeltaStreamState::Due(const NameState& state) const {
  return state.latest != nullptr && state.latest->version != state.client_version &&
         state.latest->version != state.rejected_version;
}

bool DeltaStreamState::HasPendingResponse() const {
  if (!unknown_pending_.empty()) return true;
  for (const auto& [name, state] : names_) {
    if (Due(state)) return true;
  }
  return false;
}

std::optional<DeltaDiscoveryResponse> DeltaStreamState::TakeResponse(const std::string& nonce) {
  if (!HasPendingResponse()) return std::nullopt;
  DeltaDiscoveryResponse response;
  SentResources included;
  for (auto& [name, state] : names_) {
    if (!Due(state)) continue;
    auto* resource = response.add_resources();
    resource->set_name(name);
    resource->set_version(state.latest->version);
    resource->mutable_resource()->set_type_url(type_url_);
    resource->mutable_resource()->set_value(std::string(state.latest->body.view()));
    state.client_version = state.latest->version;
    included.emplace_back(name, state.latest->version);
  }
  for (const auto& name : unknown_pending_) {
    response.add_removed_resources(name);
    auto* error = response.add_resource_errors();
    error->mutable_resource_name()->set_name(name);
    error->mutable_error_detail()->set_code(static_cast<int>(absl::StatusCode::kNotFound));
    error->mutable_error_detail()->set_message(absl::StrCat("no resource named \"", name, "\" of type ", type_url_));
  }
  unknown_pending_.clear();
  std::vector<std::string> versions;
  for (const auto& entry : included) versions.push_back(entry.first + "=" + entry.second);
  response.set_system_version_info(absl::StrJoin(versions, ","));
  response.set_type_url(type_url_);
  response.set_nonce(nonce);
  sent_.Remember(nonce, std::move(included));
  return response;
}

}  // namespace meshid::xds
