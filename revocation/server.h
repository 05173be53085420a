// Serving the revocation stream (meshid.revocation.v1.RevocationDistributionService) from
// `meshid server` to the agents: the newest CRL lives in an xds::ResourcePublisher, which the
// server's CRL publisher (ca/crl_publisher.h, wired in daemons/server.cc) feeds on every
// rebuild, and every agent's stream is an xds::StreamServer stream of RevocationListType().
// Nothing of the stream machinery is written here.
//
// Threading: thread-safe.
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/random.h"
#include "meshid/revocation/v1/revocation.pb.h"
#include "xds/publisher.h"
#include "xds/server.h"

namespace meshid::revocation {

class RevocationDistributionServer {
 public:
  // Callers must authenticate with `authenticate` (null: anyone who can connect). Metrics:
  // meshid_revocation_streams, _pushes_total, _acks_total, _nacks_total, _stream_errors_total.
  // `metrics` must outlive the server.
  static std::unique_ptr<RevocationDistributionServer> Create(xds::Authenticator authenticate, MetricsRegistry& metrics,
                                                              LoggerPtr logger);
  ~RevocationDistributionServer();

  // Makes `list` the one every stream gets (unless it is the version and bytes already served).
  absl::Status Publish(const meshid::revocation::v1::RevocationList& list);

  // Register with a grpc::ServerBuilder; the grpc::Server must be shut down before this goes.
  grpc::Service* service() { return service_.get(); }
  // Ends every open stream with UNAVAILABLE (agents reconnect, e.g. to another replica).
  void Shutdown() { streams_->Shutdown(); }
  int64_t open_streams() const { return streams_->open_streams(); }

 private:
  RevocationDistributionServer() = default;

  OpenSslRandom random_;
  xds::ResourcePublisher publisher_{{"crl"}};
  std::unique_ptr<xds::StreamServer> streams_;
  std::unique_ptr<grpc::Service> service_;
};

}  // namespace meshid::revocation
