// Scale benchmark for the node agent: one agent (secret cache + SDS server on a Unix socket)
// serving 1,000 identities to 10,000 SDS streams.
//
// Phases:
//  1. Memory per cached secret: 1,000 workload identities are issued into a bare SecretCache
//     (no streams); the heap growth per identity is reported (glibc mallinfo2).
//  2. Scale: the SDS server plus the cache, and a separate client process (this binary
//     re-executed with --clients) that opens the streams over the socket: the agent's own
//     identity gets --agent-streams tokenless streams (1,000 by default), and the other identities
//     share the rest, each stream presenting its workload's token. Every client ACKs every
//     response.
//  3. Rotation: every identity is renewed once, in its (jittered) renewal order, under a fake
//     clock. For each: the time from the CA's answer until every stream of that identity has
//     received the new certificate and its ACK is back at the agent, and the agent's CPU time
//     (process CPU minus the in-process CA's signing time; the clients run in their own process).
//
// The CA is in-process (meshid's own CertIssuer), so its signing cost is measured separately
// and subtracted. Usage: meshid_agent_scale_bench [--identities N] [--streams N]
// [--agent-streams N] [--channels N]
#include <grpcpp/grpcpp.h>
#include <malloc.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/random.h"
#include "envoy/service/secret/v3/sds.grpc.pb.h"
#include "nodeagent/secret_cache.h"
#include "sds/resource.h"
#include "sds/sds_server.h"
#include "tests/nodeagent/fake_ca.h"
#include "tests/support/temp_dir.h"

extern char** environ;

namespace meshid::bench {
namespace {

using envoy::service::discovery::v3::DiscoveryRequest;
using envoy::service::discovery::v3::DiscoveryResponse;
using Stub = envoy::service::secret::v3::SecretDiscoveryService::Stub;

struct Layout {
  int identities = 1000;  // including the agent's own
  int streams = 10000;
  int agent_streams = 1000;
  int channels = 100;
  // Streams of workload identity i (1-based; 0 is the agent's own).
  int StreamsOf(int i) const {
    if (i == 0) return agent_streams;
    const int rest = streams - agent_streams, n = identities - 1;
    return rest / n + (i - 1 < rest % n ? 1 : 0);
  }
  // As long as a real projected service-account JWT (~900 bytes), since the cache keeps one.
  static std::string Token(int i) { return absl::StrCat("bench-token-", i, "-", std::string(880, 'x')); }
};

double Seconds(std::chrono::steady_clock::duration d) { return std::chrono::duration<double>(d).count(); }

double ProcessCpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

double ThreadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

size_t HeapInUse() {
  malloc_trim(0);
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

// Times the wrapped CA's signing (on the calling thread) so it can be subtracted.
class TimedCa final : public CaClient {
 public:
  explicit TimedCa(CaClient& inner) : inner_(inner) {}
  using CaClient::CreateCertificate;
  absl::StatusOr<std::vector<std::string>> CreateCertificate(absl::string_view csr, absl::string_view token,
                                                             absl::Duration ttl,
                                                             absl::string_view impersonated_identity) override {
    const double cpu0 = ThreadCpuSeconds();
    auto result = inner_.CreateCertificate(csr, token, ttl, impersonated_identity);
    const double cpu = ThreadCpuSeconds() - cpu0;
    absl::MutexLock lock(&mu_);
    ca_cpu_ += cpu;
    answered_ = std::chrono::steady_clock::now();
    last_token_ = std::string(token);
    return result;
  }
  double ca_cpu() {
    absl::MutexLock lock(&mu_);
    return ca_cpu_;
  }
  std::chrono::steady_clock::time_point answered() {
    absl::MutexLock lock(&mu_);
    return answered_;
  }
  std::string last_token() {
    absl::MutexLock lock(&mu_);
    return last_token_;
  }

 private:
  CaClient& inner_;
  absl::Mutex mu_;
  double ca_cpu_ ABSL_GUARDED_BY(mu_) = 0;
  std::chrono::steady_clock::time_point answered_ ABSL_GUARDED_BY(mu_);
  std::string last_token_ ABSL_GUARDED_BY(mu_);
};

class NullWatcher final : public xds::ResourceWatcher {
 public:
  void OnUpdate(const xds::ResourceUpdate&) override {}
};

// ---------------------------------------------------------------------------------------------
// Phase 1

void MeasureMemoryPerSecret(const Layout& layout) {
  testing::FakeClock clock;
  OpenSslRandom random;
  testing::FakeCa fake_ca(clock);
  TimedCa ca(fake_ca);
  testing::FakeTokenSource agent_token("agent");
  fake_ca.AllowToken("agent", "bench", "agent");
  for (int i = 1; i < layout.identities; ++i) fake_ca.AllowToken(Layout::Token(i), "bench", absl::StrCat("sa-", i));
  MetricsRegistry metrics;
  auto cache = std::move(*SecretCache::Create({}, ca, agent_token, clock, random, metrics, MakeNullLogger()));
  while (cache->RunOne()) {
  }
  std::vector<std::unique_ptr<xds::Subscription>> subs;
  for (int i = 1; i < layout.identities; ++i) {
    subs.push_back(std::move(*cache->Subscribe(Layout::Token(i), std::make_shared<NullWatcher>())));
  }
  for (auto& sub : subs) (void)sub->SetNames({"default"});
  const size_t before = HeapInUse();
  const double cpu0 = ProcessCpuSeconds(), ca_cpu0 = ca.ca_cpu();
  while (cache->RunOne()) {
  }
  const double issue_cpu = (ProcessCpuSeconds() - cpu0) - (ca.ca_cpu() - ca_cpu0);
  const size_t after = HeapInUse();
  const auto stats = cache->Stats();
  const double per = static_cast<double>(after - before) / (stats.identities - 1);
  std::printf(
      "| memory per cached secret (ECDSA P-256 key, chain, serialized Secret, ~900-byte token, bookkeeping) | %.0f B "
      "(%.2f KiB) |\n",
      per, per / 1024);
  std::printf("| agent CPU per issuance without streams (key + CSR + checking the answer + packaging) | %.3f ms |\n",
              issue_cpu / (stats.identities - 1) * 1000);
}

// ---------------------------------------------------------------------------------------------
// Client process

class ClientStream final : public grpc::ClientBidiReactor<DiscoveryRequest, DiscoveryResponse> {
 public:
  ClientStream(Stub* stub, const std::string& token) {
    context_.AddMetadata("authorization", absl::StrCat("Bearer ", token));
    Init(stub);
  }
  explicit ClientStream(Stub* stub) { Init(stub); }

  void OnReadDone(bool ok) override {
    if (!ok) return;
    absl::MutexLock lock(&mu_);
    ack_.set_version_info(response_.version_info());
    ack_.set_response_nonce(response_.nonce());
    response_.Clear();
    if (writing_) {
      pending_ = true;
    } else {
      writing_ = true;
      StartWrite(&ack_);
    }
    StartRead(&response_);
  }
  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (ok && pending_) {
      pending_ = false;
      writing_ = true;
      StartWrite(&ack_);
    }
  }
  void OnDone(const grpc::Status&) override {}

 private:
  void Init(Stub* stub) {
    stub->async()->StreamSecrets(&context_, this);
    ack_.mutable_node()->set_id("bench");
    ack_.set_type_url(std::string(sds::kSecretTypeUrl));
    ack_.add_resource_names("default");
    writing_ = true;
    StartWrite(&ack_);  // the initial request
    StartRead(&response_);
    StartCall();
  }
  grpc::ClientContext context_;
  absl::Mutex mu_;
  DiscoveryRequest ack_ ABSL_GUARDED_BY(mu_);
  DiscoveryResponse response_;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool pending_ ABSL_GUARDED_BY(mu_) = false;
};

int RunClients(const Layout& layout, const std::string& target) {
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::vector<std::unique_ptr<Stub>> owned;
  for (int c = 0; c < layout.channels; ++c) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt("meshid.bench.channel", c);
    channels.push_back(grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args));
    owned.push_back(envoy::service::secret::v3::SecretDiscoveryService::NewStub(channels.back()));
  }
  std::vector<std::unique_ptr<ClientStream>> streams;
  int next = 0;
  for (int i = 0; i < layout.identities; ++i) {
    for (int s = 0; s < layout.StreamsOf(i); ++s) {
      Stub* stub = owned[next++ % owned.size()].get();
      streams.push_back(i == 0 ? std::make_unique<ClientStream>(stub)
                               : std::make_unique<ClientStream>(stub, Layout::Token(i)));
    }
  }
  // Runs until the parent kills us.
  for (;;) pause();
}

// ---------------------------------------------------------------------------------------------
// Phases 2 and 3

struct Sample {
  int streams;
  double push_seconds;
};

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

int RunAgent(const Layout& layout, const char* self) {
  testing::TempDir dir("meshid-agent-bench");
  const std::string socket = dir.File("socket");

  testing::FakeClock clock;
  OpenSslRandom random;
  testing::FakeCa fake_ca(clock);
  TimedCa ca(fake_ca);
  testing::FakeTokenSource agent_token("agent");
  fake_ca.AllowToken("agent", "bench", "agent");
  for (int i = 1; i < layout.identities; ++i) fake_ca.AllowToken(Layout::Token(i), "bench", absl::StrCat("sa-", i));
  MetricsRegistry metrics;
  SecretCacheOptions options;
  options.secret_ttl = absl::Hours(1);
  auto cache = std::move(*SecretCache::Create(options, ca, agent_token, clock, random, metrics, MakeNullLogger()));
  sds::SdsServerOptions server_options;
  server_options.socket_path = socket;
  const size_t heap_start = HeapInUse();
  auto server = sds::SdsServer::Create(server_options, *cache, metrics, random, MakeNullLogger());
  if (!server.ok()) {
    std::fprintf(stderr, "%s\n", server.status().ToString().c_str());
    return 1;
  }
  Counter& acks = metrics.AddCounter("meshid_agent_sds_acks_total", "");
  Counter& pushes = metrics.AddCounter("meshid_agent_sds_pushes_total", "");

  // The clients, in their own process so their CPU is not the agent's.
  std::vector<std::string> argv_s = {self,
                                     "--clients",
                                     (*server)->target(),
                                     "--identities",
                                     std::to_string(layout.identities),
                                     "--streams",
                                     std::to_string(layout.streams),
                                     "--agent-streams",
                                     std::to_string(layout.agent_streams),
                                     "--channels",
                                     std::to_string(layout.channels)};
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t child = -1;
  if (posix_spawn(&child, self, nullptr, nullptr, argv.data(), environ) != 0) return 1;

  const auto t_connect = std::chrono::steady_clock::now();
  {
    auto workers = std::make_unique<CacheWorkers>(*cache, 2);
    while (acks.value() < layout.streams) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const double connect_seconds = Seconds(std::chrono::steady_clock::now() - t_connect);
  const auto stats = cache->Stats();
  const size_t heap_streams = HeapInUse();
  std::printf("| identities cached / SDS streams connected | %zu / %lld |\n", stats.identities,
              static_cast<long long>((*server)->connected_streams()));
  std::printf("| time to connect all streams, issue every identity and get every ACK | %.2f s |\n", connect_seconds);
  std::printf("| agent heap per stream (gRPC stream + xDS state + subscription, incl. cached secrets) | %.1f KiB |\n",
              static_cast<double>(heap_streams - heap_start) / layout.streams / 1024);

  // Rotation of every identity, one at a time, in renewal order.
  std::vector<double> small_pushes;
  double agent_push = -1;
  const double cpu0 = ProcessCpuSeconds(), ca_cpu0 = ca.ca_cpu();
  int rotations = 0;
  for (int r = 0; r < layout.identities; ++r) {
    auto due = cache->NextDueTime();
    if (!due) break;
    clock.Set(*due);
    const double acks_before = acks.value();
    if (!cache->RunOne()) continue;
    const std::string token = ca.last_token();
    const int expected = token == "agent" ? layout.agent_streams
                                          : layout.StreamsOf(std::stoi(token.substr(12, token.find('-', 12) - 12)));
    while (acks.value() < acks_before + expected) std::this_thread::yield();
    const double push = Seconds(std::chrono::steady_clock::now() - ca.answered());
    ++rotations;
    if (token == "agent") {
      agent_push = push;
    } else {
      small_pushes.push_back(push);
    }
  }
  const double agent_cpu = (ProcessCpuSeconds() - cpu0) - (ca.ca_cpu() - ca_cpu0);
  std::printf("| rotations measured (SDS responses sent in all, first ones included) | %d (%.0f) |\n", rotations,
              pushes.value());
  std::printf("| push one rotation to the %d streams of the agent identity (until all ACKed) | %.1f ms |\n",
              layout.agent_streams, agent_push * 1000);
  std::printf("| push one rotation to the ~%d streams of a workload identity, p50 / p99 | %.2f ms / %.2f ms |\n",
              layout.StreamsOf(1), Percentile(small_pushes, 0.5) * 1000, Percentile(small_pushes, 0.99) * 1000);
  std::printf("| agent CPU per rotation (key + CSR + checks + push + ACKs; CA signing excluded) | %.3f ms |\n",
              agent_cpu / rotations * 1000);
  std::printf("| in-process CA signing CPU per rotation (not the agent's) | %.3f ms |\n",
              (ca.ca_cpu() - ca_cpu0) / rotations * 1000);

  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  server->reset();
  cache.reset();
  return 0;
}

}  // namespace
}  // namespace meshid::bench

int main(int argc, char** argv) {
  meshid::bench::Layout layout;
  std::string client_target;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--identities")
      layout.identities = std::stoi(value);
    else if (flag == "--streams")
      layout.streams = std::stoi(value);
    else if (flag == "--agent-streams")
      layout.agent_streams = std::stoi(value);
    else if (flag == "--channels")
      layout.channels = std::stoi(value);
    else if (flag == "--clients")
      client_target = value;
    else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  if (layout.identities < 2 || layout.streams < layout.agent_streams + layout.identities - 1 || layout.channels < 1) {
    std::fprintf(stderr, "need at least 2 identities and one stream per workload identity\n");
    return 2;
  }
  if (!client_target.empty()) return meshid::bench::RunClients(layout, client_target);
  std::printf("| %d identities, %d SDS streams, %d client connections | |\n|---|---|\n", layout.identities,
              layout.streams, layout.channels);
  meshid::bench::MeasureMemoryPerSecret(layout);
  return meshid::bench::RunAgent(layout, "/proc/self/exe");
}
