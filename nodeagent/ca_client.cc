#include "nodeagent/ca_client.h"

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/net.h"
#include "common/status_macros.h"
#include "istio/security/v1alpha1/ca.grpc.pb.h"

namespace meshid {
namespace {

class GrpcCaClient final : public CaClient {
 public:
  GrpcCaClient(std::shared_ptr<grpc::Channel> channel, absl::Duration timeout)
      : stub_(istio::v1::auth::IstioCertificateService::NewStub(channel)), timeout_(timeout) {}

  absl::StatusOr<std::vector<std::string>> CreateCertificate(absl::string_view csr_pem, absl::string_view bearer_token,
                                                             absl::Duration ttl,
                                                             absl::string_view impersonated_identity) override {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + timeout_));
    if (!bearer_token.empty()) context.AddMetadata("authorization", absl::StrCat("Bearer ", bearer_token));
    istio::v1::auth::IstioCertificateRequest request;
    request.set_csr(std::string(csr_pem));
    request.set_validity_duration(absl::ToInt64Seconds(ttl));
    if (!impersonated_identity.empty()) {
      (*request.mutable_metadata()->mutable_fields())["ImpersonatedIdentity"].set_string_value(
          std::string(impersonated_identity));
    }
    istio::v1::auth::IstioCertificateResponse response;
    grpc::Status status = stub_->CreateCertificate(&context, request, &response);
    if (!status.ok()) return ToAbslStatus(status);
    if (response.cert_chain_size() <= 1) {
      return absl::InternalError("CA returned an invalid certificate chain (fewer than two certificates)");
    }
    return std::vector<std::string>(response.cert_chain().begin(), response.cert_chain().end());
  }

 private:
  std::unique_ptr<istio::v1::auth::IstioCertificateService::Stub> stub_;
  absl::Duration timeout_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<CaClient>> CaClient::Create(const CaClientOptions& options) {
  if (options.address.empty()) return absl::InvalidArgumentError("CA address is empty");
  MESHID_ASSIGN_OR_RETURN(ServerTarget target, ParseServerTarget(options.address));
  std::shared_ptr<grpc::ChannelCredentials> creds;
  grpc::ChannelArguments args;
  if (options.insecure_plaintext) {
    creds = grpc::InsecureChannelCredentials();
  } else {
    if (options.root_cert_pem.empty()) return absl::InvalidArgumentError("CA root certificate is empty");
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = options.root_cert_pem;
    ssl.pem_cert_chain = options.client_cert_chain_pem;
    ssl.pem_private_key = options.client_key_pem;
    creds = grpc::SslCredentials(ssl);
    const std::string& name = options.tls_server_name.empty() ? target.tls_name : options.tls_server_name;
    if (!name.empty()) args.SetSslTargetNameOverride(name);
  }
  auto channel = grpc::CreateCustomChannel(target.target, creds, args);
  return std::make_unique<GrpcCaClient>(std::move(channel), options.timeout);
}

}  // namespace meshid
