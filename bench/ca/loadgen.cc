// Over-the-wire load generator for the CSR API: an async gRPC client keeping `concurrency`
// CreateCertificate calls in flight until `count` have completed (or the time limit passes).
// Reports certificates/s, p50/p99 latency, errors, and — given the server's pid — the server's
// CPU time per certificate read from /proc. Keys and CSRs are made before the clock starts.
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/csr.h"
#include "common/files.h"
#include "common/keys.h"
#include "istio/security/v1alpha1/ca.grpc.pb.h"

namespace {

using Clock = std::chrono::steady_clock;

// utime + stime of a process, in seconds.
double ProcessCpuSeconds(int pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream fields(stat.substr(close + 2));
  std::string field;
  double utime = 0, stime = 0;
  for (int i = 3; fields >> field; ++i) {
    if (i == 14) utime = std::stod(field);
    if (i == 15) {
      stime = std::stod(field);
      break;
    }
  }
  return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

struct Call {
  grpc::ClientContext context;
  istio::v1::auth::IstioCertificateResponse response;
  grpc::Status status;
  Clock::time_point start;
  std::unique_ptr<grpc::ClientAsyncResponseReader<istio::v1::auth::IstioCertificateResponse>> reader;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"meshid CA load generator"};
  std::string addr = "127.0.0.1:15012", root_file, token, token_file, key_type = "ecdsa-p256", server_name;
  int concurrency = 16, count = 5000, keys = 32, server_pid = 0, time_limit_s = 120;
  bool plaintext = false;
  app.add_option("--addr", addr, "CA address")->capture_default_str();
  app.add_option("--ca-root", root_file, "CA trust bundle");
  app.add_option("--token", token, "Bearer token");
  app.add_option("--token-file", token_file, "File with the bearer token");
  app.add_option("--concurrency", concurrency, "Calls in flight")->capture_default_str()->check(CLI::Range(1, 10000));
  app.add_option("--count", count, "Certificates to request")->capture_default_str()->check(CLI::Range(1, 10000000));
  app.add_option("--keys", keys, "Distinct workload keys (CSRs) to cycle through")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  app.add_option("--key-type", key_type, "Workload key type")->capture_default_str();
  app.add_option("--server-pid", server_pid, "Server pid, to report its CPU time per certificate");
  app.add_option("--time-limit", time_limit_s, "Stop after this many seconds")->capture_default_str();
  app.add_option("--tls-server-name", server_name, "Name to verify in the server certificate");
  app.add_flag("--insecure-plaintext", plaintext, "Plaintext channel");
  CLI11_PARSE(app, argc, argv);

  if (!token_file.empty()) token = std::string(absl::StripAsciiWhitespace(*meshid::ReadFile(token_file)));
  auto algorithm = meshid::ParseKeyAlgorithm(key_type);
  if (!algorithm.ok()) {
    std::cerr << algorithm.status() << std::endl;
    return 2;
  }
  std::vector<std::string> csrs;
  for (int i = 0; i < keys; ++i) {
    auto key = *meshid::GenerateKey(*algorithm);
    csrs.push_back(*meshid::BuildCsrPem(key.get()));
  }
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  grpc::ChannelArguments args;
  if (!plaintext) {
    auto root = meshid::ReadFile(root_file);
    if (!root.ok()) {
      std::cerr << "--ca-root: " << root.status() << std::endl;
      return 2;
    }
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = *root;
    creds = grpc::SslCredentials(ssl);
    if (!server_name.empty()) args.SetSslTargetNameOverride(server_name);
  }
  auto stub = istio::v1::auth::IstioCertificateService::NewStub(grpc::CreateCustomChannel(addr, creds, args));
  grpc::CompletionQueue cq;
  int started = 0, completed = 0;
  std::vector<double> latencies_ms;
  std::map<std::string, int> errors;
  auto start_call = [&] {
    auto* call = new Call;
    call->context.AddMetadata("authorization", "Bearer " + token);
    call->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    istio::v1::auth::IstioCertificateRequest request;
    request.set_csr(csrs[started % csrs.size()]);
    call->start = Clock::now();
    call->reader = stub->PrepareAsyncCreateCertificate(&call->context, request, &cq);
    call->reader->StartCall();
    call->reader->Finish(&call->response, &call->status, call);
    ++started;
  };
  // Warm the channel (TLS handshake) before measuring.
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + token);
    istio::v1::auth::IstioCertificateRequest request;
    request.set_csr(csrs[0]);
    istio::v1::auth::IstioCertificateResponse response;
    grpc::Status s = stub->CreateCertificate(&ctx, request, &response);
    if (!s.ok()) {
      std::cerr << "warm-up call failed: " << s.error_code() << " " << s.error_message() << std::endl;
      return 1;
    }
  }
  double server_cpu_before = server_pid > 0 ? ProcessCpuSeconds(server_pid) : 0;
  double client_cpu_before = ProcessCpuSeconds(getpid());
  auto begin = Clock::now();
  auto deadline = begin + std::chrono::seconds(time_limit_s);
  for (int i = 0; i < std::min(concurrency, count); ++i) start_call();
  void* tag;
  bool ok;
  while (completed < started && cq.Next(&tag, &ok)) {
    auto* call = static_cast<Call*>(tag);
    ++completed;
    if (call->status.ok()) {
      latencies_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - call->start).count());
    } else {
      errors[absl::StrCat(call->status.error_code(), " ", call->status.error_message())]++;
    }
    delete call;
    if (started < count && Clock::now() < deadline) start_call();
  }
  double seconds = std::chrono::duration<double>(Clock::now() - begin).count();
  double server_cpu = server_pid > 0 ? ProcessCpuSeconds(server_pid) - server_cpu_before : 0;
  double client_cpu = ProcessCpuSeconds(getpid()) - client_cpu_before;
  std::sort(latencies_ms.begin(), latencies_ms.end());
  auto pct = [&](double p) {
    return latencies_ms.empty() ? 0 : latencies_ms[std::min(latencies_ms.size() - 1, size_t(p * latencies_ms.size()))];
  };
  size_t ok_count = latencies_ms.size();
  std::cout << "key type        " << key_type << "\nconcurrency     " << concurrency << "\ncertificates    " << ok_count
            << " ok, " << (completed - static_cast<int>(ok_count)) << " failed\n";
  std::cout << "throughput      " << ok_count / seconds << " certificates/s\n";
  std::cout << "latency         p50 " << pct(0.50) << " ms, p99 " << pct(0.99) << " ms\n";
  if (server_pid > 0 && ok_count > 0)
    std::cout << "server CPU      " << 1000 * server_cpu / ok_count << " ms per certificate\n";
  std::cout << "client CPU      " << 1000 * client_cpu / std::max<size_t>(1, ok_count) << " ms per certificate\n";
  for (const auto& [e, n] : errors) std::cout << "error           " << n << " x " << e << "\n";
  return errors.empty() ? 0 : 1;
}
