#include "nodeagent/server_upstream.h"

#include <openssl/crypto.h>

#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/net.h"
#include "common/secret.h"
#include "common/status_macros.h"
#include "envoy/extensions/transport_sockets/tls/v3/secret.pb.h"
#include "sds/resource.h"

namespace meshid {
namespace {

// The agent's own certificate and key, as the cache publishes them.
struct Svid {
  std::string chain_pem;
  SecretString key_pem;
};

absl::StatusOr<Svid> SvidFromResource(const xds::Resource& resource) {
  envoy::extensions::transport_sockets::tls::v3::Secret secret;
  absl::string_view bytes = resource.body.view();
  if (!secret.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())) || !secret.has_tls_certificate()) {
    return absl::InternalError("the agent's certificate resource is not a tls_certificate");
  }
  auto* tls = secret.mutable_tls_certificate();
  Svid svid{tls->certificate_chain().inline_bytes(), SecretString(tls->private_key().inline_bytes())};
  std::string* key = tls->mutable_private_key()->mutable_inline_bytes();
  if (!key->empty()) OPENSSL_cleanse(key->data(), key->size());
  return svid;
}

}  // namespace

ServerUpstream::ServerUpstream(ServerUpstreamOptions options, TokenSource& token)
    : options_(std::move(options)), token_(token) {}

absl::StatusOr<std::unique_ptr<ServerUpstream>> ServerUpstream::Create(ServerUpstreamOptions options,
                                                                       xds::ResourceProvider& secrets,
                                                                       TokenSource& token) {
  if (options.server_address.empty()) return absl::InvalidArgumentError("--policy-server: required");
  if (!options.insecure_plaintext && options.ca_root_file.empty()) {
    return absl::InvalidArgumentError("--ca-root: required");
  }
  auto upstream = std::unique_ptr<ServerUpstream>(new ServerUpstream(std::move(options), token));
  ServerUpstream* raw = upstream.get();
  upstream->watcher_ =
      std::make_shared<xds::ForwardingWatcher>([raw](const xds::ResourceUpdate& update) { raw->OnSvid(update); });
  auto subscription = secrets.Subscribe(xds::StreamCaller{}, upstream->watcher_);
  if (!subscription.ok()) return subscription.status();
  upstream->subscription_ = std::move(*subscription);
  auto current = upstream->subscription_->SetNames({std::string(sds::kWorkloadResourceName)});
  if (!current.ok()) return current.status();
  for (const auto& update : *current) upstream->OnSvid(update);
  return upstream;
}

ServerUpstream::~ServerUpstream() {
  if (watcher_ != nullptr) watcher_->Detach();
  subscription_.reset();
}

std::string ServerUpstream::Describe() const { return absl::StrCat("meshid server at ", options_.server_address); }

void ServerUpstream::OnSvid(const xds::ResourceUpdate& update) {
  if (update.name != sds::kWorkloadResourceName || update.resource == nullptr) return;
  bool first_after_token = false;
  {
    absl::MutexLock lock(&mu_);
    if (svid_ != nullptr && svid_->generation >= update.resource->generation) return;
    first_after_token = svid_ == nullptr && using_token_;
    svid_ = update.resource;
  }
  CredentialsChanged();
  // The first certificate: connect with it now rather than keep the token's connection or wait
  // out a backoff.
  if (first_after_token) NotifyListeners();
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> ServerUpstream::MakeChannel() {
  MESHID_ASSIGN_OR_RETURN(ServerTarget target, ParseServerTarget(options_.server_address));
  grpc::ChannelArguments args = xds::StreamChannelArguments(options_.max_message_bytes);
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (options_.insecure_plaintext) {
    creds = grpc::InsecureChannelCredentials();
  } else {
    auto root = ReadTrustBundleFiles(options_.ca_root_file, options_.pushed_bundle_file);
    if (!root.ok()) return absl::FailedPreconditionError(absl::StrCat("--ca-root: ", root.status().message()));
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = *root;
    xds::ResourcePtr svid_resource;
    {
      absl::MutexLock lock(&mu_);
      svid_resource = svid_;
      using_token_ = svid_resource == nullptr;
    }
    if (svid_resource != nullptr) {
      auto svid = SvidFromResource(*svid_resource);
      if (!svid.ok()) return svid.status();
      ssl.pem_cert_chain = svid->chain_pem;
      ssl.pem_private_key = std::string(svid->key_pem.view());
    }
    creds = grpc::SslCredentials(ssl);
    if (!ssl.pem_private_key.empty()) OPENSSL_cleanse(ssl.pem_private_key.data(), ssl.pem_private_key.size());
    const std::string& name = options_.server_name.empty() ? target.tls_name : options_.server_name;
    if (!name.empty()) args.SetSslTargetNameOverride(name);
  }
  return grpc::CreateCustomChannel(target.target, creds, args);
}

absl::StatusOr<xds::CallMetadata> ServerUpstream::Metadata() {
  // The token goes along only when there is no certificate yet (or without TLS).
  bool use_token = options_.insecure_plaintext;
  {
    absl::MutexLock lock(&mu_);
    use_token = use_token || using_token_;
  }
  xds::CallMetadata metadata;
  if (!use_token) return metadata;
  auto token = token_.Token();
  if (!token.ok()) return token.status();
  metadata.emplace_back("authorization", absl::StrCat("Bearer ", token->view()));
  return metadata;
}

}  // namespace meshid
