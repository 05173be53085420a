// Serving the registration stream (meshid.registration.v1.RegistrationDistributionService) from
// `meshid server` to the node agents: each agent receives the registration entries whose parent
// is its own SPIFFE ID, as authenticated by its client certificate, and nothing else.
//
// A poller reads the registry generation every poll_interval and, when it moved, every entry,
// and publishes each parent's EntrySet in an xds::ResourcePublisher under the parent's SPIFFE
// ID (an agent whose entries all went gets an empty set). A stream subscribes, through the
// wildcard name "self", to the set named after its caller; it cannot name another. Nothing of
// the stream machinery is written here.
//
// Threading: thread-safe; one poller thread between Start() and destruction.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/random.h"
#include "store/identity_registry.h"
#include "xds/publisher.h"
#include "xds/server.h"

namespace meshid::registration {

// The wildcard name an agent's stream subscribes to: its own entries.
inline constexpr absl::string_view kOwnEntriesName = "self";

struct RegistrationServerOptions {
  absl::Duration poll_interval = absl::Milliseconds(250);
};

class RegistrationDistributionServer {
 public:
  // Callers must authenticate with `authenticate`, whose answer (the caller's SPIFFE ID) names
  // the entries the stream gets; it must not be null. Metrics: meshid_registration_streams,
  // _pushes_total, _acks_total, _nacks_total, _stream_errors_total, and
  // meshid_registration_poll_errors_total. `registry` and `metrics` must outlive the server.
  // InvalidArgument for a poll interval that is not positive or a null authenticator.
  static absl::StatusOr<std::unique_ptr<RegistrationDistributionServer>> Create(RegistrationServerOptions options,
                                                                                xds::Authenticator authenticate,
                                                                                IdentityRegistry& registry,
                                                                                MetricsRegistry& metrics,
                                                                                LoggerPtr logger);
  ~RegistrationDistributionServer();  // stops the poller

  // Reads the registry if its generation moved since the last read, and publishes the sets that
  // changed and those of agents that subscribed since. Unavailable when the store cannot be read
  // (the sets already published stay). The poller calls it; tests may call it instead of
  // Start(), never concurrently with it.
  absl::Status PollOnce();
  // Starts the poller thread (the first poll runs at once).
  void Start();

  // Register with a grpc::ServerBuilder; the grpc::Server must be shut down before this goes.
  grpc::Service* service() { return service_.get(); }
  // Ends every open stream with UNAVAILABLE.
  void Shutdown() { streams_->Shutdown(); }
  int64_t open_streams() const { return streams_->open_streams(); }

 private:
  class ScopedProvider;
  RegistrationDistributionServer(RegistrationServerOptions options, IdentityRegistry& registry, LoggerPtr logger);
  // Asks the poller to publish the set of `parent` if it has none yet. Called under a stream's
  // lock, so it never publishes itself: publishing calls the streams' watchers, which take it.
  void WantPublished(const std::string& parent);

  const RegistrationServerOptions options_;
  IdentityRegistry& registry_;
  const LoggerPtr logger_;
  Counter* poll_errors_ = nullptr;
  OpenSslRandom random_;
  xds::ResourcePublisher publisher_;
  std::unique_ptr<ScopedProvider> provider_;
  std::unique_ptr<xds::StreamServer> streams_;
  std::unique_ptr<grpc::Service> service_;

  absl::Mutex mu_;
  absl::CondVar wake_;  // signalled when wanted_ grows or the server stops
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::set<std::string> wanted_ ABSL_GUARDED_BY(mu_);
  // Only PollOnce touches these (on one thread at a time).
  int64_t generation_ = 0;
  std::map<std::string, std::vector<RegistryEntry>> by_parent_;  // as of generation_
  // parent -> the version its set had at generation 0: what tells a changed set apart
  std::map<std::string, std::string> published_;
  std::thread poller_;
};

}  // namespace meshid::registration
