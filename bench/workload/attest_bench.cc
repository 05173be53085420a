// What workload attestation costs the node agent per call (workload/attestor.h): Attest on a
// caller whose executable's digest is cached (every call after a binary's first), as root,
// against the real kernel; and its parts:
//  - BM_Attest/<groups>: the whole of Attest for a running child of this process (same
//    executable: the digest is cached after the first iteration) with 0, 4 or 16
//    supplementary groups, each looked up by name (getgrgid_r on /etc/group);
//  - BM_AttestFirstSight: Attest with an empty digest cache, so the executable (this benchmark's
//    binary, its size in the counters) is read and hashed;
//  - BM_ReadProcStatus: opening /proc/<pid>, reading and parsing its status;
//  - BM_ReadExecutableLink: open + fstat + readlink + fstatat of /proc/<pid>/exe and the stat of
//    the path (what attestation does besides hashing);
//  - BM_NameLookups: getpwuid_r and getgrgid_r for one uid and one gid;
//  - BM_PinPeer: what the listener does per accepted connection (SO_PEERCRED, SO_PEERPIDFD);
//  - BM_RegistryLookup: PeerRegistry::Lookup of a call's peer.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/metrics.h"
#include "workload/attestor.h"
#include "workload/peer_listener.h"
#include "workload/peer_process.h"
#include "workload/proc.h"

namespace meshid::workload {
namespace {

void Check(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "setup failed: %s\n", what.c_str());
    std::abort();
  }
}

// A child of this process with `groups` supplementary groups (gids 1..groups, named in
// Debian's /etc/group for the first ones), waiting until killed. The constructor returns once
// the child has its groups; the child dies with this process (PR_SET_PDEATHSIG).
class Child {
 public:
  explicit Child(int groups) {
    int ready[2];
    Check(::pipe2(ready, O_CLOEXEC) == 0, "pipe");
    pid_ = ::fork();
    Check(pid_ >= 0, "fork");
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      std::vector<gid_t> gids;
      for (int i = 1; i <= groups; ++i) gids.push_back(static_cast<gid_t>(i));
      if (::setgroups(gids.size(), gids.data()) != 0) ::_exit(1);
      const char one = 1;
      if (::write(ready[1], &one, 1) != 1) ::_exit(1);
      ::pause();
      ::_exit(0);
    }
    ::close(ready[1]);
    char byte = 0;
    const bool started = ::read(ready[0], &byte, 1) == 1;
    ::close(ready[0]);
    Check(started, "the child could not set its groups (setgroups needs root)");
  }
  ~Child() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_;
};

PeerProcess Pin(pid_t pid) {
  auto pinned = PinnedProcess::Open(pid);
  Check(pinned.ok(), "pidfd_open");
  return PeerProcess{.credentials = {.pid = pid}, .process = *pinned};
}

void BM_Attest(benchmark::State& state) {
  Child child(static_cast<int>(state.range(0)));
  MetricsRegistry metrics;
  auto attestor = WorkloadAttestor::Create({}, metrics);
  Check(attestor.ok(), "attestor");
  const PeerProcess peer = Pin(child.pid());
  auto first = (*attestor)->Attest(peer);  // fills the digest cache
  Check(first.ok(), absl::StrCat("attest: ", first.status().ToString()));
  Check(first->supplementary_gids.size() == static_cast<size_t>(state.range(0)), "the child's groups");
  for (auto _ : state) {
    auto attributes = (*attestor)->Attest(peer);
    benchmark::DoNotOptimize(attributes);
  }
  state.counters["selectors"] = static_cast<double>(first->selectors.size());
}
BENCHMARK(BM_Attest)->Arg(0)->Arg(4)->Arg(16);

void BM_AttestFirstSight(benchmark::State& state) {
  Child child(0);
  const PeerProcess peer = Pin(child.pid());
  struct stat st {};
  Check(::stat("/proc/self/exe", &st) == 0, "stat /proc/self/exe");
  for (auto _ : state) {
    MetricsRegistry metrics;
    auto attestor = WorkloadAttestor::Create({}, metrics);
    auto attributes = (*attestor)->Attest(peer);
    benchmark::DoNotOptimize(attributes);
  }
  state.counters["executable_bytes"] = static_cast<double>(st.st_size);
  state.SetBytesProcessed(state.iterations() * st.st_size);
}
BENCHMARK(BM_AttestFirstSight);

void BM_ReadProcStatus(benchmark::State& state) {
  Child child(0);
  const std::string path = absl::StrCat("/proc/", child.pid());
  for (auto _ : state) {
    auto dir = OpenProcDir(child.pid());
    auto text = ReadFileAt(dir->get(), path, "status", 1 << 20);
    auto ids = ParseProcStatus(*text);
    benchmark::DoNotOptimize(ids);
  }
}
BENCHMARK(BM_ReadProcStatus);

void BM_ReadExecutableLink(benchmark::State& state) {
  Child child(0);
  auto dir = OpenProcDir(child.pid());
  Check(dir.ok(), "/proc/<pid>");
  for (auto _ : state) {
    UniqueFd exe(::openat(dir->get(), "exe", O_RDONLY | O_CLOEXEC));
    struct stat opened {
    }, now{}, named{};
    ::fstat(exe.get(), &opened);
    char target[PATH_MAX + 1];
    const ssize_t n = ::readlinkat(dir->get(), "exe", target, sizeof(target));
    ::fstatat(dir->get(), "exe", &now, 0);
    target[n > 0 ? n : 0] = '\0';
    ::stat(target, &named);
    benchmark::DoNotOptimize(named);
  }
}
BENCHMARK(BM_ReadExecutableLink);

void BM_NameLookups(benchmark::State& state) {
  std::vector<char> buffer(1 << 16);
  for (auto _ : state) {
    passwd user{}, *found_user = nullptr;
    group grp{}, *found_group = nullptr;
    ::getpwuid_r(65534, &user, buffer.data(), buffer.size(), &found_user);
    ::getgrgid_r(65534, &grp, buffer.data(), buffer.size(), &found_group);
    benchmark::DoNotOptimize(found_user);
    benchmark::DoNotOptimize(found_group);
  }
}
BENCHMARK(BM_NameLookups);

void BM_PinPeer(benchmark::State& state) {
  int fds[2];
  Check(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0, "socketpair");
  for (auto _ : state) {
    auto peer = PinPeer(fds[0], BoottimeTicks());
    benchmark::DoNotOptimize(peer);
  }
  ::close(fds[0]);
  ::close(fds[1]);
}
BENCHMARK(BM_PinPeer);

void BM_RegistryLookup(benchmark::State& state) {
  PeerRegistry registry;
  std::vector<int> sockets;
  const PeerProcess self = Pin(::getpid());
  // 1,000 connections registered, as an agent with that many callers would have.
  for (int i = 0; i < 500; ++i) {
    int fds[2];
    Check(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0, "socketpair");
    for (int fd : fds) {
      Check(registry.Register(fd, self).ok(), "register");
      sockets.push_back(fd);
    }
  }
  const std::string peer = absl::StrCat("fd:", sockets[sockets.size() / 2]);
  for (auto _ : state) {
    auto found = registry.Lookup(peer);
    benchmark::DoNotOptimize(found);
  }
  for (int fd : sockets) ::close(fd);
}
BENCHMARK(BM_RegistryLookup);

}  // namespace
}  // namespace meshid::workload

BENCHMARK_MAIN();
