#include "policy/client.h"

namespace meshid::policy {

xds::ResponseHandler PolicyResponseHandler(PolicyStreamClient::Apply apply) {
  return [apply = std::move(apply)](const envoy::service::discovery::v3::DiscoveryResponse& response) {
    auto snapshot = DecodePolicyResponse(response);
    if (!snapshot.ok()) return snapshot.status();
    return apply(*snapshot);
  };
}

absl::StatusOr<std::unique_ptr<PolicyStreamClient>> PolicyStreamClient::Create(PolicyStreamClientOptions options,
                                                                               xds::UpstreamSource& upstream,
                                                                               Apply apply, OnChange on_change,
                                                                               RandomSource& random, LoggerPtr logger) {
  xds::SotwClientOptions client_options;
  client_options.node = ToXdsNode(options.node);
  client_options.description = "policy stream";
  client_options.initial_backoff = options.initial_backoff;
  client_options.max_backoff = options.max_backoff;
  client_options.on_change = std::move(on_change);
  auto client = xds::SotwClient::Create(PolicySnapshotType(), std::move(client_options), upstream,
                                        PolicyResponseHandler(std::move(apply)), random, std::move(logger));
  if (!client.ok()) return client.status();
  return std::unique_ptr<PolicyStreamClient>(new PolicyStreamClient(std::move(*client)));
}

PolicyStreamClient::State PolicyStreamClient::state() const {
  xds::SotwClient::State xds = client_->state();
  State state;
  state.connected = xds.connected;
  // Versions on this stream are decimal (a response whose version is not was NACKed as such).
  state.applied_version = ParsePolicyVersion(xds.applied_version).value_or(0);
  state.rejected_version = ParsePolicyVersion(xds.rejected_version).value_or(0);
  state.last_error = xds.last_error;
  return state;
}

}  // namespace meshid::policy
