#include "xds/sotw_state.h"

#include "absl/strings/str_cat.h"

namespace meshid::xds {
using envoy::service::discovery::v3::DiscoveryRequest;
using envoy::service::discovery::v3::DiscoveryResponse;

absl::Status SotwStreamState::Check(const DiscoveryRequest& request) const {
  if (!request.type_url().empty() && request.type_url() != type_.type_url) {
    return absl::InvalidArgumentError(
        absl::StrCat("type_url \"", request.type_url(), "\" is not served here; this stream serves ", type_.type_url));
  }
  const bool first = !started_;
  if (first && type_.sotw.require_node_id && request.node().id().empty()) {
    return absl::InvalidArgumentError("missing node information: the first request needs node.id");
  }
  if (type_.sotw.validate_request) return type_.sotw.validate_request(request, first);
  return absl::OkStatus();
}

absl::StatusOr<SotwRequestResult> SotwStreamState::OnRequest(const DiscoveryRequest& request) {
  if (absl::Status status = Check(request); !status.ok()) return status;
  const SotwRules& rules = type_.sotw;
  SotwRequestResult result;
  const bool initial = !started_ || request.response_nonce().empty();
  if (!started_) {
    started_ = true;
    result.first = true;
    node_id_ = request.node().id();
  }
  if (!initial) {
    const bool latest = sent_.IsLatest(request.response_nonce());
    if (rules.strict_ack && (!latest || latest_answered_)) {
      result.stale = true;
      return result;
    }
    sent_.Judge(request, names_, result);
    if (!latest) {
      result.stale = true;
      return result;
    }
    latest_answered_ = true;
    if (rules.strict_ack && result.ack && request.version_info() != SotwVersionInfo(result.applied)) {
      // It echoes the nonce but says it still runs another version: a rejection without details.
      result.ack = false;
      result.nack = true;
      result.nack_message =
          absl::StrCat("the client acknowledged the response but reports version ", request.version_info());
      for (const auto& [name, version] : result.applied) {
        if (auto it = names_.find(name); it != names_.end()) it->second.rejected_version = version;
      }
    }
  }

  std::set<std::string> requested(request.resource_names().begin(), request.resource_names().end());
  if (requested.empty()) requested.insert(rules.wildcard_names.begin(), rules.wildcard_names.end());
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
    if (initial && !rules.strict_ack) state.rejected_version.clear();
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
  if (type_.sotw.one_response_in_flight && !latest_answered_) return false;
  for (const auto& [name, state] : names_) {
    if (Due(state)) return true;
  }
  return false;
}

std::optional<DiscoveryResponse> SotwStreamState::TakeResponse(const std::string& nonce) {
  if (type_.sotw.one_response_in_flight && !latest_answered_) return std::nullopt;
  SentResources included;
  DiscoveryResponse response;
  for (auto& [name, state] : names_) {
    if (!Due(state)) continue;
    auto* any = response.add_resources();
    any->set_type_url(type_.type_url);
    any->set_value(std::string(state.latest->body.view()));
    state.sent_version = state.latest->version;
    state.must_send = false;
    included.emplace_back(name, state.latest->version);
  }
  if (included.empty()) return std::nullopt;
  response.set_version_info(SotwVersionInfo(included));
  response.set_type_url(type_.type_url);
  response.set_nonce(nonce);
  sent_.Remember(nonce, std::move(included));
  latest_answered_ = false;
  return response;
}

std::set<std::string> SotwStreamState::names() const {
  std::set<std::string> out;
  for (const auto& [name, state] : names_) out.insert(name);
  return out;
}

}  // namespace meshid::xds
