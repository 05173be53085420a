// The registry and deny-list read that precedes every signature, batched: concurrent requests
// share one store query (Store::GetIdentityStatuses) the way the ledger shares one commit. On
// PostgreSQL a query per request costs a round trip and about as much database CPU as the rest
// of the issuance; batched, the cost is per batch. Asynchronous, so that no gRPC thread waits
// for the database: a request's continuation (validating and signing) runs on a small pool
// once its batch has answered.
//
// Freshness is unchanged: a lookup is answered by a query that starts after the lookup was
// queued, so a block committed before a request arrives is seen by that request.
#pragma once

#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/metrics.h"
#include "sql/store.h"

namespace meshid {

class BatchedIdentityLookup {
 public:
  using Callback = std::function<void(absl::StatusOr<IdentityStatus>)>;

  // `store` must outlive the lookup. `readers` queries may be in flight at once; `workers`
  // threads run the callbacks (both >= 1).
  BatchedIdentityLookup(Store& store, MetricsRegistry& metrics, int readers = 2, int workers = 2);
  // Answers what is queued and runs every callback, then stops.
  ~BatchedIdentityLookup();
  BatchedIdentityLookup(const BatchedIdentityLookup&) = delete;
  BatchedIdentityLookup& operator=(const BatchedIdentityLookup&) = delete;

  // Calls `done` on a worker thread with the identity's status (or the store's error) from a
  // query that started after this call. Thread-safe.
  void GetAsync(std::string spiffe_id, Callback done);

 private:
  struct Lookup {
    std::string spiffe_id;
    Callback done;
  };
  void ReaderLoop();
  void WorkerLoop();

  Store& store_;
  Counter& queries_;
  Histogram& batch_size_;
  absl::Mutex mu_;
  absl::CondVar queued_;
  absl::CondVar answered_;
  std::vector<Lookup> lookups_ ABSL_GUARDED_BY(mu_);                 // waiting for a query
  std::deque<std::function<void()>> callbacks_ ABSL_GUARDED_BY(mu_);  // waiting for a worker
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool readers_done_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> readers_;
  std::vector<std::thread> workers_;
};

}  // namespace meshid
