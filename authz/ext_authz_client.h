// CUSTOM AuthorizationPolicies delegate to an external authorizer (Istio's meshConfig
// extensionProviders, envoyExtAuthzGrpc). This provider speaks Envoy's ext_authz v3 gRPC API to
// named servers: a matching CUSTOM policy sends the request attributes there and follows its
// answer. Unknown provider names, transport errors and timeouts are evaluation errors, which
// callers turn into denials (fail closed, like Envoy with failure_mode_allow: false).
#pragma once

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "envoy/service/auth/v3/external_auth.grpc.pb.h"
#include "rbac/engine.h"

namespace meshid::authz {

// The CheckRequest Envoy would send for these attributes.
envoy::service::auth::v3::CheckRequest CheckRequestFromAttributes(const rbac::RequestAttributes& attrs);

class GrpcExtAuthzProvider final : public rbac::CustomAuthorizer {
 public:
  // `providers` maps provider names to gRPC targets ("host:port" or "unix:PATH"); plaintext.
  // InvalidArgument for an empty name or target.
  static absl::StatusOr<std::shared_ptr<GrpcExtAuthzProvider>> Create(
      const std::map<std::string, std::string>& providers, absl::Duration timeout = absl::Seconds(5));

  absl::StatusOr<bool> Check(absl::string_view provider, const rbac::RequestAttributes& attrs) const override;

 private:
  GrpcExtAuthzProvider() = default;
  std::map<std::string, std::unique_ptr<envoy::service::auth::v3::Authorization::Stub>, std::less<>> stubs_;
  absl::Duration timeout_;
};

}  // namespace meshid::authz
