// Attestation against the real kernel (workload/attestor.h, workload/peer_process.h): the
// test process and its children as callers, a caller that exits while it is attested, a pid
// given to another process (as root, through /proc/sys/kernel/ns_last_pid), a process without
// an executable.
#include "workload/attestor.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/metrics.h"
#include "common/sha256.h"
#include "tests/support/dependencies.h"
#include "tests/support/status_matchers.h"
#include "tests/support/temp_dir.h"
#include "tests/workload/child_processes.h"
#include "workload/peer_process.h"
#include "workload/unique_fd.h"

namespace meshid::workload {
namespace {

using ::meshid::testing::BlockedChild;
using ::meshid::testing::StatusIs;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::IsSupersetOf;
using ::testing::Not;
using ::testing::StartsWith;

std::string SelfExe() {
  char path[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", path, sizeof(path));
  return n > 0 ? std::string(path, static_cast<size_t>(n)) : "";
}

std::string FileSha256(const std::string& path) {
  auto content = ReadFile(path, size_t{1} << 30);
  EXPECT_TRUE(content.ok()) << content.status();
  return content.ok() ? Sha256Hex(*content) : "";
}

PeerProcess Pin(pid_t pid) {
  auto pinned = PinnedProcess::Open(pid);
  EXPECT_TRUE(pinned.ok()) << pinned.status();
  return PeerProcess{.credentials = {.pid = pid}, .process = pinned.ok() ? *pinned : nullptr};
}

std::unique_ptr<WorkloadAttestor> MakeAttestor(MetricsRegistry& metrics, AttestorOptions options = {}) {
  auto attestor = WorkloadAttestor::Create(std::move(options), metrics);
  EXPECT_TRUE(attestor.ok()) << attestor.status();
  return attestor.ok() ? *std::move(attestor) : nullptr;
}

class AttestorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MESHID_REQUIRE_DEPENDENCY(::geteuid() == 0, "root (other processes' /proc/<pid>/exe, ns_last_pid)");
  }
  MetricsRegistry metrics_;
};

TEST_F(AttestorTest, ThisProcess) {
  auto attestor = MakeAttestor(metrics_);
  auto attributes = attestor->Attest(Pin(::getpid()));
  ASSERT_TRUE(attributes.ok()) << attributes.status();
  EXPECT_EQ(attributes->pid, ::getpid());
  EXPECT_EQ(attributes->uid, 0u);
  EXPECT_EQ(attributes->gid, 0u);
  EXPECT_EQ(attributes->user_name, "root");
  EXPECT_EQ(attributes->executable_path, SelfExe());
  const std::string sha256 = FileSha256(SelfExe());
  EXPECT_EQ(attributes->executable_sha256, sha256);
  EXPECT_THAT(attributes->selectors, IsSupersetOf(std::vector<std::string>{
                                         "unix:uid:0", "unix:user:root", "unix:gid:0", "unix:group:root",
                                         absl::StrCat("unix:path:", SelfExe()), absl::StrCat("unix:sha256:", sha256)}));
  EXPECT_TRUE(std::is_sorted(attributes->selectors.begin(), attributes->selectors.end()));
  EXPECT_EQ(std::adjacent_find(attributes->selectors.begin(), attributes->selectors.end()),
            attributes->selectors.end());
}

TEST_F(AttestorTest, TheDigestIsComputedOncePerExecutable) {
  auto attestor = MakeAttestor(metrics_);
  BlockedChild child;  // the same executable as this process
  ASSERT_TRUE(attestor->Attest(Pin(::getpid())).ok());
  auto attributes = attestor->Attest(Pin(child.pid()));
  ASSERT_TRUE(attributes.ok()) << attributes.status();
  EXPECT_EQ(attributes->pid, child.pid());
  EXPECT_EQ(attributes->executable_path, SelfExe());
  EXPECT_EQ(attestor->cached_digests(), 1u);
  const MetricLabels hit = {{"cache", "hit"}}, miss = {{"cache", "miss"}};
  EXPECT_EQ(metrics_.AddCounter("meshid_agent_workload_executable_digests_total", "", miss).value(), 1);
  EXPECT_EQ(metrics_.AddCounter("meshid_agent_workload_executable_digests_total", "", hit).value(), 1);
  EXPECT_EQ(metrics_.AddCounter("meshid_agent_workload_attestations_total", "", {{"result", "ok"}}).value(), 2);
}

double NameLookups(MetricsRegistry& metrics, const std::string& cache) {
  return metrics.AddCounter("meshid_agent_workload_name_lookups_total", "", {{"cache", cache}}).value();
}

TEST_F(AttestorTest, NamesAreCachedUntilTheDatabaseFilesChange) {
  testing::TempDir dir("meshid-workload");
  const std::string passwd = dir.Write("passwd", "v1");
  const std::string group = dir.Write("group", "v1");
  auto attestor = MakeAttestor(metrics_, {.passwd_file = passwd, .group_file = group});
  auto first = attestor->Attest(Pin(::getpid()));
  ASSERT_TRUE(first.ok()) << first.status();
  const double names = NameLookups(metrics_, "miss");  // the user and every group, looked up
  EXPECT_GE(names, 2);
  EXPECT_EQ(NameLookups(metrics_, "hit"), 0);

  auto second = attestor->Attest(Pin(::getpid()));
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->selectors, first->selectors);
  EXPECT_EQ(NameLookups(metrics_, "miss"), names);
  EXPECT_EQ(NameLookups(metrics_, "hit"), names);

  testing::WriteTestFile(group, "v2, another size");  // as a groupadd would
  auto third = attestor->Attest(Pin(::getpid()));
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(third->selectors, first->selectors);
  EXPECT_EQ(NameLookups(metrics_, "miss"), 2 * names);

  ASSERT_EQ(::unlink(passwd.c_str()), 0);  // gone is a change too
  ASSERT_TRUE(attestor->Attest(Pin(::getpid())).ok());
  EXPECT_EQ(NameLookups(metrics_, "miss"), 3 * names);
}

TEST_F(AttestorTest, WithoutANameCacheEveryCallLooksUp) {
  auto attestor = MakeAttestor(metrics_, {.name_cache_ttl = absl::ZeroDuration()});
  auto first = attestor->Attest(Pin(::getpid()));
  ASSERT_TRUE(first.ok()) << first.status();
  const double names = NameLookups(metrics_, "miss");
  auto second = attestor->Attest(Pin(::getpid()));
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->selectors, first->selectors);
  EXPECT_EQ(NameLookups(metrics_, "miss"), 2 * names);
  EXPECT_EQ(NameLookups(metrics_, "hit"), 0);
}

TEST_F(AttestorTest, AFullCacheDropsAnEntry) {
  testing::TempDir dir("meshid-workload");
  const std::string copy = dir.File("sleep");
  ASSERT_TRUE(testing::Shell(absl::StrCat("cp /bin/sleep ", copy)));
  auto attestor = MakeAttestor(metrics_, {.digest_cache_entries = 1});
  testing::PipedProcess sleeper({copy, "1000"});
  ASSERT_TRUE(attestor->Attest(Pin(::getpid())).ok());
  auto attributes = attestor->Attest(Pin(sleeper.pid()));
  ASSERT_TRUE(attributes.ok()) << attributes.status();
  EXPECT_EQ(attributes->executable_sha256, FileSha256(copy));
  EXPECT_EQ(attestor->cached_digests(), 1u);
}

TEST_F(AttestorTest, ACallerThatExitsDuringAttestationIsRefused) {
  BlockedChild child;
  // Killed and reaped after /proc was read: its pid is free for another process, so what was
  // read cannot be trusted to be the caller's.
  auto attestor = MakeAttestor(metrics_, {.after_proc_read = [&](pid_t pid) {
                                 EXPECT_EQ(pid, child.pid());
                                 child.Kill();
                               }});
  EXPECT_THAT(attestor->Attest(Pin(child.pid())),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       absl::StrCat("the caller (pid ", child.pid(), ") exited during attestation")));
  EXPECT_EQ(metrics_.AddCounter("meshid_agent_workload_attestations_total", "", {{"result", "exited"}}).value(), 1);
}

TEST_F(AttestorTest, ACallerThatExitedButIsNotReapedIsRefused) {
  BlockedChild child;
  auto attestor = MakeAttestor(metrics_, {.after_proc_read = [&](pid_t) { child.Kill(/*leave_zombie=*/true); }});
  EXPECT_THAT(attestor->Attest(Pin(child.pid())),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("exited during attestation")));
}

TEST_F(AttestorTest, ACallerThatExitedBeforeTheCallIsRefused) {
  BlockedChild child;
  PeerProcess peer = Pin(child.pid());
  child.Release();
  auto attestor = MakeAttestor(metrics_);
  EXPECT_THAT(attestor->Attest(peer),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       absl::StrCat("the caller (pid ", peer.process->pid(), ") exited during attestation")));
}

// The pinned process exits and its pid is given to another process, as root through
// ns_last_pid: /proc/<pid> is then the other process's, and attestation must not report it.
TEST_F(AttestorTest, APidGivenToAnotherProcessIsRefused) {
  BlockedChild original;
  const pid_t pid = original.pid();
  PeerProcess peer = Pin(pid);
  original.Release();
  BlockedChild impostor = BlockedChild::WithPid(pid);
  ASSERT_EQ(impostor.pid(), pid);
  pid_t read_pid = -1;
  auto attestor = MakeAttestor(metrics_, {.after_proc_read = [&](pid_t p) { read_pid = p; }});
  EXPECT_THAT(attestor->Attest(peer),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("exited during attestation")));
  EXPECT_EQ(read_pid, pid);  // /proc/<pid> was readable: the impostor's
}

TEST_F(AttestorTest, AProcessWithoutAnExecutable) {
  // kthreadd: a kernel thread, pid 2 where the test sees the host's (or a VM's) pid namespace.
  auto comm = ReadFile("/proc/2/comm");
  MESHID_REQUIRE_DEPENDENCY(comm.ok() && *comm == "kthreadd\n",
                            "the host's pid namespace (pid 2 is kthreadd; not inside a container)");
  auto attestor = MakeAttestor(metrics_);
  auto attributes = attestor->Attest(Pin(2));
  ASSERT_TRUE(attributes.ok()) << attributes.status();
  EXPECT_FALSE(attributes->executable_path.has_value());
  EXPECT_FALSE(attributes->executable_sha256.has_value());
  EXPECT_THAT(attributes->selectors, Contains("unix:uid:0"));
  EXPECT_THAT(attributes->selectors, Not(Contains(StartsWith("unix:path:"))));
  EXPECT_THAT(attributes->selectors, Not(Contains(StartsWith("unix:sha256:"))));
}

TEST_F(AttestorTest, ADeletedExecutableHasNoPathOrDigest) {
  testing::TempDir dir("meshid-workload");
  const std::string copy = dir.File("sleep");
  ASSERT_TRUE(testing::Shell(absl::StrCat("cp /bin/sleep ", copy)));
  testing::PipedProcess sleeper({copy, "1000"});
  ASSERT_EQ(::unlink(copy.c_str()), 0);
  auto attestor = MakeAttestor(metrics_);
  auto attributes = attestor->Attest(Pin(sleeper.pid()));
  ASSERT_TRUE(attributes.ok()) << attributes.status();
  EXPECT_FALSE(attributes->executable_path.has_value());
  EXPECT_FALSE(attributes->executable_sha256.has_value());
  EXPECT_THAT(attributes->selectors, Not(Contains(StartsWith("unix:path:"))));
  EXPECT_THAT(attributes->selectors, Not(Contains(StartsWith("unix:sha256:"))));
}

TEST_F(AttestorTest, AReplacedExecutableKeepsItsDigestButNotThePath) {
  testing::TempDir dir("meshid-workload");
  const std::string copy = dir.File("sleep");
  ASSERT_TRUE(testing::Shell(absl::StrCat("cp /bin/sleep ", copy, " && ln ", copy, " ", dir.File("other-link"))));
  const std::string sha256 = FileSha256(copy);
  testing::PipedProcess sleeper({copy, "1000"});
  // Another file is put at the path; the running file lives on under its other link.
  ASSERT_TRUE(testing::Shell(absl::StrCat("cp /bin/true ", copy, ".new && mv ", copy, ".new ", copy)));
  auto attestor = MakeAttestor(metrics_);
  auto attributes = attestor->Attest(Pin(sleeper.pid()));
  ASSERT_TRUE(attributes.ok()) << attributes.status();
  EXPECT_FALSE(attributes->executable_path.has_value()) << *attributes->executable_path;
  EXPECT_EQ(attributes->executable_sha256, sha256);
}

TEST_F(AttestorTest, AnExecutableAboveTheLimitIsNotHashed) {
  auto attestor = MakeAttestor(metrics_, {.max_executable_bytes = 1000});
  auto attributes = attestor->Attest(Pin(::getpid()));
  ASSERT_TRUE(attributes.ok()) << attributes.status();
  EXPECT_EQ(attributes->executable_path, SelfExe());
  EXPECT_FALSE(attributes->executable_sha256.has_value());
}

TEST(AttestorOptionsTest, RefusesAnEmptyCache) {
  MetricsRegistry metrics;
  EXPECT_THAT(WorkloadAttestor::Create({.digest_cache_entries = 0}, metrics),
              StatusIs(absl::StatusCode::kInvalidArgument, "digest_cache_entries: must be at least 1"));
}

// PinPeer on real connections.
class PinPeerTest : public AttestorTest {
 protected:
  void SetUp() override {
    AttestorTest::SetUp();
    if (IsSkipped()) return;
    path_ = dir_.File("socket");
    listening_.Reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, path_.data(), path_.size());
    ASSERT_EQ(::bind(listening_.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    ASSERT_EQ(::listen(listening_.get(), 8), 0);
  }

  UniqueFd Accept() {
    UniqueFd fd(::accept4(listening_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    EXPECT_TRUE(fd.valid()) << std::strerror(errno);
    return fd;
  }

  testing::TempDir dir_{"meshid-workload"};
  std::string path_;
  UniqueFd listening_;
};

TEST_F(PinPeerTest, PinsTheConnectingProcess) {
  for (PinMethod method : {PinMethod::kPeerPidfd, PinMethod::kPidfdOpen}) {
    BlockedChild child = BlockedChild::ConnectedTo(path_);
    UniqueFd connection = Accept();
    auto peer = PinPeer(connection.get(), BoottimeTicks(), method);
    ASSERT_TRUE(peer.ok()) << peer.status();
    EXPECT_EQ(peer->credentials.pid, child.pid());
    EXPECT_EQ(peer->credentials.uid, 0u);
    EXPECT_EQ(peer->process->pid(), child.pid());
    EXPECT_FALSE(peer->process->Exited());
    auto attributes = MakeAttestor(metrics_)->Attest(*peer);
    ASSERT_TRUE(attributes.ok()) << attributes.status();
    EXPECT_EQ(attributes->pid, child.pid());
    child.Release();
    EXPECT_TRUE(peer->process->Exited());
  }
}

// The peer exits before it is pinned and its pid is given to a process started after the
// accept: pidfd_open would pin that process, and the start time check refuses it.
// SO_PEERPIDFD pins the peer itself (exited), which attestation refuses.
TEST_F(PinPeerTest, APidReusedBeforePinningIsRefused) {
  BlockedChild child = BlockedChild::ConnectedTo(path_);
  const pid_t pid = child.pid();
  UniqueFd connection = Accept();
  const uint64_t accepted_at = BoottimeTicks();
  child.Release();
  // The next process must start in a later clock tick than the accept: wait for the tick to
  // pass (at most one tick, 10 ms).
  while (BoottimeTicks() <= accepted_at) ::sched_yield();
  BlockedChild impostor = BlockedChild::WithPid(pid);
  ASSERT_EQ(impostor.pid(), pid);

  EXPECT_THAT(PinPeer(connection.get(), accepted_at, PinMethod::kPidfdOpen),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       ::testing::AllOf(StartsWith(absl::StrCat("peer pid ", pid, ": the process started")),
                                        HasSubstr("after the connection was accepted"))));

  auto peer = PinPeer(connection.get(), accepted_at, PinMethod::kPeerPidfd);
  if (peer.ok()) {
    EXPECT_TRUE(peer->process->Exited());
    EXPECT_THAT(MakeAttestor(metrics_)->Attest(*peer),
                StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("exited during attestation")));
  } else {
    EXPECT_THAT(peer, StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("exited before it could be pinned")));
  }
}

TEST_F(PinPeerTest, APeerThatExitedBeforePinningIsRefused) {
  BlockedChild child = BlockedChild::ConnectedTo(path_);
  const pid_t pid = child.pid();
  UniqueFd connection = Accept();
  child.Release();
  EXPECT_THAT(
      PinPeer(connection.get(), BoottimeTicks(), PinMethod::kPidfdOpen),
      StatusIs(absl::StatusCode::kPermissionDenied, absl::StrCat("peer pid ", pid, ": no such process (it exited)")));
}

TEST_F(PinPeerTest, NotASocket) {
  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
  UniqueFd read_end(pipe_fds[0]), write_end(pipe_fds[1]);
  EXPECT_THAT(PinPeer(read_end.get(), BoottimeTicks()),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith("SO_PEERCRED: ")));
}

}  // namespace
}  // namespace meshid::workload
