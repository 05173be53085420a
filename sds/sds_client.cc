#include "sds/sds_client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "sds/resource.h"
#include "xds/client.h"
#include "xds/upstream.h"
#include "xds/wipe.h"

namespace meshid::sds {
namespace {

using envoy::extensions::transport_sockets::tls::v3::Secret;
using envoy::service::discovery::v3::DiscoveryResponse;

// Our copies of private keys are wiped once the handler has taken what it needs.
void WipeSecret(Secret& secret) {
  if (secret.has_tls_certificate()) {
    auto* key = secret.mutable_tls_certificate()->mutable_private_key();
    if (key->has_inline_bytes()) xds::WipeString(key->mutable_inline_bytes());
    if (key->has_inline_string()) xds::WipeString(key->mutable_inline_string());
  }
  secret.Clear();
}

// Envoy's model: every secret's stream on the one channel to the agent; the workload token, if
// any, read again for every stream (projected tokens rotate).
class AgentUpstream final : public xds::UpstreamSource {
 public:
  AgentUpstream(const std::string& target, std::string token_file)
      : target_(target),
        token_file_(std::move(token_file)),
        channel_(grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), ChannelArguments())) {}

  absl::StatusOr<xds::CallMetadata> Metadata() override {
    xds::CallMetadata metadata;
    if (token_file_.empty()) return metadata;
    auto token = ReadFile(token_file_, 64 << 10);
    if (!token.ok()) {
      return absl::Status(token.status().code(), absl::StrCat("cannot read --token-file: ", token.status().message()));
    }
    metadata.emplace_back("authorization", absl::StrCat("Bearer ", absl::StripAsciiWhitespace(*token)));
    return metadata;
  }
  std::string Describe() const override { return target_; }

 private:
  absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel() override { return channel_; }

  // ROOTCA may carry a CRL: 100,000 revocations are about 7 MB of PEM, beyond gRPC's 4 MiB.
  static grpc::ChannelArguments ChannelArguments() {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(80 << 20);
    return args;
  }

  const std::string target_;
  const std::string token_file_;
  const std::shared_ptr<grpc::Channel> channel_;
};

// What Envoy's SdsApi checks of a response before applying its secret.
absl::Status ApplyResponse(const std::string& name, const SecretHandler& handler, const DiscoveryResponse& response) {
  if (response.type_url() != kSecretTypeUrl) {
    return absl::InvalidArgumentError(absl::StrCat("unexpected type URL \"", response.type_url(), "\""));
  }
  if (response.resources_size() == 0) {
    return absl::InvalidArgumentError(absl::StrCat("Missing SDS resources for ", name, " in onConfigUpdate()"));
  }
  if (response.resources_size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat("Unexpected SDS secrets length: ", response.resources_size()));
  }
  Secret secret;
  if (!response.resources(0).UnpackTo(&secret)) {
    return absl::InvalidArgumentError("the resource is not an envoy.extensions.transport_sockets.tls.v3.Secret");
  }
  absl::Status status;
  if (secret.name() != name) {
    status = absl::InvalidArgumentError(absl::StrCat("Unexpected SDS secret (expecting ", name, "): ", secret.name()));
  } else {
    status = handler(secret, response.version_info());
  }
  WipeSecret(secret);
  // Envoy NACKs every refusal as INVALID_ARGUMENT.
  if (!status.ok() && !absl::IsInvalidArgument(status)) return absl::InvalidArgumentError(status.message());
  return status;
}

class SdsClientImpl final : public SdsClient {
 public:
  explicit SdsClientImpl(const SdsClientOptions& options) : upstream_(options.target, options.token_file) {}

  absl::Status Start(const SdsClientOptions& options, const SecretHandler& handler, RandomSource& random,
                     const LoggerPtr& logger, MetricsRegistry& metrics) {
    envoy::config::core::v3::Node node;
    node.set_id(options.node_id);
    node.set_cluster(options.node_cluster);
    node.set_user_agent_name("meshid");
    for (const auto& name : options.resource_names) {
      Counter& acks =
          metrics.AddCounter("meshid_sds_client_updates_total", "SDS responses applied (ack) or refused (nack)",
                             {{"resource", name}, {"result", "ack"}});
      Counter& nacks =
          metrics.AddCounter("meshid_sds_client_updates_total", "SDS responses applied (ack) or refused (nack)",
                             {{"resource", name}, {"result", "nack"}});
      Counter& failures = metrics.AddCounter("meshid_sds_client_stream_failures_total",
                                             "SDS streams that ended or could not be opened", {{"resource", name}});
      xds::SotwClientOptions client_options;
      client_options.node = node;
      client_options.resource_names = {name};
      client_options.description = absl::StrCat("sds ", name);
      client_options.initial_backoff = options.initial_backoff;
      client_options.max_backoff = options.max_backoff;
      client_options.on_stream_end = [&failures](const absl::Status&) { failures.Increment(); };
      auto apply = [name, handler, &acks, &nacks](const DiscoveryResponse& response) {
        absl::Status status = ApplyResponse(name, handler, response);
        (status.ok() ? acks : nacks).Increment();
        return status;
      };
      auto client =
          xds::SotwClient::Create(SecretType(), std::move(client_options), upstream_, std::move(apply), random, logger);
      if (!client.ok()) return client.status();
      clients_.push_back(std::move(*client));
    }
    return absl::OkStatus();
  }

 private:
  AgentUpstream upstream_;
  std::vector<std::unique_ptr<xds::SotwClient>> clients_;  // destroyed (joined) before the upstream
};

}  // namespace

absl::StatusOr<std::unique_ptr<SdsClient>> SdsClient::Create(SdsClientOptions options, SecretHandler handler,
                                                             RandomSource& random, LoggerPtr logger,
                                                             MetricsRegistry& metrics) {
  if (options.target.empty()) return absl::InvalidArgumentError("the SDS target is empty");
  if (options.resource_names.empty()) return absl::InvalidArgumentError("no SDS resource names to subscribe to");
  std::vector<std::string> names = options.resource_names;
  std::sort(names.begin(), names.end());
  if (std::adjacent_find(names.begin(), names.end()) != names.end()) {
    return absl::InvalidArgumentError("an SDS resource name is listed twice");
  }
  for (const auto& n : names) {
    if (n.empty()) return absl::InvalidArgumentError("an SDS resource name is empty");
  }
  if (!handler) return absl::InvalidArgumentError("no secret handler");
  if (options.initial_backoff <= absl::ZeroDuration() || options.max_backoff < options.initial_backoff) {
    return absl::InvalidArgumentError("backoff must be positive and max_backoff >= initial_backoff");
  }
  auto client = std::make_unique<SdsClientImpl>(options);
  if (auto status = client->Start(options, handler, random, logger, metrics); !status.ok()) return status;
  return std::unique_ptr<SdsClient>(std::move(client));
}

}  // namespace meshid::sds
