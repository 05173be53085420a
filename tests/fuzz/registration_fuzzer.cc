// The registration stream's responses reach every agent over the network and decide which
// workloads on its node get which identity; a workload's selectors come from the kernel, but the
// peer names that lead to them are strings gRPC hands over. The input is read as a
// DiscoveryResponse (DecodeEntrySetResponse for a fixed agent, and for an agent that does not
// know its own ID yet), then its entries are matched against selectors taken from the input;
// and, raw, as a gRPC peer string for the Workload API's connection registry. Besides not
// crashing: every refusal is InvalidArgument; an accepted set names the agent as parent of every
// entry, holds 1 to 64 canonical selectors per entry, and turns into the stream's resource and
// back unchanged; a peer string never finds a connection in an empty registry.
// Corpus: responses with zero, one and two entries for the agent below.
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_split.h"
#include "common/selector.h"
#include "envoy/service/discovery/v3/discovery.pb.h"
#include "registration/receiver.h"
#include "registration/wire.h"
#include "workload/peer_listener.h"

namespace {

constexpr char kAgent[] = "spiffe://cluster.local/ns/istio-system/sa/node-1";

void CheckSet(const meshid::registration::v1::EntrySet& set, const std::string& own, const std::string& input) {
  if (set.parent_id() != own) __builtin_trap();
  std::vector<meshid::RegistryEntry> entries;
  for (const auto& e : set.entries()) {
    if (e.parent_id() != own || e.selectors_size() < 1 || e.selectors_size() > 64) __builtin_trap();
    for (const auto& s : e.selectors()) {
      auto canonical = meshid::ParseSelector(s);
      if (!canonical.ok() || *canonical != s) __builtin_trap();
    }
    meshid::RegistryEntry entry;
    entry.spiffe_id = e.spiffe_id();
    entry.parent_id = e.parent_id();
    entry.selectors.assign(e.selectors().begin(), e.selectors().end());
    entry.dns_names.assign(e.dns_names().begin(), e.dns_names().end());
    entry.max_ttl = absl::Seconds(e.max_ttl_seconds());
    entries.push_back(std::move(entry));
  }
  // Re-published, it decodes to the same set.
  const auto resource = meshid::registration::EntrySetResource(own, entries, set.registry_generation());
  envoy::service::discovery::v3::DiscoveryResponse again;
  again.set_type_url(std::string(meshid::registration::kEntrySetTypeUrl));
  again.set_version_info(resource.version);
  auto* any = again.add_resources();
  any->set_type_url(std::string(meshid::registration::kEntrySetTypeUrl));
  any->set_value(std::string(resource.body.view()));
  auto decoded = meshid::registration::DecodeEntrySetResponse(again, own);
  if (!decoded.ok() || decoded->SerializeAsString() != set.SerializeAsString()) __builtin_trap();

  // Matching against selectors drawn from the input never matches an entry it should not.
  meshid::registration::NodeEntries node;
  for (const auto& e : entries) node.entries.push_back({e.spiffe_id, e.selectors, e.dns_names, e.max_ttl});
  absl::flat_hash_set<std::string> present;
  for (absl::string_view part : absl::StrSplit(input, '\n')) present.insert(std::string(part));
  for (const auto* match : node.Matching(present)) {
    for (const auto& s : match->selectors) {
      if (!present.contains(s)) __builtin_trap();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  envoy::service::discovery::v3::DiscoveryResponse response;
  if (response.ParseFromString(input)) {
    for (const std::string& own : {std::string(kAgent), std::string()}) {
      auto set = meshid::registration::DecodeEntrySetResponse(response, own);
      if (!set.ok()) {
        if (!absl::IsInvalidArgument(set.status())) __builtin_trap();
        continue;
      }
      CheckSet(*set, own.empty() ? set->parent_id() : own, input);
    }
  }
  meshid::workload::PeerRegistry peers;
  if (peers.Lookup(input).ok()) __builtin_trap();
  return 0;
}
