#include "sds/sotw_state.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace meshid::sds {
namespace {
// How many past responses an ACK or NACK may still refer to.
constexpr size_t kRememberedResponses = 8;
}  // namespace

using envoy::service::discovery::v3::DiscoveryRequest;
using envoy::service::discovery::v3::DiscoveryResponse;

absl::StatusOr<SotwRequestResult> SotwStreamState::OnRequest(const DiscoveryRequest& request) {
  if (!request.type_url().empty() && request.type_url() != kSecretTypeUrl) {
    return absl::InvalidArgumentError(
        absl::StrCat("type_url \"", request.type_url(), "\" is not served here; SDS serves ", kSecretTypeUrl));
  }
  SotwRequestResult result;
  const bool initial = !started_ || request.response_nonce().empty();
  if (!started_) {
    started_ = true;
    node_id_ = request.node().id();
  }
  if (!initial) {
    for (const auto& [nonce, included] : sent_) {
      if (nonce != request.response_nonce()) continue;
      result.applied = included;
      if (request.has_error_detail()) {
        result.nack = true;
        result.nack_code = request.error_detail().code();
        result.nack_message = request.error_detail().message();
        for (const auto& [name, version] : included) {
          auto it = names_.find(name);
          if (it != names_.end()) it->second.rejected_version = version;
        }
      } else {
        result.ack = true;
      }
    }
    if (request.response_nonce() != last_nonce_) {
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

absl::Status SotwStreamState::OnUpdate(const SdsUpdate& update) {
  auto it = names_.find(update.name);
  if (it == names_.end()) return absl::OkStatus();
  if (!update.error.ok()) return update.error;
  if (update.resource == nullptr) return absl::OkStatus();
  NameState& state = it->second;
  if (state.latest != nullptr && update.resource->generation <= state.latest->generation) return absl::OkStatus();
  state.latest = update.resource;
  return absl::OkStatus();
}

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
  std::vector<std::pair<std::string, std::string>> included;
  DiscoveryResponse response;
  for (auto& [name, state] : names_) {
    if (!Due(state)) continue;
    auto* any = response.add_resources();
    any->set_type_url(std::string(kSecretTypeUrl));
    any->set_value(std::string(state.latest->serialized_secret.view()));
    state.sent_version = state.latest->version;
    state.must_send = false;
    included.emplace_back(name, state.latest->version);
  }
  if (included.empty()) return std::nullopt;
  std::vector<std::string> versions;
  for (const auto& entry : included) versions.push_back(entry.second);
  response.set_version_info(absl::StrJoin(versions, "+"));
  response.set_type_url(std::string(kSecretTypeUrl));
  response.set_nonce(nonce);
  last_nonce_ = nonce;
  sent_.emplace_back(nonce, std::move(included));
  if (sent_.size() > kRememberedResponses) sent_.pop_front();
  return response;
}

std::set<std::string> SotwStreamState::names() const {
  std::set<std::string> out;
  for (const auto& [name, state] : names_) out.insert(name);
  return out;
}

}  // namespace meshid::sds
