// How long a revocation takes to reach every proxy (docs/benchmarks.md, "Revocation"): the real
// `meshid` binary as `meshid server`, two agents and three server-side `meshid proxy` processes
// on loopback (laid out as tests/meshproxy/revocation_e2e_test.cc: proxy 1 on agent 1, proxies 2
// and 3 on agent 2). Workload certificates come from the agents over SDS FetchSecrets, so they
// are in the server's ledger. For each one in turn, after a random pause of 0-1 s (so that the
// revocations fall at every phase of the server's 1 s CRL poll):
//   1. check that every proxy serves it (a new mTLS connection, one request);
//   2. run `meshid certs revoke SERIAL --data-dir DIR` and wait for it to return;
//   3. from that moment, probe every proxy that has not refused yet with a new mTLS connection
//      every --poll-ms, until all three refuse it; a proxy's time is when its refusing probe
//      ended (so it includes one handshake: an upper bound, within one probe period);
//   4. check that every proxy still serves a certificate that was never revoked.
// Prints one line per revocation and the median and maximum of "last proxy refusing".
//
// Bounded: every wait has a timeout (--timeout per revocation), and a watchdog kills this
// program's child processes (by pid) and exits after --deadline seconds or on SIGINT/SIGTERM.
//
// Usage: meshid_revocation_latency [--revocations 20] [--poll-ms 10] [--timeout 30]
//                                  [--deadline 900] [--seed N] [--preload N] [--server-arg ARG]...
// (--server-arg: passed to `meshid server`, e.g. --server-arg --crl-poll-interval=1s;
//  --preload N: before measuring, N certificates of the CA are written to the server's ledger
//  and revoked through the store's own interface, so that every CRL of the run lists N more
//  entries; the time until every proxy holds that CRL is printed too.)
#include <dirent.h>
#include <signal.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/files.h"
#include "common/logging.h"
#include "common/random.h"
#include "common/status_macros.h"
#include "common/x509.h"
#include "sql/store.h"
#include "store/records.h"
#include "tests/meshproxy/mesh_harness.h"
#include "tests/meshproxy/workload_svid.h"

namespace meshid::testing {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// ---- the watchdog ----

std::atomic<bool> g_signalled{false};
std::atomic<bool> g_done{false};
std::string g_temp_dir;  // set before the watchdog starts

void OnSignal(int) { g_signalled = true; }

// SIGKILL to every child of this process (found in /proc by parent pid, killed by pid).
void KillChildren() {
  const pid_t self = getpid();
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return;
  while (dirent* e = readdir(proc)) {
    int pid = 0;
    if (!absl::SimpleAtoi(e->d_name, &pid) || pid <= 0) continue;
    std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
    std::string line;
    if (!std::getline(stat, line)) continue;
    // pid (comm) state ppid ...: comm may hold spaces and parentheses; the last ')' ends it.
    const size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    char state = 0;
    int ppid = 0;
    if (std::sscanf(line.c_str() + close + 1, " %c %d", &state, &ppid) == 2 && ppid == self) kill(pid, SIGKILL);
  }
  closedir(proc);
}

void Watchdog(Clock::time_point deadline) {
  while (!g_done) {
    const bool late = Clock::now() > deadline;
    if (late || g_signalled) {
      std::fprintf(stderr, "\n%s: stopping every child process and exiting\n",
                   late ? "deadline passed" : "interrupted");
      KillChildren();
      std::error_code ec;
      if (!g_temp_dir.empty()) std::filesystem::remove_all(g_temp_dir, ec);
      std::fflush(nullptr);
      _exit(late ? 3 : 130);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

// ---- the mesh ----

struct Flags {
  int revocations = 20;
  int poll_ms = 10;
  int timeout_s = 30;
  int deadline_s = 900;
  uint64_t seed = 0;
  int preload = 0;
  std::vector<std::string> server_args;
};

bool ParseFlags(int argc, char** argv, Flags& f) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](auto* out) { return i + 1 < argc && absl::SimpleAtoi(argv[++i], out); };
    bool ok = true;
    if (a == "--revocations") {
      ok = value(&f.revocations) && f.revocations > 0;
    } else if (a == "--poll-ms") {
      ok = value(&f.poll_ms) && f.poll_ms >= 0;
    } else if (a == "--timeout") {
      ok = value(&f.timeout_s) && f.timeout_s > 0;
    } else if (a == "--deadline") {
      ok = value(&f.deadline_s) && f.deadline_s > 0;
    } else if (a == "--seed") {
      ok = value(&f.seed);
    } else if (a == "--preload") {
      ok = value(&f.preload) && f.preload >= 0;
    } else if (a == "--server-arg") {
      ok = i + 1 < argc;
      if (ok) f.server_args.push_back(argv[++i]);
    } else {
      ok = false;
    }
    if (!ok) {
      std::fprintf(stderr,
                   "usage: %s [--revocations 20] [--poll-ms 10] [--timeout 30] [--deadline 900] [--seed N] "
                   "[--preload N] [--server-arg ARG]...\n",
                   argv[0]);
      return false;
    }
  }
  return true;
}

// Writes `n` ledger rows of the CA in `data_dir` (random serials, valid for a day) and revokes
// them, 10,000 per transaction, as `meshid certs revoke` would.
absl::Status Preload(const std::string& data_dir, int n) {
  MESHID_ASSIGN_OR_RETURN(auto roots, ReadFile(data_dir + "/root-cert.pem"));
  MESHID_ASSIGN_OR_RETURN(auto certs, CertsFromPem(roots));
  const std::string issuer = SerialHex(certs.front().get());
  MESHID_ASSIGN_OR_RETURN(auto store,
                          OpenStore(StoreUrlFromFlags(data_dir, ""), SystemClock::Instance(), MakeNullLogger()));
  OpenSslRandom random;
  const absl::Time now = absl::Now();
  for (int start = 0; start < n; start += 10000) {
    std::vector<IssuanceRecord> records;
    std::vector<std::string> serials;
    for (int i = start; i < std::min(n, start + 10000); ++i) {
      uint8_t bytes[16];
      random.Fill(bytes, sizeof(bytes));
      bytes[0] = (bytes[0] & 0x7f) | 0x01;  // positive, 16 bytes, as the CA's serials
      std::string serial = absl::AsciiStrToUpper(
          absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes))));
      records.push_back(IssuanceRecord{serial, absl::StrCat("spiffe://cluster.local/ns/preload/sa/w", i),
                                       now - absl::Minutes(1), now + absl::Hours(24), std::string(64, '0'), issuer,
                                       "jwt", "preload", now});
      serials.push_back(std::move(serial));
    }
    MESHID_RETURN_IF_ERROR(store->RecordIssuances(records));
    MESHID_RETURN_IF_ERROR(
        store->Revoke(serials, RevocationRequest{RevocationReason::kKeyCompromise, "latency-bench", now}).status());
  }
  return absl::OkStatus();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int Run(const Flags& flags) {
  constexpr int kProxies = 3;
  TempDir temp("meshid-revocation-latency");
  const std::string dir = temp.path();
  if (dir.empty()) return 1;
  g_temp_dir = dir;
  std::thread watchdog(Watchdog, Clock::now() + std::chrono::seconds(flags.deadline_s));
  struct StopWatchdog {
    std::thread& t;
    ~StopWatchdog() {
      g_done = true;
      t.join();
    }
  } stop_watchdog{watchdog};

  double load[3] = {0, 0, 0};
  getloadavg(load, 3);
  std::printf("meshid revocation latency: %s, %d cores, load average %.2f %.2f %.2f at start\n",
              absl::FormatTime("%Y-%m-%dT%H:%MZ", absl::Now(), absl::UTCTimeZone()).c_str(), get_nprocs(), load[0],
              load[1], load[2]);
  std::printf("binary %s; %d revocations; probe every %d ms; work dir %s\n", MeshidBinary().c_str(), flags.revocations,
              flags.poll_ms, dir.c_str());
  std::fflush(stdout);

  // The server's CRL poll: its default as `meshid server --help` states it, unless set here.
  auto [help_rc, help] = RunShell(absl::StrCat(MeshidBinary(), " server --help 2>&1"));
  std::smatch poll;
  const bool has_poll_flag =
      std::regex_search(help, poll, std::regex(R"(--crl-poll-interval\s+\w+(?:=|\s+\[)([^\]\s]+))"));
  std::string server_args;
  for (const auto& a : flags.server_args) absl::StrAppend(&server_args, " ", a);
  std::printf("server CRL poll: %s; extra server arguments:%s\n",
              has_poll_flag ? absl::StrCat("--crl-poll-interval default ", poll[1].str()).c_str()
                            : "every 1 s (no --crl-poll-interval flag)",
              server_args.empty() ? " none" : server_args.c_str());
  std::fflush(stdout);

  auto server = std::make_unique<ServerProcess>(dir + "/ca", flags.server_args);
  if (!server->ok()) {
    std::fprintf(stderr, "meshid server did not start:\n%s\n", server->Log().c_str());
    return 1;
  }
  AgentProcess agent1(*server, MeshAgentOptions(dir, "1h"));
  AgentProcessOptions agent2_options = MeshAgentOptions(dir, "1h");
  agent2_options.name = "agent2";
  AgentProcess agent2(*server, agent2_options);
  for (const AgentProcess* a : {&agent1, &agent2}) {
    if (!a->ok()) {
      std::fprintf(stderr, "meshid agent did not start:\n%s\n", a->Log().c_str());
      return 1;
    }
  }
  EchoApp app;
  std::vector<std::unique_ptr<ProxyProcess>> proxies;
  std::vector<int> ports;
  const std::vector<std::pair<std::string, AgentProcess*>> services = {
      {"reviews", &agent1}, {"ratings", &agent2}, {"details", &agent2}};
  for (const auto& [service, agent] : services) {
    const std::string token = WriteTestFile(dir + "/" + service + ".token", server->Token("default", service));
    proxies.push_back(std::make_unique<ProxyProcess>(
        dir + "/" + service + ".log",
        std::vector<std::string>{"--sds-socket", agent->socket(), "--token-file", token, "--service", service,
                                 "--namespace", "default", "--inbound", "127.0.0.1:0", "--app",
                                 absl::StrCat("127.0.0.1:", app.port())}));
    if (!proxies.back()->ok()) {
      std::fprintf(stderr, "meshid proxy %s did not become ready:\n%s\n", service.c_str(),
                   proxies.back()->Log().c_str());
      return 1;
    }
    ports.push_back(proxies.back()->inbound());
  }

  if (flags.preload > 0) {
    const auto start = Clock::now();
    if (auto s = Preload(dir + "/ca", flags.preload); !s.ok()) {
      std::fprintf(stderr, "preloading %d revocations: %s\n", flags.preload, s.ToString().c_str());
      return 1;
    }
    const auto stored = Clock::now();
    const bool everywhere = Eventually(
        [&] {
          for (const auto& p : proxies) {
            if (p->Metric("meshid_proxy_crl_entries") < flags.preload) return false;
          }
          return true;
        },
        std::chrono::seconds(flags.timeout_s * 4));
    if (!everywhere) {
      std::fprintf(stderr, "the CRL with %d preloaded revocations did not reach every proxy\n", flags.preload);
      return 1;
    }
    std::printf("preloaded %d revocations: stored in %.1f s, in force on every proxy %.1f s later\n", flags.preload,
                Seconds(stored - start), Seconds(Clock::now() - stored));
    std::fflush(stdout);
  }

  // The workload certificates, half from each agent, and one that is never revoked.
  std::vector<Svid> svids;
  for (int i = 0; i <= flags.revocations; ++i) {
    const std::string sa = i == flags.revocations ? "bystander" : absl::StrCat("workload-", i);
    AgentProcess& agent = i % 2 == 0 ? agent1 : agent2;
    svids.push_back(FetchSvid(agent.socket(), server->Token("default", sa), dir, sa));
    if (svids.back().serial.empty()) {
      std::fprintf(stderr, "no certificate for %s: %s\n", sa.c_str(), svids.back().error.c_str());
      return 1;
    }
  }
  const Svid bystander = svids.back();
  svids.pop_back();

  std::mt19937_64 random(flags.seed != 0 ? flags.seed : std::random_device{}());
  std::uniform_int_distribution<int> pause_ms(0, 999);
  std::printf("\n%-3s %-34s %10s %10s %10s %10s %10s %10s\n", "#", "serial", "revoke ms", "proxy 1 s", "proxy 2 s",
              "proxy 3 s", "first s", "last s");
  std::vector<double> lasts, firsts;
  for (int i = 0; i < flags.revocations; ++i) {
    const Svid& svid = svids[static_cast<size_t>(i)];
    std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms(random)));
    for (int p = 0; p < kProxies; ++p) {
      if (!Served(ports[static_cast<size_t>(p)], svid.files)) {
        std::fprintf(stderr, "proxy %d refuses %s before its revocation:\n%s\n", p + 1, svid.serial.c_str(),
                     proxies[static_cast<size_t>(p)]->Log().c_str());
        return 1;
      }
    }
    const auto before = Clock::now();
    auto [rc, out] =
        RunShell(absl::StrCat(MeshidBinary(), " certs revoke ", svid.serial, " --data-dir ", dir, "/ca 2>&1"));
    const auto t0 = Clock::now();  // `meshid certs revoke` has returned
    if (rc != 0) {
      std::fprintf(stderr, "meshid certs revoke %s failed (%d): %s\n", svid.serial.c_str(), rc, out.c_str());
      return 1;
    }
    std::vector<double> refused(kProxies, -1);
    int left = kProxies;
    const auto give_up = t0 + std::chrono::seconds(flags.timeout_s);
    while (left > 0 && Clock::now() < give_up) {
      for (int p = 0; p < kProxies; ++p) {
        if (refused[static_cast<size_t>(p)] >= 0) continue;
        if (!Served(ports[static_cast<size_t>(p)], svid.files)) {
          refused[static_cast<size_t>(p)] = Seconds(Clock::now() - t0);
          --left;
        }
      }
      if (left > 0) std::this_thread::sleep_for(std::chrono::milliseconds(flags.poll_ms));
    }
    if (left > 0) {
      std::fprintf(stderr, "revocation %d (%s): not every proxy refused it within %d s\n", i + 1, svid.serial.c_str(),
                   flags.timeout_s);
      for (int p = 0; p < kProxies; ++p) {
        std::fprintf(stderr, "proxy %d: %s\n", p + 1,
                     refused[static_cast<size_t>(p)] >= 0 ? "refused" : proxies[static_cast<size_t>(p)]->Log().c_str());
      }
      return 1;
    }
    // The refusals are about this certificate: the proxies still serve one never revoked.
    for (int p = 0; p < kProxies; ++p) {
      if (!Served(ports[static_cast<size_t>(p)], bystander.files)) {
        std::fprintf(stderr, "proxy %d refuses the never-revoked certificate after revocation %d:\n%s\n", p + 1, i + 1,
                     proxies[static_cast<size_t>(p)]->Log().c_str());
        return 1;
      }
    }
    const double first = *std::min_element(refused.begin(), refused.end());
    const double last = *std::max_element(refused.begin(), refused.end());
    firsts.push_back(first);
    lasts.push_back(last);
    std::printf("%-3d %-34s %10.1f %10.3f %10.3f %10.3f %10.3f %10.3f\n", i + 1, svid.serial.c_str(),
                1000 * Seconds(t0 - before), refused[0], refused[1], refused[2], first, last);
    std::fflush(stdout);
  }

  // The proxies saw the revoked certificates themselves: each probe that failed shows up as a
  // handshake refused as revoked, or, when the CRL arrived while the probe's connection was open,
  // as a connection the proxy closed for it.
  std::printf("\nper proxy, handshakes refused as revoked + connections closed as revoked:");
  for (int p = 0; p < kProxies; ++p) {
    const ProxyProcess& proxy = *proxies[static_cast<size_t>(p)];
    const double refused = proxy.Metric("meshid_proxy_revoked_peers_refused_total");
    const double closed = proxy.Metric("meshid_proxy_revoked_connections_closed_total");
    std::printf(" %s%.0f + %.0f", p == 0 ? "" : ", ", refused, closed);
    if (refused + closed < flags.revocations) std::printf(" (fewer than %d!)", flags.revocations);
  }
  std::printf("\n");
  std::printf("first proxy refusing: median %.3f s, max %.3f s\n", Median(firsts),
              *std::max_element(firsts.begin(), firsts.end()));
  std::printf("last of %d proxies refusing, over %d revocations: median %.3f s, max %.3f s (min %.3f s)\n", kProxies,
              flags.revocations, Median(lasts), *std::max_element(lasts.begin(), lasts.end()),
              *std::min_element(lasts.begin(), lasts.end()));
  std::fflush(stdout);
  for (auto& p : proxies) p->Stop();
  return 0;
}

}  // namespace
}  // namespace meshid::testing

int main(int argc, char** argv) {
  meshid::testing::Flags flags;
  if (!meshid::testing::ParseFlags(argc, argv, flags)) return 2;
  signal(SIGPIPE, SIG_IGN);
  signal(SIGINT, meshid::testing::OnSignal);
  signal(SIGTERM, meshid::testing::OnSignal);
  return meshid::testing::Run(flags);
}
