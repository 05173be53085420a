#include "revocation/server.h"

#include "revocation/wire.h"

namespace meshid::revocation {

std::unique_ptr<RevocationDistributionServer> RevocationDistributionServer::Create(xds::Authenticator authenticate,
                                                                                   MetricsRegistry& metrics,
                                                                                   LoggerPtr logger) {
  std::unique_ptr<RevocationDistributionServer> server(new RevocationDistributionServer());
  xds::StreamServerOptions options;
  options.sotw_rpc = "StreamRevocations";
  options.metrics_prefix = "meshid_revocation";
  options.subject = "revocation";
  options.authenticate = std::move(authenticate);
  server->streams_ = xds::StreamServer::Create(RevocationListType(), std::move(options), server->publisher_, metrics,
                                               server->random_, std::move(logger));
  server->service_ = xds::MakeSotwService(RevocationListType(), *server->streams_);
  return server;
}

RevocationDistributionServer::~RevocationDistributionServer() = default;

absl::Status RevocationDistributionServer::Publish(const meshid::revocation::v1::RevocationList& list) {
  return publisher_.Publish(RevocationListResource(list)).status();
}

}  // namespace meshid::revocation
