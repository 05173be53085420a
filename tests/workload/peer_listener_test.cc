// PeerListener and PeerRegistry (workload/peer_listener.h) with a real gRPC server and real
// clients: a Workload API whose FetchX509Bundles answers with the caller's attested selectors
// (as the bundles' keys), called by tests/workload/whoami_client.cc run as root, as nobody
// (runuser), with chosen ids (setpriv), from copies of its binary, and on a connection whose
// connecting process has exited and whose pid was given to another process.
#include "workload/peer_listener.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/files.h"
#include "common/grpc_status.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/selector.h"
#include "common/sha256.h"
#include "spiffe/workload/workload.grpc.pb.h"
#include "tests/support/dependencies.h"
#include "tests/support/poll.h"
#include "tests/support/status_matchers.h"
#include "tests/support/temp_dir.h"
#include "tests/workload/child_processes.h"
#include "workload/attestor.h"

namespace meshid::workload {
namespace {

using ::meshid::testing::BlockedChild;
using ::meshid::testing::PipedProcess;
using ::meshid::testing::StatusIs;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsSupersetOf;
using ::testing::MatchesRegex;
using ::testing::Not;
using ::testing::StartsWith;

// The Workload API the tests call: the bundles' keys are "pid:<attested pid>" and the
// caller's selectors. With hold_next set, the next call instead waits, unanswered, until it is
// cancelled (the client's connection gone), and records what the registry says then.
class AttestingWorkloadApi final : public SpiffeWorkloadAPI::CallbackService {
 public:
  AttestingWorkloadApi(const PeerRegistry& registry, const WorkloadAttestor& attestor)
      : registry_(registry), attestor_(attestor) {}

  grpc::ServerWriteReactor<X509BundlesResponse>* FetchX509Bundles(grpc::CallbackServerContext* context,
                                                                  const X509BundlesRequest*) override {
    return new Call(*this, context->peer());
  }

  std::atomic<bool> hold_next{false};
  std::string held_peer;  // written before `held` is notified
  absl::Notification held;
  absl::StatusOr<PeerProcess> lookup_when_cancelled = absl::UnknownError("not cancelled");  // before `cancelled`
  absl::Notification cancelled;

 private:
  class Call final : public grpc::ServerWriteReactor<X509BundlesResponse> {
   public:
    Call(AttestingWorkloadApi& api, std::string peer) : api_(api), peer_(std::move(peer)) {
      if (api_.hold_next.exchange(false)) {
        holding_ = true;
        api_.held_peer = peer_;
        api_.held.Notify();
        return;
      }
      auto caller = api_.registry_.Lookup(peer_);
      if (!caller.ok()) {
        Finish(ToGrpcStatus(caller.status()));
        return;
      }
      auto attributes = api_.attestor_.Attest(*caller);
      if (!attributes.ok()) {
        Finish(ToGrpcStatus(attributes.status()));
        return;
      }
      auto& bundles = *response_.mutable_bundles();
      bundles[absl::StrCat("pid:", attributes->pid)] = "";
      for (const std::string& selector : attributes->selectors) bundles[selector] = "";
      StartWriteAndFinish(&response_, grpc::WriteOptions(), grpc::Status::OK);
    }
    void OnCancel() override {
      if (!holding_) return;
      // The connection is gone, but this call has not finished: gRPC still holds the
      // descriptor, so the number still names this connection.
      api_.lookup_when_cancelled = api_.registry_.Lookup(peer_);
      api_.cancelled.Notify();
      Finish(grpc::Status::CANCELLED);
    }
    void OnDone() override { delete this; }

   private:
    AttestingWorkloadApi& api_;
    const std::string peer_;
    bool holding_ = false;
    X509BundlesResponse response_;
  };

  const PeerRegistry& registry_;
  const WorkloadAttestor& attestor_;
};

struct CallResult {
  pid_t attested_pid = -1;
  std::vector<std::string> selectors;
  std::string status;  // "OK" or "<code> <message>"
};

// One call's output lines from whoami_client (before its "end").
CallResult ParseCallOutput(const std::vector<std::string>& lines) {
  CallResult result;
  for (const std::string& line : lines) {
    if (absl::StartsWith(line, "pid:")) {
      EXPECT_TRUE(absl::SimpleAtoi(line.substr(4), &result.attested_pid)) << line;
    } else if (absl::StartsWith(line, "unix:")) {
      result.selectors.push_back(line);
      // Canonical, as common/selector.h spells them.
      auto canonical = ParseSelector(line);
      EXPECT_TRUE(canonical.ok()) << line << ": " << canonical.status();
      if (canonical.ok()) {
        EXPECT_EQ(*canonical, line);
      }
    } else if (absl::StartsWith(line, "status ")) {
      result.status = line.substr(7);
    } else {
      ADD_FAILURE() << "unexpected output: " << line;
    }
  }
  return result;
}

// whoami_client run with pipes: its pid line read at once, then one call per Call().
class WhoamiClient {
 public:
  // `argv` ends with the client and its own arguments.
  explicit WhoamiClient(std::vector<std::string> argv) : process_(std::move(argv)) {
    std::optional<std::string> line = process_.ReadLine();
    if (!line.has_value() || !absl::StartsWith(*line, "pid ") || !absl::SimpleAtoi(line->substr(4), &pid_)) {
      ADD_FAILURE() << "no pid line from the client: " << line.value_or("");
    }
  }

  pid_t pid() const { return pid_; }

  // One call's output (with --wait, after writing the line that starts it).
  CallResult Call(bool wait) {
    if (wait) process_.WriteLine("go");
    auto lines = process_.ReadUntil("end");
    return lines.has_value() ? ParseCallOutput(*lines) : CallResult();
  }

  int Wait() { return process_.Wait(); }

 private:
  PipedProcess process_;
  pid_t pid_ = -1;
};

std::string FileSha256(const std::string& path) {
  auto content = ReadFile(path, size_t{1} << 30);
  EXPECT_TRUE(content.ok()) << content.status();
  return content.ok() ? Sha256Hex(*content) : "";
}

class PeerListenerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MESHID_REQUIRE_DEPENDENCY(::geteuid() == 0, "root (runuser, setpriv, ns_last_pid)");
    auto attestor = WorkloadAttestor::Create({}, metrics_);
    ASSERT_TRUE(attestor.ok()) << attestor.status();
    attestor_ = *std::move(attestor);
    api_ = std::make_unique<AttestingWorkloadApi>(registry_, *attestor_);
    grpc::ServerBuilder builder;
    builder.RegisterService(api_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    socket_path_ = dir_.File("workload.sock");
    auto listener =
        PeerListener::Create({.socket_path = socket_path_}, registry_, *server_, metrics_, MakeNullLogger());
    ASSERT_TRUE(listener.ok()) << listener.status();
    listener_ = *std::move(listener);
  }

  void TearDown() override {
    listener_.reset();  // before the server shuts down: it hands connections to the server
    if (server_ != nullptr) server_->Shutdown();
  }

  // Runs `argv` (which ends with the client and its arguments but no --socket) for one call.
  CallResult RunClient(std::vector<std::string> argv) {
    argv.push_back("--socket");
    argv.push_back(socket_path_);
    WhoamiClient client(std::move(argv));
    CallResult result = client.Call(/*wait=*/false);
    EXPECT_EQ(client.Wait(), 0);
    EXPECT_EQ(result.attested_pid, client.pid());
    return result;
  }

  // A copy of the client in the test's directory (0755, reachable by nobody).
  std::string CopyClient(const std::string& name) {
    const std::string copy = dir_.File(name);
    EXPECT_TRUE(testing::Shell(absl::StrCat("cp ", WHOAMI_CLIENT, " ", copy)));
    return copy;
  }

  MetricsRegistry metrics_;
  PeerRegistry registry_;
  std::unique_ptr<WorkloadAttestor> attestor_;
  std::unique_ptr<AttestingWorkloadApi> api_;
  std::unique_ptr<grpc::Server> server_;
  meshid::testing::TempDir dir_{"meshid-workload"};
  std::string socket_path_;
  std::unique_ptr<PeerListener> listener_;
};

TEST_F(PeerListenerTest, AttestsTheCallerAsRoot) {
  const std::string client = CopyClient("whoami");
  CallResult call = RunClient({client});
  EXPECT_EQ(call.status, "OK");
  EXPECT_THAT(call.selectors,
              IsSupersetOf(std::vector<std::string>{"unix:uid:0", "unix:user:root", "unix:gid:0", "unix:group:root",
                                                    absl::StrCat("unix:path:", client),
                                                    absl::StrCat("unix:sha256:", FileSha256(client))}));
}

TEST_F(PeerListenerTest, AttestsACallerRunAsNobody) {
  const std::string client = CopyClient("whoami");
  CallResult call = RunClient({"/usr/sbin/runuser", "-u", "nobody", "--", client});
  EXPECT_EQ(call.status, "OK");
  EXPECT_THAT(call.selectors,
              IsSupersetOf(std::vector<std::string>{"unix:uid:65534", "unix:user:nobody", "unix:gid:65534",
                                                    "unix:group:nogroup", absl::StrCat("unix:path:", client)}));
  EXPECT_THAT(call.selectors, Not(Contains("unix:uid:0")));
  EXPECT_THAT(call.selectors, Not(Contains("unix:gid:0")));
}

TEST_F(PeerListenerTest, SupplementaryGroupsAndTheirNames) {
  const std::string client = CopyClient("whoami");
  CallResult call =
      RunClient({"/usr/sbin/runuser", "-u", "nobody", "-g", "nogroup", "-G", "daemon", "-G", "adm", "--", client});
  EXPECT_EQ(call.status, "OK");
  EXPECT_THAT(call.selectors, IsSupersetOf(std::vector<std::string>{
                                  "unix:uid:65534", "unix:gid:65534", "unix:group:nogroup", "unix:gid:1",
                                  "unix:group:daemon", "unix:gid:4", "unix:group:adm"}));
}

TEST_F(PeerListenerTest, AGroupWithoutANameHasOnlyItsGid) {
  const std::string client = CopyClient("whoami");
  CallResult call = RunClient({"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--groups=4,54321", "--", client});
  EXPECT_EQ(call.status, "OK");
  EXPECT_THAT(call.selectors, IsSupersetOf(std::vector<std::string>{"unix:gid:4", "unix:group:adm", "unix:gid:54321"}));
  // Exactly one name per named group: nogroup (65534) and adm (4).
  EXPECT_EQ(std::count_if(call.selectors.begin(), call.selectors.end(),
                          [](const std::string& s) { return absl::StartsWith(s, "unix:group:"); }),
            2);
}

TEST_F(PeerListenerTest, TheRealUidIsAttestedNotTheEffective) {
  // As a setuid-root program run by nobody would be.
  const std::string client = CopyClient("whoami");
  CallResult call = RunClient(
      {"/usr/bin/setpriv", "--ruid=65534", "--euid=0", "--rgid=65534", "--egid=0", "--clear-groups", "--", client});
  EXPECT_EQ(call.status, "OK");
  EXPECT_THAT(call.selectors,
              IsSupersetOf(std::vector<std::string>{"unix:uid:65534", "unix:user:nobody", "unix:gid:65534"}));
  EXPECT_THAT(call.selectors, Not(Contains("unix:uid:0")));
  EXPECT_THAT(call.selectors, Not(Contains("unix:gid:0")));
}

TEST_F(PeerListenerTest, ACopyHasAnotherPathAndTheSameDigestAModifiedCopyAnotherDigest) {
  const std::string client = CopyClient("whoami");
  const std::string copy = CopyClient("whoami-copy");
  const std::string modified = CopyClient("whoami-modified");
  ASSERT_TRUE(testing::Shell(absl::StrCat("printf x >> ", modified)));
  const std::string digest = absl::StrCat("unix:sha256:", FileSha256(client));
  const std::string modified_digest = absl::StrCat("unix:sha256:", FileSha256(modified));
  ASSERT_NE(digest, modified_digest);

  CallResult original = RunClient({client});
  CallResult copied = RunClient({copy});
  CallResult changed = RunClient({modified});
  EXPECT_THAT(original.selectors, IsSupersetOf(std::vector<std::string>{absl::StrCat("unix:path:", client), digest}));
  EXPECT_THAT(copied.selectors, IsSupersetOf(std::vector<std::string>{absl::StrCat("unix:path:", copy), digest}));
  EXPECT_THAT(copied.selectors, Not(Contains(absl::StrCat("unix:path:", client))));
  EXPECT_THAT(changed.selectors,
              IsSupersetOf(std::vector<std::string>{absl::StrCat("unix:path:", modified), modified_digest}));
  EXPECT_THAT(changed.selectors, Not(Contains(digest)));
}

TEST_F(PeerListenerTest, AUidAndAPathFromDifferentSources) {
  // The uid says one thing (nobody), the path another (a copy only this test made): both are
  // reported, and an entry may require either or both.
  const std::string copy = CopyClient("whoami-elsewhere");
  CallResult call = RunClient({"/usr/sbin/runuser", "-u", "nobody", "--", copy});
  EXPECT_EQ(call.status, "OK");
  EXPECT_THAT(call.selectors,
              IsSupersetOf(std::vector<std::string>{"unix:uid:65534", absl::StrCat("unix:path:", copy)}));
}

TEST_F(PeerListenerTest, ADeletedExecutableHasNoPathOrDigest) {
  const std::string copy = CopyClient("whoami-deleted");
  WhoamiClient client({copy, "--wait", "--socket", socket_path_});
  ASSERT_EQ(::unlink(copy.c_str()), 0);
  CallResult call = client.Call(/*wait=*/true);
  EXPECT_EQ(call.status, "OK");
  EXPECT_THAT(call.selectors, Contains("unix:uid:0"));
  EXPECT_THAT(call.selectors, Not(Contains(StartsWith("unix:path:"))));
  EXPECT_THAT(call.selectors, Not(Contains(StartsWith("unix:sha256:"))));
}

// The process that connected exits while its connection lives on in a child, and its pid is
// given to another process (as root, through ns_last_pid). A call on the old connection must
// not be attested as the new process.
TEST_F(PeerListenerTest, ACallAfterTheConnectingProcessExitedAndItsPidWasReusedIsRefused) {
  // The child the holder leaves behind is re-parented to this process, which reaps it.
  ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  const std::string client = CopyClient("whoami");
  int to_client[2], from_client[2], release_holder[2];
  ASSERT_EQ(::pipe2(to_client, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(from_client, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(release_holder, O_CLOEXEC), 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, socket_path_.data(), socket_path_.size());
  // Everything the forked processes use is made before the fork: from there on they may only
  // make async-signal-safe calls (this process has gRPC's threads).
  std::string fd_arg = "3";
  std::vector<char*> argv = {
      const_cast<char*>(client.c_str()), const_cast<char*>("--fd"), fd_arg.data(), const_cast<char*>("--wait"),
      const_cast<char*>("--calls"),      const_cast<char*>("2"),    nullptr};
  const pid_t holder = ::fork();
  if (holder == 0) {
    // The holder: connects (so it is the connection's peer), starts the client on the
    // connection, and exits when released (it must not hold the pipe's write end itself).
    ::close(release_holder[1]);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) ::_exit(1);
    const pid_t child = ::fork();
    if (child == 0) {
      if (::dup2(to_client[0], 0) < 0 || ::dup2(from_client[1], 1) < 0 || ::dup2(from_client[1], 2) < 0 ||
          ::dup2(fd, 3) < 0) {
        ::_exit(1);
      }
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    char byte;
    while (::read(release_holder[0], &byte, 1) < 0 && errno == EINTR) {
    }
    ::_exit(0);
  }
  ASSERT_GT(holder, 0);
  ::close(to_client[0]);
  ::close(from_client[1]);
  ::close(release_holder[0]);
  pid_t client_pid = -1;
  bool holder_reaped = false;  // from then on its pid is another process's
  auto cleanup = absl::MakeCleanup([&] {
    ::close(to_client[1]);
    ::close(release_holder[1]);
    if (!holder_reaped) {
      ::kill(holder, SIGKILL);
      ::waitpid(holder, nullptr, 0);
    }
    if (client_pid > 0) {
      ::kill(client_pid, SIGKILL);
      ::waitpid(client_pid, nullptr, 0);
    }
  });
  FILE* out = ::fdopen(from_client[0], "r");
  ASSERT_NE(out, nullptr);
  auto close_out = absl::MakeCleanup([&] { std::fclose(out); });
  auto read_line = [&]() -> std::string {
    char line[4096];
    if (std::fgets(line, sizeof(line), out) == nullptr) return "<the client's output ended>";
    std::string text(line);
    if (!text.empty() && text.back() == '\n') text.pop_back();
    return text;
  };
  auto call = [&]() {
    EXPECT_EQ(::write(to_client[1], "go\n", 3), 3);
    std::vector<std::string> lines;
    for (std::string line = read_line(); line != "end"; line = read_line()) {
      lines.push_back(line);
      if (absl::StartsWith(line, "<")) break;
    }
    return ParseCallOutput(lines);
  };

  const std::string pid_line = read_line();
  ASSERT_TRUE(absl::StartsWith(pid_line, "pid ") && absl::SimpleAtoi(pid_line.substr(4), &client_pid)) << pid_line;
  // The first call is attested as the holder (the connecting process, a copy of this test
  // binary), not as the client that makes it.
  CallResult first = call();
  EXPECT_EQ(first.status, "OK");
  EXPECT_EQ(first.attested_pid, holder);
  char self[PATH_MAX];
  const ssize_t self_length = ::readlink("/proc/self/exe", self, sizeof(self));
  ASSERT_GT(self_length, 0);
  EXPECT_THAT(first.selectors, Contains(absl::StrCat("unix:path:", std::string(self, self_length))));

  // The holder exits and is reaped; another process is given its pid.
  ::close(release_holder[1]);
  release_holder[1] = -1;
  ASSERT_EQ(::waitpid(holder, nullptr, 0), holder);
  holder_reaped = true;
  BlockedChild impostor = BlockedChild::WithPid(holder);
  ASSERT_EQ(impostor.pid(), holder);

  CallResult second = call();
  EXPECT_EQ(second.status, absl::StrCat(grpc::StatusCode::PERMISSION_DENIED, " the caller (pid ", holder,
                                        ") exited during attestation"));
  EXPECT_EQ(second.attested_pid, -1);
  EXPECT_TRUE(second.selectors.empty());
}

TEST_F(PeerListenerTest, ThePeerIsNamedByTheDescriptorAndStaysValidUntilTheCallFinishes) {
  api_->hold_next = true;
  auto client = std::make_unique<WhoamiClient>(std::vector<std::string>{WHOAMI_CLIENT, "--socket", socket_path_});
  ASSERT_TRUE(api_->held.WaitForNotificationWithTimeout(absl::Seconds(60)));
  const std::string peer = api_->held_peer;
  // What gRPC 1.51 calls a connection added with AddInsecureChannelFromFd.
  ASSERT_THAT(peer, MatchesRegex("fd:[0-9]+"));
  auto caller = registry_.Lookup(peer);
  ASSERT_TRUE(caller.ok()) << caller.status();
  EXPECT_EQ(caller->credentials.pid, client->pid());
  EXPECT_EQ(caller->process->pid(), client->pid());

  // The client is killed: its connection closes, and the held call is cancelled. The call has
  // not finished, so the descriptor is still open and the registry still names the client.
  client.reset();
  ASSERT_TRUE(api_->cancelled.WaitForNotificationWithTimeout(absl::Seconds(60)));
  ASSERT_TRUE(api_->lookup_when_cancelled.ok()) << api_->lookup_when_cancelled.status();
  EXPECT_EQ(api_->lookup_when_cancelled->credentials.pid, caller->credentials.pid);

  // Once the call has finished, gRPC closes the descriptor, and a sweep drops the entry.
  EXPECT_TRUE(meshid::testing::Eventually([&] {
    registry_.Sweep();
    return !registry_.Lookup(peer).ok();
  }));
  EXPECT_THAT(registry_.Lookup(peer), StatusIs(absl::StatusCode::kNotFound, HasSubstr("no open connection on fd")));
}

TEST(PeerRegistryTest, LookupOfAnotherKindOfPeer) {
  PeerRegistry registry;
  for (const char* peer : {"unix:/run/socket", "ipv4:127.0.0.1:5000", "fd:", "fd:x", "fd:-1", "fd:1 ", ""}) {
    EXPECT_THAT(registry.Lookup(peer),
                StatusIs(absl::StatusCode::kNotFound, HasSubstr("is not a connection a PeerListener accepted")))
        << peer;
  }
  EXPECT_THAT(registry.Lookup("fd:0"), StatusIs(absl::StatusCode::kNotFound, "no open connection on fd 0"));
}

TEST(PeerRegistryTest, ANumberReusedByAnotherFileIsNotFound) {
  PeerRegistry registry;
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  auto pinned = PinnedProcess::Open(::getpid());
  ASSERT_TRUE(pinned.ok()) << pinned.status();
  ASSERT_TRUE(registry.Register(fds[0], {.credentials = {.pid = ::getpid()}, .process = *pinned}).ok());
  const std::string peer = absl::StrCat("fd:", fds[0]);
  EXPECT_TRUE(registry.Lookup(peer).ok());
  EXPECT_EQ(registry.Sweep(), 0u);
  // The number now names another file (a pipe in the same slot).
  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
  ASSERT_EQ(::dup3(pipe_fds[0], fds[0], O_CLOEXEC), fds[0]);
  EXPECT_THAT(registry.Lookup(peer), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(registry.size(), 1u);
  EXPECT_EQ(registry.Sweep(), 1u);
  EXPECT_EQ(registry.size(), 0u);
  for (int fd : {fds[0], fds[1], pipe_fds[0], pipe_fds[1]}) ::close(fd);
}

class PeerListenerSocketTest : public ::testing::Test {
 protected:
  absl::StatusOr<std::unique_ptr<PeerListener>> Listen(PeerListenerOptions options) {
    return PeerListener::Create(options, registry_, *server_, metrics_, MakeNullLogger());
  }
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.RegisterService(&service_);  // a server with neither services nor ports does not start
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }
  void TearDown() override { server_->Shutdown(); }

  MetricsRegistry metrics_;
  PeerRegistry registry_;
  SpiffeWorkloadAPI::Service service_;  // unimplemented: no call is made
  std::unique_ptr<grpc::Server> server_;
  meshid::testing::TempDir dir_{"meshid-workload"};
};

TEST_F(PeerListenerSocketTest, TheSocketHasItsModeAndIsRemovedAtTheEnd) {
  const std::string path = dir_.File("sub/dir/workload.sock");
  {
    auto listener = Listen({.socket_path = path, .socket_mode = 0660, .socket_group = 4});
    ASSERT_TRUE(listener.ok()) << listener.status();
    EXPECT_EQ((*listener)->target(), "unix:" + path);
    struct stat st {};
    ASSERT_EQ(::lstat(path.c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, 0660u);
    EXPECT_EQ(st.st_gid, 4u);
    // A second listener on the same path is refused while the first runs.
    EXPECT_THAT(Listen({.socket_path = path}),
                StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("another process holds")));
  }
  struct stat st {};
  EXPECT_NE(::lstat(path.c_str(), &st), 0);
  auto listener = Listen({.socket_path = path});
  ASSERT_TRUE(listener.ok()) << listener.status();
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0666u);
}

TEST_F(PeerListenerSocketTest, AStaleSocketIsReplaced) {
  const std::string path = dir_.File("workload.sock");
  {
    // A socket file nobody listens on, as a crashed agent leaves it.
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, path.data(), path.size());
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    ::close(fd);
  }
  auto listener = Listen({.socket_path = path});
  ASSERT_TRUE(listener.ok()) << listener.status();
}

TEST_F(PeerListenerSocketTest, ALiveSocketIsRefused) {
  const std::string path = dir_.File("workload.sock");
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.data(), path.size());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  EXPECT_THAT(Listen({.socket_path = path}),
              StatusIs(absl::StatusCode::kFailedPrecondition, "another server is listening on " + path));
  ::close(fd);
}

TEST_F(PeerListenerSocketTest, AFileThatIsNotASocketIsRefused) {
  const std::string path = dir_.Write("workload.sock", "precious");
  EXPECT_THAT(Listen({.socket_path = path}), StatusIs(absl::StatusCode::kFailedPrecondition,
                                                      path + " exists and is not a socket; refusing to replace it"));
  auto content = ReadFile(path);
  ASSERT_TRUE(content.ok());
  EXPECT_EQ(*content, "precious");
}

TEST_F(PeerListenerSocketTest, RefusesBadOptions) {
  EXPECT_THAT(Listen({}), StatusIs(absl::StatusCode::kInvalidArgument, "socket_path: empty"));
  EXPECT_THAT(Listen({.socket_path = "/tmp/" + std::string(200, 'x')}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("socket_path: ")));
  EXPECT_THAT(Listen({.socket_path = dir_.File("s"), .socket_mode = 01777}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("socket_mode: ")));
  EXPECT_THAT(Listen({.socket_path = dir_.File("s"), .backlog = 0}),
              StatusIs(absl::StatusCode::kInvalidArgument, "backlog: must be at least 1"));
  EXPECT_THAT(Listen({.socket_path = dir_.File("s"), .sweep_interval = absl::ZeroDuration()}),
              StatusIs(absl::StatusCode::kInvalidArgument, "sweep_interval: must be positive"));
}

}  // namespace
}  // namespace meshid::workload
