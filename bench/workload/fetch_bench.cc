// The Workload API's first answer with a warm cache (docs/benchmarks.md, "Workload attestation
// and the Workload API"): one agent's WorkloadApiService, PeerListener and attestor as
// `meshid agent --mode node` wires them (workload/workload_api.h), over a real Unix socket, with
// 1,000 registration entries for the agent, each selecting this process's uid; the caller's
// entry adds its gid, the 999 others an executable path it does not run. The secret cache is the
// agent's (an in-process CA behind it): the caller's identity is minted once, before timing, as
// a workload that asked before would have left it.
//
// Timed, from the client (a thread of this process: attestation reads its own /proc):
//  - same connection: a new FetchX509SVID stream on an open channel until its first message
//    (the header check, attestation, matching 1,000 entries, the cached certificate turned into
//    DER, the write);
//  - new connection: a new channel each time, so also connect, accept and pinning the peer.
// Prints a Markdown table: median, p90 and max over the runs.
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/random.h"
#include "nodeagent/secret_cache.h"
#include "registration/receiver.h"
#include "spiffe/workload/workload.grpc.pb.h"
#include "tests/nodeagent/fake_ca.h"
#include "tests/support/temp_dir.h"
#include "workload/attestor.h"
#include "workload/peer_listener.h"
#include "workload/workload_api.h"

namespace meshid::bench {
namespace {

constexpr int kEntries = 1000;
constexpr int kRunsPerMode = 300;
constexpr char kAgentId[] = "spiffe://cluster.local/ns/istio-system/sa/meshid-agent";

void Check(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "fetch_bench: %s\n", what.c_str());
    std::exit(1);
  }
}

std::shared_ptr<const registration::NodeEntries> Entries(const std::string& caller_id) {
  auto entries = std::make_shared<registration::NodeEntries>();
  entries->parent_id = kAgentId;
  entries->registry_generation = 1;
  const std::string uid = absl::StrCat("unix:uid:", ::getuid());
  for (int i = 0; i < kEntries; ++i) {
    registration::NodeEntry entry;
    entry.spiffe_id = absl::StrCat("spiffe://cluster.local/ns/bench/sa/w-", 10000 + i);
    if (i == kEntries / 2) {
      entry.spiffe_id = caller_id;
      entry.selectors = {absl::StrCat("unix:gid:", ::getgid()), uid};
    } else {
      entry.selectors = {absl::StrCat("unix:path:/opt/bench/w-", i), uid};
      std::sort(entry.selectors.begin(), entry.selectors.end());
    }
    entries->entries.push_back(std::move(entry));
  }
  std::sort(entries->entries.begin(), entries->entries.end(),
            [](const auto& a, const auto& b) { return a.spiffe_id < b.spiffe_id; });
  return entries;
}

// Opens FetchX509SVID on `stub` and returns how long the first message took.
double FirstAnswerMs(SpiffeWorkloadAPI::Stub& stub, const std::string& want_id) {
  grpc::ClientContext context;
  context.AddMetadata("workload.spiffe.io", "true");
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  const auto start = std::chrono::steady_clock::now();
  auto reader = stub.FetchX509SVID(&context, X509SVIDRequest());
  X509SVIDResponse response;
  const bool got = reader->Read(&response);
  const auto end = std::chrono::steady_clock::now();
  Check(got && response.svids_size() == 1 && response.svids(0).spiffe_id() == want_id,
        absl::StrCat("no SVID for ", want_id, ": ", got ? response.ShortDebugString() : "the stream ended"));
  context.TryCancel();
  (void)reader->Finish();
  return std::chrono::duration<double, std::milli>(end - start).count();
}

void Row(const std::string& what, std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  std::printf("| %s | %zu | %.3f ms | %.3f ms | %.3f ms |\n", what.c_str(), ms.size(), ms[ms.size() / 2],
              ms[ms.size() * 9 / 10], ms.back());
}

int Main() {
  SystemClock clock;
  OpenSslRandom random;
  MetricsRegistry metrics;
  LoggerPtr logger = MakeNullLogger();
  testing::FakeCa ca(clock);
  testing::FakeTokenSource agent_token("agent");
  ca.AllowToken("agent", "istio-system", "meshid-agent");
  const std::string caller_id = "spiffe://cluster.local/ns/bench/sa/caller";
  ca.AllowMinting(caller_id, kAgentId);
  auto cache = SecretCache::Create({}, ca, agent_token, clock, random, metrics, logger);
  Check(cache.ok(), "secret cache");
  CacheWorkers workers(**cache, 2);
  for (int i = 0; i < 300 && (*cache)->AgentSpiffeId().empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  Check((*cache)->AgentSpiffeId() == kAgentId, "the agent's own certificate");

  registration::EntryReceiver receiver([&] { return (*cache)->AgentSpiffeId(); }, metrics, logger);
  receiver.Apply(Entries(caller_id));

  auto attestor = workload::WorkloadAttestor::Create({}, metrics);
  Check(attestor.ok(), "attestor");
  workload::PeerRegistry peers;
  workload::WorkloadApiService service(**cache, receiver, workload::AttestedPeerSelectors(peers, **attestor), metrics,
                                       logger);
  grpc::ServerBuilder builder;
  builder.RegisterService(&service);
  auto server = builder.BuildAndStart();
  Check(server != nullptr, "grpc server");
  testing::TempDir dir("meshid-fetch-bench");
  auto listener =
      workload::PeerListener::Create({.socket_path = dir.File("api.sock")}, peers, *server, metrics, logger);
  Check(listener.ok(), absl::StrCat("listener: ", listener.ok() ? "" : listener.status().ToString()));

  auto channel = grpc::CreateChannel((*listener)->target(), grpc::InsecureChannelCredentials());
  auto stub = SpiffeWorkloadAPI::NewStub(channel);
  const double cold = FirstAnswerMs(*stub, caller_id);  // mints the caller's certificate
  for (int i = 0; i < 20; ++i) FirstAnswerMs(*stub, caller_id);

  std::vector<double> same, fresh;
  for (int i = 0; i < kRunsPerMode; ++i) same.push_back(FirstAnswerMs(*stub, caller_id));
  for (int i = 0; i < kRunsPerMode; ++i) {
    grpc::ChannelArguments args;
    args.SetInt("grpc.use_local_subchannel_pool", 1);  // a connection of its own, not a shared one
    auto own = SpiffeWorkloadAPI::NewStub(
        grpc::CreateCustomChannel((*listener)->target(), grpc::InsecureChannelCredentials(), args));
    fresh.push_back(FirstAnswerMs(*own, caller_id));
  }
  std::printf("FetchX509SVID first answer, %d entries on the agent, the caller matching one (%d runs each)\n\n",
              kEntries, kRunsPerMode);
  std::printf("| stream | runs | median | p90 | max |\n|---|---|---|---|---|\n");
  Row("warm cache, open connection", same);
  Row("warm cache, new connection (connect, accept, pin the peer)", fresh);
  std::printf("\nfirst call, certificate minted through the in-process CA: %.3f ms\n", cold);
  listener->reset();
  server->Shutdown();
  return 0;
}

}  // namespace
}  // namespace meshid::bench

int main() { return meshid::bench::Main(); }
