// The per-caller signing limit of the real `meshid server` under a flood, judged by another
// caller's latency. The one test here that measures time: ctest runs it alone (RUN_SERIAL), so
// that no other test's load lands in its phases.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <iostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/csr.h"
#include "common/keys.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "istio/security/v1alpha1/ca.grpc.pb.h"
#include "nodeagent/ca_client.h"
#include "tests/integration/ca_harness.h"
#include "tests/support/processes.h"
#include "tests/support/temp_dir.h"

namespace meshid {
namespace {

using testing::ServerProcess;

class SigningLimitsTest : public ::testing::Test {
 protected:
  std::unique_ptr<CaClient> Client(const ServerProcess& server) { return testing::ClientFor(server, "", ""); }

  testing::TempDir temp_dir_{"meshid-limits-it", testing::TempDir::Cleanup::kUnlessTestFailed};
  std::string base_ = temp_dir_.path();
};

// Issue 13's limit: one identity looping on CreateCertificate from several threads is refused
// (RESOURCE_EXHAUSTED with a retry hint) while another identity is served, and the other's p99
// latency stays within twice its idle p99 (plus a little for the scheduler of a small machine).
TEST_F(SigningLimitsTest, OneCallersFloodIsRefusedWhileAnotherIsServedAtItsIdleLatency) {
  // The victim asks at most every 50 ms: under 25/s, so only the flood is over the limit. A low
  // limit keeps the flood's signed certificates (25 a second) from being the load measured; the
  // test is about its refused ones.
  ServerProcess server(base_ + "/data", {"--signing-rate-per-caller", "25", "--signing-burst-per-caller", "25"});
  ASSERT_TRUE(server.ok()) << server.Log();
  EXPECT_NE(server.Log().find("signing limits: 25 certificates/s per caller (burst 25)"), std::string::npos);
  const std::string victim_token = server.Token("default", "victim");
  const std::string flood_token = server.Token("default", "flooder");
  auto key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
  const std::string csr = *BuildCsrPem(key.get());

  auto victim = Client(server);
  int victim_requests = 0, victim_failures = 0, victim_exhausted = 0;
  auto measure = [&](std::vector<double>& into, int samples) {
    for (int i = 0; i < samples; ++i) {
      auto start = std::chrono::steady_clock::now();
      auto chain = victim->CreateCertificate(csr, victim_token, absl::ZeroDuration());
      into.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
      ++victim_requests;
      if (!chain.ok()) {
        ++victim_failures;
        if (absl::IsResourceExhausted(chain.status())) ++victim_exhausted;
        ADD_FAILURE() << "the victim was refused: " << chain.status();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  };
  std::vector<double> warm_up;
  measure(warm_up, 5);  // the connection, the registry cache

  std::atomic<int> flood_ok{0}, flood_exhausted{0}, flood_other{0};
  std::string exhausted_message;
  absl::Mutex message_mu;
  // One phase of the flood: kFloodThreads clients looping on CreateCertificate until stopped.
  auto start_flood = [&](std::atomic<bool>& stop) {
    constexpr int kFloodThreads = 2;
    std::vector<std::thread> flood;
    for (int t = 0; t < kFloodThreads; ++t) {
      flood.emplace_back([&] {
        // The flooding clients run at the lowest priority: a real flooder runs on another
        // machine, and here their own TLS and HTTP/2 work would otherwise take the CPU from the
        // victim's client, which is not what is being tested. The server's work for the flood
        // still runs at normal priority.
        setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 19);
        auto client = Client(server);
        while (!stop) {
          auto chain = client->CreateCertificate(csr, flood_token, absl::ZeroDuration());
          if (chain.ok()) {
            ++flood_ok;
          } else if (absl::IsResourceExhausted(chain.status())) {
            if (++flood_exhausted == 1) {
              absl::MutexLock lock(&message_mu);
              exhausted_message = std::string(chain.status().message());
            }
          } else {
            ++flood_other;
          }
        }
      });
    }
    return flood;
  };
  // The nearest-rank percentile.
  auto percentile = [](std::vector<double> v, double p) {
    std::sort(v.begin(), v.end());
    return v[static_cast<size_t>(std::ceil(p * static_cast<double>(v.size()))) - 1];
  };

  // Each attempt alternates idle and flooded phases, so that both see the same background; on a
  // shared machine another process's burst can still land in flooded phases only, so the latency
  // is judged on the best of three attempts. A server that slows the victim fails all three. So
  // does a machine whose CPUs other work keeps saturated for the whole test (the server's share
  // then shrinks, and the flood's refusals, cheap as they are, take part of it).
  constexpr int kAttempts = 3, kRounds = 3, kSamples = 40;
  bool latency_ok = false;
  for (int attempt = 0; attempt < kAttempts && !latency_ok; ++attempt) {
    std::vector<double> idle_ms, during_ms;
    for (int round = 0; round < kRounds; ++round) {
      measure(idle_ms, kSamples);
      std::atomic<bool> stop{false};
      const int refused_at_start = flood_exhausted.load();
      std::vector<std::thread> flood = start_flood(stop);
      // Until the flood has used its burst and is being refused.
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (flood_exhausted.load() < refused_at_start + 100 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      const int refused_before = flood_exhausted.load();
      measure(during_ms, kSamples);
      EXPECT_GT(flood_exhausted.load(), refused_before + kSamples) << "the flood went on while the victim was measured";
      stop = true;
      for (auto& t : flood) t.join();
    }
    const double idle_p99 = percentile(idle_ms, 0.99), during_p99 = percentile(during_ms, 0.99);
    std::cout << "victim latency, idle: p50 " << percentile(idle_ms, 0.5) << " ms, p99 " << idle_p99
              << " ms; during the flood: p50 " << percentile(during_ms, 0.5) << " ms, p99 " << during_p99
              << " ms (allowed: " << 2 * idle_p99 + 5 << " ms)" << std::endl;
    latency_ok = during_p99 <= 2 * idle_p99 + 5;
  }
  EXPECT_TRUE(latency_ok) << "the victim's p99 during the flood was above twice its idle p99 + 5 ms in every attempt";
  std::cout << "flood: " << flood_ok.load() << " signed, " << flood_exhausted.load() << " refused" << std::endl;

  EXPECT_EQ(victim_failures, 0);
  EXPECT_EQ(victim_exhausted, 0);
  EXPECT_GT(flood_exhausted.load(), 0);
  EXPECT_EQ(flood_other.load(), 0);
  {
    absl::MutexLock lock(&message_mu);
    EXPECT_THAT(exhausted_message,
                ::testing::MatchesRegex("signing rate limit: spiffe://cluster.local/ns/default/sa/flooder is over its "
                                        "limit of 25 certificates/s \\(burst 25\\); retry after [0-9]+ ms"));
  }
  EXPECT_EQ(server.Metric("meshid_ca_rate_limited_total{reason=\"caller_rate\"}"), flood_exhausted.load())
      << "every refusal counted, and none of them the victim's";
  EXPECT_EQ(server.Metric("meshid_ca_rate_limited_total{reason=\"concurrency\"}"), 0);
  EXPECT_EQ(server.Metric("citadel_server_success_cert_issuance_count"), victim_requests + flood_ok.load());

  // The hint is also in the status details as google.rpc.RetryInfo, where gRPC clients look.
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = server.root();
  auto stub = istio::v1::auth::IstioCertificateService::NewStub(
      grpc::CreateChannel(server.address(), grpc::SslCredentials(ssl)));
  grpc::Status status;
  for (int i = 0; i < 500 && status.error_code() != grpc::RESOURCE_EXHAUSTED; ++i) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + flood_token);
    istio::v1::auth::IstioCertificateRequest request;
    request.set_csr(csr);
    istio::v1::auth::IstioCertificateResponse response;
    status = stub->CreateCertificate(&context, request, &response);
  }
  ASSERT_EQ(status.error_code(), grpc::RESOURCE_EXHAUSTED) << status.error_message();
  google::rpc::Status details;
  ASSERT_TRUE(details.ParseFromString(status.error_details()));
  EXPECT_EQ(details.code(), grpc::RESOURCE_EXHAUSTED);
  EXPECT_EQ(details.message(), status.error_message());
  ASSERT_EQ(details.details_size(), 1);
  EXPECT_EQ(details.details(0).type_url(), "type.googleapis.com/google.rpc.RetryInfo");
  google::rpc::RetryInfo retry;
  ASSERT_TRUE(details.details(0).UnpackTo(&retry));
  const int64_t hint_ms = retry.retry_delay().seconds() * 1000 + retry.retry_delay().nanos() / 1000000;
  EXPECT_GE(hint_ms, 1);
  EXPECT_LE(hint_ms, 40) << "one token at 25/s";
  EXPECT_THAT(status.error_message(), ::testing::EndsWith(absl::StrCat("retry after ", hint_ms, " ms")));
}

}  // namespace
}  // namespace meshid
