// Serving the trust bundle stream (meshid.trustbundle.v1.TrustBundleDistributionService) from
// `meshid server` to the agents: the bundle the server publishes (its CA's roots; during a staged
// rotation the old roots and the new one) lives in an xds::ResourcePublisher, and every agent's
// stream is an xds::StreamServer stream of TrustBundleType(). Nothing of the stream machinery is
// written here.
//
// Threading: thread-safe.
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "common/random.h"
#include "meshid/trustbundle/v1/trustbundle.pb.h"
#include "xds/publisher.h"
#include "xds/server.h"

namespace meshid::trustbundle {

class TrustBundleDistributionServer {
 public:
  // Callers must authenticate with `authenticate` (null: anyone who can connect). Metrics:
  // meshid_trustbundle_streams, _pushes_total, _acks_total, _nacks_total, _stream_errors_total.
  // `metrics` must outlive the server.
  static std::unique_ptr<TrustBundleDistributionServer> Create(xds::Authenticator authenticate,
                                                               MetricsRegistry& metrics, LoggerPtr logger);
  ~TrustBundleDistributionServer();

  // Makes `bundle` the one every stream gets. A bundle of the version already served (the same
  // roots: the version is a digest of the fingerprint) changes nothing, so a server may publish
  // on every check of its CA. InvalidArgument, naming the field, for a bundle that is not
  // canonical (wire.h, ValidateTrustBundle: build it with MakeTrustBundle); nothing is published
  // then.
  absl::Status Publish(const meshid::trustbundle::v1::TrustBundle& bundle);

  // Register with a grpc::ServerBuilder; the grpc::Server must be shut down before this goes.
  grpc::Service* service() { return service_.get(); }
  // Ends every open stream with UNAVAILABLE (agents reconnect, e.g. to another replica).
  void Shutdown() { streams_->Shutdown(); }
  int64_t open_streams() const { return streams_->open_streams(); }

 private:
  TrustBundleDistributionServer() = default;

  OpenSslRandom random_;
  xds::ResourcePublisher publisher_{{"bundle"}};
  std::unique_ptr<xds::StreamServer> streams_;
  std::unique_ptr<grpc::Service> service_;
};

}  // namespace meshid::trustbundle
