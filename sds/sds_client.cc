#include "sds/sds_client.h"

#include <grpcpp/grpcpp.h>
#include <openssl/crypto.h>

#include <algorithm>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/files.h"
#include "envoy/service/secret/v3/sds.grpc.pb.h"
#include "sds/resource.h"

namespace meshid::sds {
namespace {

using envoy::extensions::transport_sockets::tls::v3::Secret;
using envoy::service::discovery::v3::DiscoveryRequest;
using envoy::service::discovery::v3::DiscoveryResponse;
using envoy::service::secret::v3::SecretDiscoveryService;

void Wipe(std::string* s) {
  if (!s->empty()) OPENSSL_cleanse(s->data(), s->size());
}

// Our copies of private keys are wiped once the handler has taken what it needs.
void WipeSecret(Secret& secret) {
  if (secret.has_tls_certificate()) {
    auto* key = secret.mutable_tls_certificate()->mutable_private_key();
    if (key->has_inline_bytes()) Wipe(key->mutable_inline_bytes());
    if (key->has_inline_string()) Wipe(key->mutable_inline_string());
  }
  secret.Clear();
}

void WipeResponse(DiscoveryResponse& response) {
  for (auto& any : *response.mutable_resources()) Wipe(any.mutable_value());
  response.Clear();
}

class SdsClientImpl final : public SdsClient {
 public:
  SdsClientImpl(SdsClientOptions options, SecretHandler handler, RandomSource& random, LoggerPtr logger,
                MetricsRegistry* metrics)
      : options_(std::move(options)), handler_(std::move(handler)), random_(random), logger_(std::move(logger)) {
    channel_ = grpc::CreateChannel(options_.target, grpc::InsecureChannelCredentials());
    stub_ = SecretDiscoveryService::NewStub(channel_);
    for (const auto& name : options_.resource_names) {
      auto s = std::make_unique<Stream>();
      s->name = name;
      if (metrics != nullptr) {
        s->acks =
            &metrics->AddCounter("meshid_sds_client_updates_total", "SDS responses applied (ack) or refused (nack)",
                                 {{"resource", name}, {"result", "ack"}});
        s->nacks =
            &metrics->AddCounter("meshid_sds_client_updates_total", "SDS responses applied (ack) or refused (nack)",
                                 {{"resource", name}, {"result", "nack"}});
        s->failures = &metrics->AddCounter("meshid_sds_client_stream_failures_total",
                                           "SDS streams that ended or could not be opened", {{"resource", name}});
      }
      streams_.push_back(std::move(s));
    }
    for (auto& s : streams_) {
      Stream* stream = s.get();
      stream->thread = std::thread([this, stream] { Run(*stream); });
    }
  }

  ~SdsClientImpl() override {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
      for (auto& s : streams_) {
        if (s->context != nullptr) s->context->TryCancel();
      }
    }
    for (auto& s : streams_) {
      if (s->thread.joinable()) s->thread.join();
    }
  }

 private:
  struct Stream {
    std::string name;
    std::thread thread;
    grpc::ClientContext* context = nullptr;  // guarded by mu_: the live stream, for cancelling
    std::string accepted_version;            // only touched by the stream's thread
    Counter* acks = nullptr;
    Counter* nacks = nullptr;
    Counter* failures = nullptr;
  };

  DiscoveryRequest BaseRequest(const Stream& s) const {
    DiscoveryRequest r;
    r.mutable_node()->set_id(options_.node_id);
    r.mutable_node()->set_cluster(options_.node_cluster);
    r.mutable_node()->set_user_agent_name("meshid");
    r.add_resource_names(s.name);
    r.set_type_url(std::string(kSecretTypeUrl));
    r.set_version_info(s.accepted_version);
    return r;
  }

  // Checks the response as Envoy's SdsApi does and hands the secret to the handler.
  absl::Status Apply(Stream& s, DiscoveryResponse& response) {
    if (response.type_url() != kSecretTypeUrl) {
      return absl::InvalidArgumentError(absl::StrCat("unexpected type URL \"", response.type_url(), "\""));
    }
    if (response.resources_size() == 0) {
      return absl::InvalidArgumentError(absl::StrCat("Missing SDS resources for ", s.name, " in onConfigUpdate()"));
    }
    if (response.resources_size() != 1) {
      return absl::InvalidArgumentError(absl::StrCat("Unexpected SDS secrets length: ", response.resources_size()));
    }
    Secret secret;
    if (!response.resources(0).UnpackTo(&secret)) {
      return absl::InvalidArgumentError("the resource is not an envoy.extensions.transport_sockets.tls.v3.Secret");
    }
    absl::Status status;
    if (secret.name() != s.name) {
      status =
          absl::InvalidArgumentError(absl::StrCat("Unexpected SDS secret (expecting ", s.name, "): ", secret.name()));
    } else {
      status = handler_(secret, response.version_info());
    }
    WipeSecret(secret);
    return status;
  }

  // One stream's life; returns true if it got at least one response (the backoff restarts).
  bool RunOnce(Stream& s) {
    grpc::ClientContext context;
    if (!options_.token_file.empty()) {
      auto token = ReadFile(options_.token_file, 64 << 10);
      if (!token.ok()) {
        logger_->error("sds {}: cannot read --token-file: {}", s.name, token.status().message());
        return false;
      }
      context.AddMetadata("authorization", absl::StrCat("Bearer ", absl::StripAsciiWhitespace(*token)));
    }
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return false;
      s.context = &context;
    }
    auto stream = stub_->StreamSecrets(&context);
    bool got_response = false;
    if (stream->Write(BaseRequest(s))) {
      DiscoveryResponse response;
      while (stream->Read(&response)) {
        got_response = true;
        absl::Status applied = Apply(s, response);
        DiscoveryRequest next = BaseRequest(s);
        next.set_response_nonce(response.nonce());
        if (applied.ok()) {
          s.accepted_version = response.version_info();
          next.set_version_info(s.accepted_version);
          if (s.acks) s.acks->Increment();
          logger_->debug("sds {}: applied version {}", s.name, s.accepted_version);
        } else {
          next.mutable_error_detail()->set_code(grpc::StatusCode::INVALID_ARGUMENT);
          next.mutable_error_detail()->set_message(std::string(applied.message()));
          if (s.nacks) s.nacks->Increment();
          logger_->warn("sds {}: rejected version {} (keeping {}): {}", s.name, response.version_info(),
                        s.accepted_version.empty() ? "none" : s.accepted_version, applied.message());
        }
        WipeResponse(response);
        if (!stream->Write(next)) break;
      }
    }
    stream->WritesDone();
    grpc::Status status = stream->Finish();
    {
      absl::MutexLock lock(&mu_);
      s.context = nullptr;
      if (stopping_) return got_response;
    }
    if (s.failures) s.failures->Increment();
    logger_->warn("sds {}: stream to {} ended: {} {}", s.name, options_.target, static_cast<int>(status.error_code()),
                  status.error_message());
    return got_response;
  }

  void Run(Stream& s) {
    absl::Duration ceiling = options_.initial_backoff;
    while (true) {
      if (RunOnce(s)) ceiling = options_.initial_backoff;
      // Envoy's JitteredExponentialBackOffStrategy: uniform in [0, ceiling), ceiling doubling.
      const absl::Duration delay = ceiling * random_.Uniform();
      ceiling = std::min(ceiling * 2, options_.max_backoff);
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), delay)) return;
    }
  }

  const SdsClientOptions options_;
  const SecretHandler handler_;
  RandomSource& random_;
  LoggerPtr logger_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<SecretDiscoveryService::Stub> stub_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::unique_ptr<Stream>> streams_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<SdsClient>> SdsClient::Create(SdsClientOptions options, SecretHandler handler,
                                                             RandomSource& random, LoggerPtr logger,
                                                             MetricsRegistry* metrics) {
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
  return std::unique_ptr<SdsClient>(
      new SdsClientImpl(std::move(options), std::move(handler), random, std::move(logger), metrics));
}

}  // namespace meshid::sds
