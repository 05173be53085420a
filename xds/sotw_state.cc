#include "xds/sotw_state.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace meshid::xds {
using envoy::service::discovery::v3::DiscoveryRequest;
using envoy::service::discovery::v3::DiscoveryResponse;

absl::StatusOr<SotwRequestResult> SotwStreamState::OnRequest(const DiscoveryRequest& request) {
  if (!request.type_url().empty() && request.type_url() != type_url_) {
    return absl::InvalidArgumentError(
        absl::StrCat("type_url \"", request.type_url(), "\" is not served here; this stream serves ", type_url_));
  }
  SotwRequestResult result;
  const bool initial = !started_ || request.response_nonce().empty();
  if (!started_) {
    started_ = true;
    node_id_ = request.node().id();
  }
  if (!initial) {
    sent_.Judge(request, names_, result);
    if (!sent_.IsLatest(request.response_nonce())) {
      result.stale = true;
      return result;
    }
  }

  std::set<std::string> requested(request.resource_names().begin(), request.resource_names().end());
  bool changed = initial;
  if (!changed) {
    changed = requested.size() != names_.size();
    for (auto it = requested.begin(); !changed && it != requested.end(); ++it) changed = !names_.contains(*it);
  }
  if (!changed) return result;

  for (auto it = names_.begin(); it != names_.end();) {
    it = requested.contains(it->first) ? std::next(it) : names_.erase(it);
  }
  for (const auto& name : requested) {
    NameState& state = names_[name];
    state.must_send = true;
    if (initial) state.rejected_version.clear();
  }
  result.names_changed = true;
  result.names = std::move(requested);
  return result;
}

absl::Status SotwStreamState::OnUpdate(const xds::ResourceUpdate& update) { return KeepNewest(names_, update); }

bool SotwStreamState::Due(const NameState& state) const {
  if (state.latest == nullptr) return false;
  if (state.latest->version == state.rejected_version) return false;
  return state.must_send || state.latest->version != state.sent_version;
}

bool SotwStreamState::HasPendingResponse() const {
  for (const auto& [name, state] : names_) {
    if (Due(state)) return true;
  }
  return false;
}

std::optional<DiscoveryResponse> SotwStreamState::TakeResponse(const std::string& nonce) {
  SentResources included;
  DiscoveryResponse response;
  for (auto& [name, state] : names_) {
    if (!Due(state)) continue;
    auto* any = response.add_resources();
    any->set_type_url(type_url_);
    any->set_value(std::string(state.latest->body.view()));
    state.sent_version = state.latest->version;
    state.must_send = false;
    included.emplace_back(name, state.latest->version);
  }
  if (included.empty()) return std::nullopt;
  std::vector<std::string> versions;
  for (const auto& entry : included) versions.push_back(entry.second);
  response.set_version_info(absl::StrJoin(versions, "+"));
  response.set_type_url(type_url_);
  response.set_nonce(nonce);
  sent_.Remember(nonce, std::move(included));
  return response;
}

std::set<std::string> SotwStreamState::names() const {
  std::set<std::string> out;
  for (const auto& [name, state] : names_) out.insert(name);
  return out;
}

}  // namespace meshid::xds
