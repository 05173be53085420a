#include "ca/identity_lookup.h"

#include <algorithm>

namespace meshid {

BatchedIdentityLookup::BatchedIdentityLookup(Store& store, MetricsRegistry& metrics, int readers, int workers)
    : store_(store),
      queries_(metrics.AddCounter("meshid_ca_identity_lookup_queries", "Registry and deny-list queries.")),
      batch_size_(metrics.AddHistogram("meshid_ca_identity_lookup_batch_size", "Identities looked up per query.",
                                       {1, 2, 4, 8, 16, 32, 64, 128, 256})) {
  for (int i = 0; i < std::max(1, readers); ++i) readers_.emplace_back([this] { ReaderLoop(); });
  for (int i = 0; i < std::max(1, workers); ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

BatchedIdentityLookup::~BatchedIdentityLookup() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    queued_.SignalAll();
  }
  for (std::thread& reader : readers_) reader.join();
  {
    absl::MutexLock lock(&mu_);
    readers_done_ = true;
    answered_.SignalAll();
  }
  for (std::thread& worker : workers_) worker.join();
}

void BatchedIdentityLookup::GetAsync(std::string spiffe_id, Callback done) {
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      lookups_.push_back(Lookup{std::move(spiffe_id), std::move(done)});
      queued_.Signal();
      return;
    }
  }
  done(absl::UnavailableError("the identity lookup is shutting down"));
}

void BatchedIdentityLookup::ReaderLoop() {
  std::vector<Lookup> batch;
  std::vector<std::string> ids;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      while (lookups_.empty() && !stopping_) queued_.Wait(&mu_);
      if (lookups_.empty()) return;  // stopping, nothing left
      batch.swap(lookups_);
    }
    ids.clear();
    for (const Lookup& l : batch) ids.push_back(l.spiffe_id);
    auto statuses = store_.GetIdentityStatuses(ids);
    queries_.Increment();
    batch_size_.Observe(static_cast<double>(batch.size()));
    absl::MutexLock lock(&mu_);
    for (size_t i = 0; i < batch.size(); ++i) {
      absl::StatusOr<IdentityStatus> result = statuses.ok() ? absl::StatusOr<IdentityStatus>((*statuses)[i]) : statuses.status();
      callbacks_.push_back([done = std::move(batch[i].done), result = std::move(result)]() mutable { done(std::move(result)); });
    }
    answered_.SignalAll();
    batch.clear();
  }
}

void BatchedIdentityLookup::WorkerLoop() {
  while (true) {
    std::function<void()> callback;
    {
      absl::MutexLock lock(&mu_);
      // Workers stop only once the readers are gone and every answer has run.
      while (callbacks_.empty() && !readers_done_) answered_.Wait(&mu_);
      if (callbacks_.empty()) return;
      callback = std::move(callbacks_.front());
      callbacks_.pop_front();
    }
    callback();
  }
}

}  // namespace meshid
