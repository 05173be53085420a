// Envoy's external authorization API (envoy.service.auth.v3.Authorization/Check) backed by the
// policy engine, so a real Envoy (http or network ext_authz filter) can ask meshid.
//
// Mapping of the AttributeContext onto a request:
//  * destination service: context_extensions["service"], else the server's default
//    (--service), else attributes.destination.service; namespace from
//    context_extensions["namespace"], the default, or the service FQDN;
//  * destination labels: the defaults plus attributes.destination.labels;
//  * destination.address → destination ip/port, destination.principal → the workload identity;
//  * source.principal (from the client certificate) → peer identity; source.certificate or a
//    principal → mTLS; source.address → source ip; tls_session.sni → SNI;
//  * request.http (method, path with query, host, headers or header_map) → HTTP; without an
//    HTTP request (the network filter) → TCP.
// Allowed: status OK with ok_response. Denied: PERMISSION_DENIED (403) or UNAUTHENTICATED
// (401) with denied_response {status, body}. An evaluation error is a 403 denial (fail
// closed). dynamic_metadata carries policy, rule, reason and the authenticated principals.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "authz/policy_engine.h"
#include "common/logging.h"
#include "common/metrics.h"
#include "envoy/service/auth/v3/external_auth.grpc.pb.h"

namespace meshid::authz {

struct ExtAuthzDefaults {
  std::string service;  // destination service FQDN when the request names none
  std::string namespace_;
  std::map<std::string, std::string> labels;
  std::string principal;  // the workload's own SPIFFE ID
};

// Translates a CheckRequest. InvalidArgument if no destination service can be determined.
absl::StatusOr<RequestInput> RequestFromCheck(const envoy::service::auth::v3::CheckRequest& request,
                                              const ExtAuthzDefaults& defaults);
// Fills a CheckResponse from a decision (or, for an evaluation error, a fail-closed denial).
void FillCheckResponse(const absl::StatusOr<Decision>& decision, envoy::service::auth::v3::CheckResponse* response);

class ExtAuthzService final : public envoy::service::auth::v3::Authorization::Service {
 public:
  using EngineSource = std::function<std::shared_ptr<const PolicyEngine>()>;
  // `engine` is asked for the current engine on every call (hot reload). Decisions are counted
  // in `metrics` (meshid_authz_decisions_total), which must outlive the service; `logger` is
  // not null. Check() may be called from any gRPC thread.
  ExtAuthzService(EngineSource engine, ExtAuthzDefaults defaults, MetricsRegistry& metrics, LoggerPtr logger);

  grpc::Status Check(grpc::ServerContext* context, const envoy::service::auth::v3::CheckRequest* request,
                     envoy::service::auth::v3::CheckResponse* response) override;

 private:
  EngineSource engine_;
  ExtAuthzDefaults defaults_;
  LoggerPtr logger_;
  Counter& allowed_;
  Counter& denied_;
  Counter& errors_;
};

}  // namespace meshid::authz
