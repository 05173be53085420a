#include "trustbundle/server.h"

#include "trustbundle/wire.h"

namespace meshid::trustbundle {

std::unique_ptr<TrustBundleDistributionServer> TrustBundleDistributionServer::Create(xds::Authenticator authenticate,
                                                                                     MetricsRegistry& metrics,
                                                                                     LoggerPtr logger) {
  std::unique_ptr<TrustBundleDistributionServer> server(new TrustBundleDistributionServer());
  xds::StreamServerOptions options;
  options.sotw_rpc = "StreamTrustBundles";
  options.metrics_prefix = "meshid_trustbundle";
  options.subject = "trust bundle";
  options.authenticate = std::move(authenticate);
  server->streams_ = xds::StreamServer::Create(TrustBundleType(), std::move(options), server->publisher_, metrics,
                                               server->random_, std::move(logger));
  server->service_ = xds::MakeSotwService(TrustBundleType(), *server->streams_);
  return server;
}

TrustBundleDistributionServer::~TrustBundleDistributionServer() = default;

absl::Status TrustBundleDistributionServer::Publish(const meshid::trustbundle::v1::TrustBundle& bundle) {
  if (auto s = ValidateTrustBundle(bundle); !s.ok()) return s;
  xds::Resource resource = TrustBundleResource(bundle);
  if (xds::ResourcePtr current = publisher_.Current(kTrustBundleName);
      current != nullptr && current->version == resource.version) {
    return absl::OkStatus();
  }
  return publisher_.Publish(std::move(resource)).status();
}

}  // namespace meshid::trustbundle
