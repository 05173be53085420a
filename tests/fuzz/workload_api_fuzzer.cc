// The Workload API's request handling (workload/workload_api.h): every call a local process makes
// reaches it with bytes and metadata the caller chose. One agent's WorkloadApiService (its secret
// cache with an in-process CA, three registration entries) on an in-process gRPC server; the
// input says what the caller sends and what attestation found:
//
//   byte 0          the method (modulo 5: FetchX509SVID, FetchX509Bundles, FetchJWTSVID,
//                   FetchJWTBundles, ValidateJWTSVID)
//   line 1          the "workload.spiffe.io" value, or the line "-" for no such header
//   lines until ""  the caller's selectors (as attestation would return them; "!" alone: the
//                   caller could not be attested)
//   the rest        the serialized request, sent as is (one that does not parse is refused by
//                   gRPC: the call fails and nothing is answered)
//
// Besides not crashing or hanging: without the header "true" every call is INVALID_ARGUMENT;
// the JWT methods are UNIMPLEMENTED; an unattested caller is PERMISSION_DENIED; FetchX509SVID
// answers with exactly the identities whose entries' selectors are all among the caller's, or
// PERMISSION_DENIED when there are none; FetchX509Bundles answers with the trust domain's bundle.
// Corpus: one input per method and outcome.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/random.h"
#include "google/protobuf/stubs/logging.h"
#include "nodeagent/secret_cache.h"
#include "registration/receiver.h"
#include "spiffe/workload/workload.pb.h"
#include "tests/nodeagent/fake_ca.h"
#include "workload/workload_api.h"

namespace {

using namespace meshid;  // NOLINT: a fuzz target's file-local shorthand

constexpr char kAgentId[] = "spiffe://cluster.local/ns/istio-system/sa/meshid-agent";
constexpr const char* kMethods[] = {"FetchX509SVID", "FetchX509Bundles", "FetchJWTSVID", "FetchJWTBundles",
                                    "ValidateJWTSVID"};

// The registration entries: identity → selectors.
const std::vector<std::pair<std::string, std::vector<std::string>>>& Entries() {
  static const auto* entries = new std::vector<std::pair<std::string, std::vector<std::string>>>{
      {"spiffe://cluster.local/ns/fuzz/sa/by-gid", {"unix:gid:100"}},
      {"spiffe://cluster.local/ns/fuzz/sa/by-uid", {"unix:uid:1000"}},
      {"spiffe://cluster.local/ns/fuzz/sa/by-uid-and-path", {"unix:path:/usr/bin/app", "unix:uid:1000"}},
  };
  return *entries;
}

// What attestation returns for the current input (the service asks from gRPC's threads).
struct Attested {
  absl::Mutex mu;
  absl::StatusOr<absl::flat_hash_set<std::string>> selectors ABSL_GUARDED_BY(mu);
};

class Agent {
 public:
  Agent() : ca_(clock_), token_("agent"), logger_(MakeNullLogger()) {
    ca_.AllowToken("agent", "istio-system", "meshid-agent");
    for (const auto& [id, selectors] : Entries()) ca_.AllowMinting(id, kAgentId);
    cache_ = std::move(*SecretCache::Create({}, ca_, token_, clock_, random_, metrics_, logger_));
    workers_ = std::make_unique<CacheWorkers>(*cache_, 1);
    while (cache_->AgentSpiffeId().empty()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (cache_->AgentSpiffeId() != kAgentId) __builtin_trap();
    receiver_ =
        std::make_unique<registration::EntryReceiver>([this] { return cache_->AgentSpiffeId(); }, metrics_, logger_);
    auto entries = std::make_shared<registration::NodeEntries>();
    entries->parent_id = kAgentId;
    for (const auto& [id, selectors] : Entries()) entries->entries.push_back({id, selectors, {}, absl::ZeroDuration()});
    receiver_->Apply(std::move(entries));
    service_ = std::make_unique<workload::WorkloadApiService>(
        *cache_, *receiver_,
        [this](const std::string&) {
          absl::MutexLock lock(&attested_.mu);
          return attested_.selectors;
        },
        metrics_, logger_);
    grpc::ServerBuilder builder;
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    stub_ = std::make_unique<grpc::GenericStub>(server_->InProcessChannel(grpc::ChannelArguments()));
  }

  void SetAttested(absl::StatusOr<absl::flat_hash_set<std::string>> selectors) {
    absl::MutexLock lock(&attested_.mu);
    attested_.selectors = std::move(selectors);
  }

  // Sends `request` to `method`; the first response's bytes (if any) and the call's status.
  grpc::Status Call(const std::string& method, const std::string* header, const std::string& request,
                    std::string* first_response) {
    grpc::ClientContext context;
    if (header != nullptr) context.AddMetadata("workload.spiffe.io", *header);
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    grpc::CompletionQueue cq;
    auto call = stub_->PrepareCall(&context, "/SpiffeWorkloadAPI/" + method, &cq);
    void* tag = nullptr;
    bool ok = false;
    call->StartCall(reinterpret_cast<void*>(1));
    cq.Next(&tag, &ok);
    grpc::ByteBuffer out(nullptr, 0);
    grpc::Slice slice(request);
    grpc::ByteBuffer sent(&slice, 1);
    call->WriteLast(sent, grpc::WriteOptions(), reinterpret_cast<void*>(2));
    cq.Next(&tag, &ok);
    grpc::ByteBuffer received;
    call->Read(&received, reinterpret_cast<void*>(3));
    cq.Next(&tag, &ok);
    if (ok) {
      std::vector<grpc::Slice> slices;
      (void)received.Dump(&slices);
      for (const auto& s : slices) first_response->append(reinterpret_cast<const char*>(s.begin()), s.size());
      context.TryCancel();
    }
    grpc::Status status;
    call->Finish(&status, reinterpret_cast<void*>(4));
    cq.Next(&tag, &ok);
    cq.Shutdown();
    while (cq.Next(&tag, &ok)) {
    }
    return status;
  }

 private:
  SystemClock clock_;
  OpenSslRandom random_;
  MetricsRegistry metrics_;
  testing::FakeCa ca_;
  testing::FakeTokenSource token_;
  LoggerPtr logger_;
  std::unique_ptr<SecretCache> cache_;
  std::unique_ptr<CacheWorkers> workers_;
  std::unique_ptr<registration::EntryReceiver> receiver_;
  Attested attested_;
  std::unique_ptr<workload::WorkloadApiService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<grpc::GenericStub> stub_;
};

bool RequestParses(const std::string& method, const std::string& bytes) {
  if (method == "FetchX509SVID") return X509SVIDRequest().ParseFromString(bytes);
  if (method == "FetchX509Bundles") return X509BundlesRequest().ParseFromString(bytes);
  if (method == "FetchJWTSVID") return JWTSVIDRequest().ParseFromString(bytes);
  if (method == "FetchJWTBundles") return JWTBundlesRequest().ParseFromString(bytes);
  return ValidateJWTSVIDRequest().ParseFromString(bytes);
}

Agent& TheAgent() {
  // Requests with invalid UTF-8 in string fields are expected; protobuf would log each one.
  static const bool quiet = (google::protobuf::SetLogHandler(nullptr), true);
  (void)quiet;
  static Agent* agent = new Agent();  // lives for the process: gRPC's threads use it
  return *agent;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string method = kMethods[data[0] % 5];
  const std::string input(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::vector<std::string> lines = absl::StrSplit(input, absl::MaxSplits('\n', 64));
  const std::string header_line = lines.empty() ? "-" : lines[0];
  size_t i = 1;
  absl::flat_hash_set<std::string> selectors;
  bool attested = true;
  for (; i < lines.size() && !lines[i].empty(); ++i) {
    if (lines[i] == "!") attested = false;
    selectors.insert(lines[i]);
  }
  std::string request;
  for (size_t j = i + 1; j < lines.size(); ++j) request += (j > i + 1 ? "\n" : "") + lines[j];

  // gRPC itself refuses header values that are not printable ASCII before anything is sent.
  for (char c : header_line) {
    if (c < 0x20 || c > 0x7e) return 0;
  }
  if (header_line.size() > 1024) return 0;

  Agent& agent = TheAgent();
  if (attested) {
    agent.SetAttested(selectors);
  } else {
    agent.SetAttested(absl::PermissionDeniedError("not attested"));
  }
  std::string first;
  const grpc::Status status = agent.Call(method, header_line == "-" ? nullptr : &header_line, request, &first);

  const auto code = status.error_code();
  if (!RequestParses(method, request)) {  // gRPC refuses it before the service sees it
    if (status.ok() || !first.empty()) __builtin_trap();
    return 0;
  }
  if (header_line != "true") {
    if (code != grpc::StatusCode::INVALID_ARGUMENT || !first.empty()) __builtin_trap();
    return 0;
  }
  if (method != "FetchX509SVID" && method != "FetchX509Bundles") {
    if (code != grpc::StatusCode::UNIMPLEMENTED) __builtin_trap();
    return 0;
  }
  if (!attested) {
    if (code != grpc::StatusCode::PERMISSION_DENIED || !first.empty()) __builtin_trap();
    return 0;
  }
  if (method == "FetchX509Bundles") {
    X509BundlesResponse bundles;
    if (!bundles.ParseFromString(first) || bundles.bundles_size() != 1 ||
        !bundles.bundles().contains("spiffe://cluster.local") ||
        bundles.bundles().at("spiffe://cluster.local").empty()) {
      __builtin_trap();
    }
    return 0;
  }
  std::set<std::string> want;
  for (const auto& [id, entry_selectors] : Entries()) {
    bool all = true;
    for (const auto& s : entry_selectors) all = all && selectors.contains(s);
    if (all) want.insert(id);
  }
  if (want.empty()) {
    if (code != grpc::StatusCode::PERMISSION_DENIED || !first.empty()) __builtin_trap();
    return 0;
  }
  X509SVIDResponse response;
  if (!response.ParseFromString(first)) __builtin_trap();
  std::set<std::string> got;
  for (const auto& svid : response.svids()) {
    if (svid.x509_svid().empty() || svid.x509_svid_key().empty() || svid.bundle().empty()) __builtin_trap();
    got.insert(svid.spiffe_id());
  }
  if (got != want) __builtin_trap();
  return 0;
}
