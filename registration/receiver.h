// The node's side of the registration stream: the entries the server says this agent is the
// parent of, which decide what each attested workload on the node may be.
//
// A response is applied only when it decodes (wire.h) for this agent's own SPIFFE ID; anything
// else is refused with the reason (the stream NACKs it) and the entries in force stay. Before
// the first response the agent knows no entries: every workload is unknown (no identity).
//
// Watchers are called on the applying thread, after the new entries are in force, outside the
// receiver's lock. Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "envoy/service/discovery/v3/discovery.pb.h"

namespace meshid::registration {

struct NodeEntry {
  std::string spiffe_id;
  std::vector<std::string> selectors;  // canonical, sorted
  std::vector<std::string> dns_names;
  absl::Duration max_ttl = absl::ZeroDuration();
};

// The entries in force. Immutable.
struct NodeEntries {
  std::string parent_id;
  int64_t registry_generation = 0;
  std::vector<NodeEntry> entries;  // by spiffe_id

  // The entries whose every selector is among `selectors` (common/selector.h), by spiffe_id.
  std::vector<const NodeEntry*> Matching(const absl::flat_hash_set<std::string>& selectors) const;
};

class EntryReceiver {
 public:
  // `own_id` returns the agent's own SPIFFE ID ("" while it has no certificate yet: a set is then
  // taken for the parent it names, which the server chose by the stream's authentication). Metrics:
  // meshid_agent_registration_entries, meshid_agent_registration_updates_total,
  // meshid_agent_registration_rejected_total. `metrics` must outlive the receiver.
  EntryReceiver(std::function<std::string()> own_id, MetricsRegistry& metrics, LoggerPtr logger);

  // The xds::SotwClient handler: decodes a response and puts its entries in force.
  absl::Status OnResponse(const envoy::service::discovery::v3::DiscoveryResponse& response);
  // Puts `entries` in force (what OnResponse does after decoding; tests use it directly).
  void Apply(std::shared_ptr<const NodeEntries> entries);

  // Null before the first set arrived.
  std::shared_ptr<const NodeEntries> current() const;

  // `on_change` runs after every change until the returned handle is destroyed; once the
  // destructor returned no call is running or will start (so it must not be destroyed from
  // inside `on_change`).
  class Watch;
  std::unique_ptr<Watch> AddWatch(std::function<void()> on_change);

 private:
  void RemoveWatch(uint64_t id);

  const std::function<std::string()> own_id_;
  const LoggerPtr logger_;
  Counter* updates_ = nullptr;
  Counter* rejected_ = nullptr;
  mutable absl::Mutex mu_;
  std::shared_ptr<const NodeEntries> current_ ABSL_GUARDED_BY(mu_);
  uint64_t next_watch_ ABSL_GUARDED_BY(mu_) = 1;
  struct Callback {
    // Set before the callback is shared, without taking `mu`: AddWatch's caller may hold a lock
    // that the function takes, and locking `mu` here would order that lock before `mu`.
    explicit Callback(std::function<void()> on_change) : fn(std::move(on_change)) {}
    absl::Mutex mu;
    std::function<void()> fn ABSL_GUARDED_BY(mu);  // null once removed
  };
  std::map<uint64_t, std::shared_ptr<Callback>> watches_ ABSL_GUARDED_BY(mu_);
};

class EntryReceiver::Watch {
 public:
  ~Watch() { receiver_.RemoveWatch(id_); }

 private:
  friend class EntryReceiver;
  Watch(EntryReceiver& receiver, uint64_t id) : receiver_(receiver), id_(id) {}
  EntryReceiver& receiver_;
  const uint64_t id_;
};

}  // namespace meshid::registration
