// Internal to sql/: a small pool of database connections shared by threads.
#pragma once

#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace meshid::sql {

// Hands out at most `max_size` connections at a time; Acquire blocks while all are in use.
// Idle connections are reused (newest first); a lease returns its connection on destruction
// unless it was discarded (a broken connection). Thread-safe.
template <typename Conn>
class ConnectionPool {
 public:
  using Factory = std::function<absl::StatusOr<std::unique_ptr<Conn>>()>;

  class Lease {
   public:
    Lease(ConnectionPool* pool, std::unique_ptr<Conn> conn, bool reused)
        : pool_(pool), conn_(std::move(conn)), reused_(reused) {}
    Lease(Lease&& other) noexcept
        : pool_(std::exchange(other.pool_, nullptr)), conn_(std::move(other.conn_)), reused_(other.reused_) {}
    Lease& operator=(Lease&&) = delete;
    ~Lease() {
      if (pool_ != nullptr) pool_->Release(std::move(conn_));
    }
    Conn& operator*() const { return *conn_; }
    Conn* operator->() const { return conn_.get(); }
    // True if the connection was opened for an earlier lease (it may have died since).
    bool reused() const { return reused_; }
    // Closes the connection instead of returning it.
    void Discard() { conn_.reset(); }

   private:
    ConnectionPool* pool_;
    std::unique_ptr<Conn> conn_;
    bool reused_;
  };

  ConnectionPool(int max_size, Factory factory)
      : max_size_(max_size < 1 ? 1 : max_size), factory_(std::move(factory)) {}

  absl::StatusOr<Lease> Acquire() {
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](ConnectionPool* p)
               ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu_) { return !p->idle_.empty() || p->open_ < p->max_size_; },
          this));
      if (!idle_.empty()) {
        std::unique_ptr<Conn> conn = std::move(idle_.back());
        idle_.pop_back();
        return Lease(this, std::move(conn), /*reused=*/true);
      }
      ++open_;  // reserve a slot, then connect without holding the lock
    }
    absl::StatusOr<std::unique_ptr<Conn>> conn = factory_();
    if (!conn.ok()) {
      absl::MutexLock lock(&mu_);
      --open_;
      return conn.status();
    }
    return Lease(this, *std::move(conn), /*reused=*/false);
  }

  // Closes every idle connection (after one turned out dead, the others likely are too).
  void DropIdle() {
    std::vector<std::unique_ptr<Conn>> dropped;
    absl::MutexLock lock(&mu_);
    open_ -= static_cast<int>(idle_.size());
    dropped.swap(idle_);
  }

 private:
  void Release(std::unique_ptr<Conn> conn) {
    absl::MutexLock lock(&mu_);
    if (conn == nullptr) {
      --open_;
    } else {
      idle_.push_back(std::move(conn));
    }
  }

  const int max_size_;
  const Factory factory_;
  absl::Mutex mu_;
  int open_ ABSL_GUARDED_BY(mu_) = 0;  // idle + leased
  std::vector<std::unique_ptr<Conn>> idle_ ABSL_GUARDED_BY(mu_);
};

}  // namespace meshid::sql
