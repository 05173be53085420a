// The SPIFFE Workload API (api/spiffe/workload/workload.proto) on the node agent: X.509-SVIDs
// and trust bundles for the workloads on the node, identified by what the kernel says about the
// calling process (attestor.h), never by anything the caller claims.
//
// FetchX509SVID: the caller's selectors are matched against the registration entries whose
// parent is this agent (registration/receiver.h); every matching identity's certificate is
// minted through the secret cache (ImpersonatedIdentity) and streamed: one message as soon as
// every identity has its certificate, and a new one on every rotation, entry change and bundle
// or CRL change. No matching entry: PERMISSION_DENIED "no identity issued"; an open stream whose
// last entry goes ends the same way. Chains are DER leaf first, keys PKCS#8 DER, bundles DER.
// FetchX509Bundles: the trust domain's bundle and the CRL, to any attested local caller (a
// bundle is public; validating needs no identity). The JWT methods answer UNIMPLEMENTED until
// JWT-SVIDs exist. Every call must carry "workload.spiffe.io: true" (INVALID_ARGUMENT
// otherwise). Before the agent has received its entries from the server, FetchX509SVID waits.
//
// Threading: gRPC's callback threads, the cache's threads (certificates) and the registration
// stream's thread (entries) all reach a stream; each stream has its own lock.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "nodeagent/secret_cache.h"
#include "registration/receiver.h"
#include "spiffe/workload/workload.grpc.pb.h"
#include "workload/attestor.h"
#include "workload/peer_listener.h"

namespace meshid::workload {

// The selectors of the process behind a gRPC peer string (grpc::ServerContext::peer()):
// PermissionDenied (saying why) when it cannot be attested.
using PeerSelectors = std::function<absl::StatusOr<absl::flat_hash_set<std::string>>(const std::string& peer)>;

// The agent's PeerSelectors: the connection's pinned process (PeerRegistry::Lookup), attested
// (WorkloadAttestor::Attest); either failing is PermissionDenied with its reason. Both must
// outlive the function.
PeerSelectors AttestedPeerSelectors(const PeerRegistry& peers, const WorkloadAttestor& attestor);

class WorkloadApiService final : public SpiffeWorkloadAPI::CallbackService {
 public:
  // Every reference must outlive the service, and the service every call (shut the
  // grpc::Server down first). Metrics: meshid_agent_workload_api_calls_total{method,code}.
  WorkloadApiService(SecretCache& cache, registration::EntryReceiver& entries, PeerSelectors attest,
                     MetricsRegistry& metrics, LoggerPtr logger);

  grpc::ServerWriteReactor<X509SVIDResponse>* FetchX509SVID(grpc::CallbackServerContext* context,
                                                            const X509SVIDRequest* request) override;
  grpc::ServerWriteReactor<X509BundlesResponse>* FetchX509Bundles(grpc::CallbackServerContext* context,
                                                                  const X509BundlesRequest* request) override;
  grpc::ServerUnaryReactor* FetchJWTSVID(grpc::CallbackServerContext* context, const JWTSVIDRequest* request,
                                         JWTSVIDResponse* response) override;
  grpc::ServerWriteReactor<JWTBundlesResponse>* FetchJWTBundles(grpc::CallbackServerContext* context,
                                                                const JWTBundlesRequest* request) override;
  grpc::ServerUnaryReactor* ValidateJWTSVID(grpc::CallbackServerContext* context, const ValidateJWTSVIDRequest* request,
                                            ValidateJWTSVIDResponse* response) override;

  // What a stream needs; public for the stream classes in the .cc.
  struct Shared {
    SecretCache& cache;
    registration::EntryReceiver& entries;
    PeerSelectors attest;
    MetricsRegistry& metrics;
    LoggerPtr logger;
    void Count(absl::string_view method, const grpc::Status& status) const;
  };

 private:
  Shared shared_;
};

}  // namespace meshid::workload
