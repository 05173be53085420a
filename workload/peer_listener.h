// gRPC on a Unix socket, knowing for every call which process is calling.
//
// gRPC C++ does not expose SO_PEERCRED, so the listener owns the socket: its own thread accepts
// each connection, reads the peer's credentials and pins its process (workload/peer_process.h),
// records the connection in a PeerRegistry under its descriptor number, and then hands the
// descriptor to a grpc::Server with grpc::AddInsecureChannelFromFd. For such a connection a
// call's ServerContext::peer() is "fd:<N>" (gRPC 1.51 names the endpoint so;
// tests/workload/peer_listener_test.cc checks it), which PeerRegistry::Lookup takes.
//
// Why the number is a reliable key: a descriptor number is reused only after it has been
// closed, and gRPC closes a connection's descriptor only when the connection is gone and its
// last call has finished (each call holds its transport, which holds the endpoint; the test
// checks this too). So while a call runs, "fd:<N>" names that call's connection. Registering
// a number again (a new connection that got a closed one's number) replaces the old entry.
//
// Entries of closed connections are dropped by a sweep on the accept thread every
// `sweep_interval`: gRPC tells nobody when it closes a descriptor, and watching the socket
// ourselves (a duplicate descriptor) would keep it open after gRPC closes it. A stale entry
// costs a pidfd until the sweep or until its number is reused, whichever is first; Lookup
// never returns one (it checks that the descriptor is still the registered socket).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "workload/peer_process.h"
#include "workload/unique_fd.h"

namespace grpc {
class Server;
}  // namespace grpc

namespace meshid::workload {

// Connections by descriptor number. Thread-safe.
class PeerRegistry {
 public:
  // The peer of the call whose ServerContext::peer() is `peer`. Valid until that call has
  // finished (afterwards the number may name a newer connection). NotFound if `peer` is not
  // "fd:<N>" or no open connection is registered under N.
  absl::StatusOr<PeerProcess> Lookup(absl::string_view peer) const;

  // Records the connection on the open socket `fd`, replacing any entry under that number.
  // Internal if `fd` cannot be examined (fstat).
  absl::Status Register(int fd, PeerProcess peer);

  // Drops every entry whose descriptor has been closed or now is another file; returns how many.
  size_t Sweep();

  size_t size() const;

 private:
  struct Entry {
    dev_t device;  // of the socket: tells it from a later file with the same number
    ino_t inode;
    PeerProcess peer;
  };
  mutable absl::Mutex mu_;
  absl::flat_hash_map<int, Entry> entries_ ABSL_GUARDED_BY(mu_);
};

struct PeerListenerOptions {
  // The Unix socket to listen on. Missing parent directories are created (0755). An existing
  // socket file that nobody accepts on is replaced; a live one, or a file that is not a socket,
  // is refused.
  std::string socket_path;
  // Applied to the socket file before it listens, so no connection is accepted under another mode.
  int socket_mode = 0666;
  std::optional<gid_t> socket_group;  // chown'ed to this group when set
  int backlog = 128;
  // How often closed connections' entries are dropped from the registry.
  absl::Duration sweep_interval = absl::Seconds(10);
  PinMethod pin_method = PinMethod::kPeerPidfd;
};

// Counters it keeps (registered in the MetricsRegistry passed to Create):
//   meshid_agent_workload_connections_total{result}  accepted, refused (the peer could not be
//                                                     pinned; the connection is closed)
//   meshid_agent_workload_peers                       entries in the registry after the last
//                                                     accept or sweep
class PeerListener {
 public:
  // Takes the socket path, listens, and starts the accept thread. `server` is started
  // (BuildAndStart) with its services and no listening ports. `registry`, `server` and
  // `metrics` must outlive the listener, and the listener must be destroyed before the server
  // is shut down (it hands connections to it). InvalidArgument naming the option for a bad
  // option; FailedPrecondition if another process holds the path, or it is live or not a
  // socket; PermissionDenied or Internal from the system calls, naming the path.
  static absl::StatusOr<std::unique_ptr<PeerListener>> Create(const PeerListenerOptions& options,
                                                              PeerRegistry& registry, grpc::Server& server,
                                                              MetricsRegistry& metrics, LoggerPtr logger);
  // Stops the accept thread (at once: it waits on an eventfd besides the socket), closes the
  // listening socket and removes the socket file. Connections already handed to the server stay
  // the server's.
  ~PeerListener();
  PeerListener(const PeerListener&) = delete;
  PeerListener& operator=(const PeerListener&) = delete;

  // The address clients dial: "unix:<socket path>".
  std::string target() const { return "unix:" + options_.socket_path; }

 private:
  PeerListener(const PeerListenerOptions& options, PeerRegistry& registry, grpc::Server& server,
               MetricsRegistry& metrics, LoggerPtr logger, UniqueFd lock, UniqueFd listening, UniqueFd wake);
  void Run();
  // Accepts until the backlog is empty; false if the thread should stop.
  bool AcceptAll();
  void Accepted(UniqueFd connection);

  const PeerListenerOptions options_;
  PeerRegistry& registry_;
  grpc::Server& server_;
  Counter& accepted_;
  Counter& refused_;
  Gauge& peers_;
  const LoggerPtr logger_;
  const UniqueFd lock_;       // flock on "<socket path>.lock": one listener per path
  const UniqueFd listening_;  // the listening socket
  const UniqueFd wake_;       // eventfd: written to stop the thread
  std::thread thread_;
};

}  // namespace meshid::workload
