// What the state-of-the-world and the delta stream states share: matching an ACK or NACK to the
// response whose nonce it echoes, keeping the newest resource of a watched name, and what a
// client reports it runs. Not thread-safe; each stream serializes its calls.
#pragma once

#include <cstddef>
#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "xds/provider.h"

namespace meshid::xds {

// The (name, version) pairs a response carried.
using SentResources = std::vector<std::pair<std::string, std::string>>;

// The version_info of a state-of-the-world response carrying `resources`: their versions joined
// by "+" (one resource: its version).
inline std::string SotwVersionInfo(const SentResources& resources) {
  return absl::StrJoin(resources, "+", [](std::string* out, const auto& entry) { out->append(entry.second); });
}

// What a request says about an earlier response.
struct AckOrNack {
  bool ack = false;
  bool nack = false;
  SentResources applied;     // the (name, version) pairs of the response it echoes
  std::string nack_message;  // error_detail.message of a NACK
  int nack_code = 0;
};

// An error message (a NACK's) as streams keep and report it: clipped to 4 KiB, then "...".
inline std::string ClippedError(absl::string_view message) {
  constexpr size_t kMaxErrorBytes = 4096;
  if (message.size() <= kMaxErrorBytes) return std::string(message);
  return absl::StrCat(message.substr(0, kMaxErrorBytes), "...");
}

// What a stream's client reports it runs, folded from its requests, for observers (the policy
// relay reports it per proxy).
struct ClientStatus {
  std::string applied_version;   // version_info of the first request, then of each response ACKed
  std::string rejected_version;  // of the last response NACKed ("": none)
  std::string last_error;        // that NACK's message (ClippedError)

  void OnFirstRequest(absl::string_view version_info) { applied_version = std::string(version_info); }
  // Takes in the verdict of a request that was not stale.
  void OnVerdict(const AckOrNack& verdict) {
    if (verdict.ack) applied_version = SotwVersionInfo(verdict.applied);
    if (!verdict.nack) return;
    rejected_version = SotwVersionInfo(verdict.applied);
    last_error = ClippedError(verdict.nack_message);
  }
};

// The last few responses of a stream, by nonce.
class SentResponses {
 public:
  // Records a response just sent; its nonce becomes the latest.
  void Remember(const std::string& nonce, SentResources included) {
    last_nonce_ = nonce;
    sent_.emplace_back(nonce, std::move(included));
    if (sent_.size() > kRemembered) sent_.pop_front();
  }
  bool IsLatest(const std::string& nonce) const { return nonce == last_nonce_; }

  // When `request` echoes the nonce of a remembered response, fills `verdict`: an ACK, or a
  // NACK with its code and message, which also sets `rejected_version` in `names` for every
  // name the response carried, so that version is never sent again.
  template <typename Request, typename NameStates>
  void Judge(const Request& request, NameStates& names, AckOrNack& verdict) const {
    for (const auto& [nonce, included] : sent_) {
      if (nonce != request.response_nonce()) continue;
      verdict.applied = included;
      if (!request.has_error_detail()) {
        verdict.ack = true;
        continue;
      }
      verdict.nack = true;
      verdict.nack_code = request.error_detail().code();
      verdict.nack_message = request.error_detail().message();
      for (const auto& [name, version] : included) {
        auto it = names.find(name);
        if (it != names.end()) it->second.rejected_version = version;
      }
    }
  }

 private:
  static constexpr size_t kRemembered = 8;  // how many past responses an ACK or NACK may refer to
  std::string last_nonce_;
  std::deque<std::pair<std::string, SentResources>> sent_;  // newest last
};

// Takes in a provider update for a stream watching `names` (a map from name to a state with a
// `latest` resource): keeps the resource when the name is watched and it is newer than the one
// kept. Returns the update's error for a watched name; other updates are ignored.
template <typename NameStates>
absl::Status KeepNewest(NameStates& names, const xds::ResourceUpdate& update) {
  auto it = names.find(update.name);
  if (it == names.end()) return absl::OkStatus();
  if (!update.error.ok()) return update.error;
  if (update.resource == nullptr) return absl::OkStatus();
  auto& latest = it->second.latest;
  if (latest != nullptr && update.resource->generation <= latest->generation) return absl::OkStatus();
  latest = update.resource;
  return absl::OkStatus();
}

}  // namespace meshid::xds
