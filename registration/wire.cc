#include "registration/wire.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "common/secret.h"
#include "common/selector.h"
#include "common/spiffe_id.h"
#include "xds/resource.h"

namespace meshid::registration {
namespace {

using envoy::service::discovery::v3::DiscoveryRequest;
using envoy::service::discovery::v3::DiscoveryResponse;
using meshid::registration::v1::EntrySet;

absl::string_view View(const std::string& s) { return absl::string_view(s.data(), s.size()); }

absl::StatusOr<int64_t> ParseVersion(absl::string_view version_info) {
  return xds::ParseNumberedVersion(version_info, "registry generation");
}

absl::Status ValidateRequest(const DiscoveryRequest& request, bool first) {
  if (View(request.type_url()) != kEntrySetTypeUrl) {
    return absl::InvalidArgumentError(absl::StrCat("type_url \"", xds::ClipForError(View(request.type_url())),
                                                   "\" is not served here; want ", kEntrySetTypeUrl));
  }
  if (auto version = ParseVersion(View(request.version_info())); !version.ok()) return version.status();
  if (first && request.node().id().size() > 256) return absl::InvalidArgumentError("node.id is longer than 256 bytes");
  return absl::OkStatus();
}

absl::Status CheckEntry(const meshid::registration::v1::WorkloadEntry& entry, absl::string_view own_id,
                        const std::string& field) {
  if (auto id = SpiffeId::Parse(entry.spiffe_id()); !id.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".spiffe_id: ", id.status().message()));
  }
  if (View(entry.parent_id()) != own_id) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".parent_id \"", xds::ClipForError(View(entry.parent_id())),
                                                   "\" is not this agent (", own_id, ")"));
  }
  if (entry.selectors_size() < 1 || entry.selectors_size() > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".selectors: ", entry.selectors_size(), " selectors; an entry has 1 to 64"));
  }
  std::vector<std::string> selectors(entry.selectors().begin(), entry.selectors().end());
  auto canonical = ParseSelectors(selectors);
  if (!canonical.ok()) return absl::InvalidArgumentError(absl::StrCat(field, ".", canonical.status().message()));
  if (*canonical != selectors) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".selectors: not canonical, sorted and unique"));
  }
  if (entry.max_ttl_seconds() < 0) return absl::InvalidArgumentError(absl::StrCat(field, ".max_ttl_seconds: negative"));
  if (entry.dns_names_size() > 64) return absl::InvalidArgumentError(absl::StrCat(field, ".dns_names: more than 64"));
  return absl::OkStatus();
}

}  // namespace

const xds::ResourceType& EntrySetType() {
  static const xds::ResourceType type{
      .type_url = std::string(kEntrySetTypeUrl),
      .sotw_method = "/meshid.registration.v1.RegistrationDistributionService/StreamEntries",
      .sotw =
          {
              .require_node_id = true,
              // A request names nothing: the server gives it the caller's own set (server.h).
              .wildcard_names = {"self"},
              .strict_ack = true,
              .validate_request = ValidateRequest,
          },
      .client_acks_unchanged_without_handler = true,
  };
  return type;
}

xds::Resource EntrySetResource(const std::string& parent_id, const std::vector<RegistryEntry>& entries,
                               int64_t registry_generation) {
  EntrySet set;
  set.set_parent_id(parent_id);
  set.set_registry_generation(registry_generation);
  for (const RegistryEntry& entry : entries) {
    auto* out = set.add_entries();
    out->set_spiffe_id(entry.spiffe_id);
    out->set_parent_id(entry.parent_id);
    for (const auto& selector : entry.selectors) out->add_selectors(selector);
    for (const auto& name : entry.dns_names) out->add_dns_names(name);
    out->set_max_ttl_seconds(absl::ToInt64Seconds(entry.max_ttl));
  }
  xds::Resource resource;
  resource.name = parent_id;
  std::string body = set.SerializeAsString();
  resource.version = absl::StrCat(registry_generation, ".", xds::ContentVersion(body));
  resource.body = SecretString(std::move(body));
  return resource;
}

absl::StatusOr<EntrySet> DecodeEntrySetResponse(const DiscoveryResponse& response, absl::string_view own_id) {
  if (View(response.type_url()) != kEntrySetTypeUrl) {
    return absl::InvalidArgumentError(
        absl::StrCat("type_url \"", xds::ClipForError(View(response.type_url())), "\" is not ", kEntrySetTypeUrl));
  }
  if (response.resources_size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("resources: a registration response carries exactly one, this one ", response.resources_size()));
  }
  const auto& any = response.resources(0);
  if (View(any.type_url()) != kEntrySetTypeUrl) {
    return absl::InvalidArgumentError(absl::StrCat("resources[0].type_url \"", xds::ClipForError(View(any.type_url())),
                                                   "\" is not ", kEntrySetTypeUrl));
  }
  if (any.value().size() > kMaxEntrySetBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("resources[0]: ", any.value().size(), " bytes, more than ", kMaxEntrySetBytes));
  }
  EntrySet set;
  if (!set.ParseFromString(any.value())) {
    return absl::InvalidArgumentError("resources[0]: not a serialized meshid.registration.v1.EntrySet");
  }
  if (own_id.empty()) {
    // Not known yet (the agent's first certificate is on its way): the server sends a stream
    // only its caller's set, so the set's own parent stands in, as long as it is one.
    own_id = View(set.parent_id());
    if (auto id = SpiffeId::Parse(own_id); !id.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("resources[0].parent_id: ", id.status().message()));
    }
  }
  if (View(set.parent_id()) != own_id) {
    return absl::InvalidArgumentError(absl::StrCat(
        "resources[0].parent_id \"", xds::ClipForError(View(set.parent_id())), "\" is not this agent (", own_id, ")"));
  }
  if (set.entries_size() > kMaxEntriesPerParent) {
    return absl::InvalidArgumentError(
        absl::StrCat("resources[0].entries: ", set.entries_size(), " entries, more than ", kMaxEntriesPerParent));
  }
  std::set<std::string> seen;
  for (int i = 0; i < set.entries_size(); ++i) {
    const std::string field = absl::StrCat("resources[0].entries[", i, "]");
    if (auto s = CheckEntry(set.entries(i), own_id, field); !s.ok()) return s;
    if (!seen.insert(set.entries(i).spiffe_id()).second) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".spiffe_id: listed twice"));
    }
  }
  if (set.registry_generation() < 0) return absl::InvalidArgumentError("resources[0].registry_generation: negative");
  auto version = ParseVersion(View(response.version_info()));
  if (!version.ok()) return version.status();
  if (response.version_info().empty() || *version != set.registry_generation()) {
    return absl::InvalidArgumentError(
        absl::StrCat("version_info ", *version, " differs from the set's generation ", set.registry_generation()));
  }
  return set;
}

}  // namespace meshid::registration
