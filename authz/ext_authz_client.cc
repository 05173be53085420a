#include "authz/ext_authz_client.h"

#include <grpcpp/grpcpp.h>

#include <chrono>

#include "absl/strings/str_cat.h"

namespace meshid::authz {

namespace v3 = envoy::service::auth::v3;

v3::CheckRequest CheckRequestFromAttributes(const rbac::RequestAttributes& a) {
  v3::CheckRequest req;
  auto* attrs = req.mutable_attributes();
  auto* src = attrs->mutable_source();
  if (!a.source_principal.empty()) src->set_principal(absl::StrCat("spiffe://", a.source_principal));
  if (a.source_ip) src->mutable_address()->mutable_socket_address()->set_address(a.source_ip->ToString());
  auto* dst = attrs->mutable_destination();
  dst->set_service(a.destination_service);
  for (const auto& [k, v] : a.destination_labels) (*dst->mutable_labels())[k] = v;
  auto* dst_addr = dst->mutable_address()->mutable_socket_address();
  if (a.destination_ip) dst_addr->set_address(a.destination_ip->ToString());
  dst_addr->set_port_value(a.destination_port);
  (*attrs->mutable_context_extensions())["service"] = a.destination_service;
  (*attrs->mutable_context_extensions())["namespace"] = a.destination_namespace;
  if (!a.sni.empty()) attrs->mutable_tls_session()->set_sni(a.sni);
  if (a.protocol == rbac::Protocol::kHttp) {
    auto* http = attrs->mutable_request()->mutable_http();
    http->set_method(a.method);
    http->set_path(a.query.empty() ? a.path : absl::StrCat(a.path, "?", a.query));
    http->set_host(a.host);
    http->set_query(a.query);
    for (const auto& [k, v] : a.headers) (*http->mutable_headers())[k] = v;
  }
  return req;
}

absl::StatusOr<std::shared_ptr<GrpcExtAuthzProvider>> GrpcExtAuthzProvider::Create(
    const std::map<std::string, std::string>& providers, absl::Duration timeout) {
  std::shared_ptr<GrpcExtAuthzProvider> p(new GrpcExtAuthzProvider());
  p->timeout_ = timeout;
  for (const auto& [name, target] : providers) {
    if (name.empty() || target.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("ext_authz provider \"", name, "\" needs a name and a target"));
    }
    auto channel = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
    p->stubs_[name] = v3::Authorization::NewStub(channel);
  }
  return p;
}

absl::StatusOr<bool> GrpcExtAuthzProvider::Check(absl::string_view provider,
                                                 const rbac::RequestAttributes& attrs) const {
  auto it = stubs_.find(provider);
  if (it == stubs_.end()) {
    return absl::FailedPreconditionError(absl::StrCat("no ext_authz provider named \"", provider, "\" is configured"));
  }
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout_));
  v3::CheckResponse res;
  grpc::Status st = it->second->Check(&ctx, CheckRequestFromAttributes(attrs), &res);
  if (!st.ok()) {
    return absl::UnavailableError(absl::StrCat("ext_authz provider \"", provider, "\": ", st.error_message()));
  }
  return res.status().code() == grpc::StatusCode::OK;
}

}  // namespace meshid::authz
