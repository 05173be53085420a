#include "authz/ext_authz_service.h"

#include "absl/strings/str_cat.h"
#include "google/protobuf/struct.pb.h"

namespace meshid::authz {

namespace v3 = envoy::service::auth::v3;

absl::StatusOr<RequestInput> RequestFromCheck(const v3::CheckRequest& request, const ExtAuthzDefaults& defaults) {
  const auto& attrs = request.attributes();
  const auto& ext = attrs.context_extensions();
  RequestInput in;
  auto ext_or = [&](const char* key, const std::string& fallback) {
    auto it = ext.find(key);
    return it != ext.end() && !it->second.empty() ? it->second : fallback;
  };
  in.destination_service =
      ext_or("service", defaults.service.empty() ? attrs.destination().service() : defaults.service);
  if (in.destination_service.empty()) {
    return absl::InvalidArgumentError(
        "no destination service: set context_extensions[\"service\"] in Envoy or --service on meshid authz serve");
  }
  in.destination_namespace = ext_or("namespace", defaults.namespace_);
  in.destination_labels = defaults.labels;
  for (const auto& [k, v] : attrs.destination().labels()) in.destination_labels[k] = v;
  if (attrs.destination().address().has_socket_address()) {
    const auto& sa = attrs.destination().address().socket_address();
    in.destination_ip = sa.address();
    in.destination_port = sa.port_value();
  }
  in.destination_principal =
      attrs.destination().principal().empty() ? defaults.principal : attrs.destination().principal();
  in.source_principal = attrs.source().principal();
  in.mtls = !attrs.source().principal().empty() || !attrs.source().certificate().empty();
  if (attrs.source().address().has_socket_address()) in.source_ip = attrs.source().address().socket_address().address();
  in.sni = attrs.tls_session().sni();
  const auto& http = attrs.request().http();
  if (!attrs.request().has_http() || http.method().empty()) {
    in.protocol = rbac::Protocol::kTcp;
    return in;
  }
  in.protocol = rbac::Protocol::kHttp;
  in.method = http.method();
  in.path = http.path();
  in.host = http.host();
  for (const auto& [k, v] : http.headers()) in.headers.emplace_back(k, v);
  for (const auto& h : http.header_map().headers()) {
    in.headers.emplace_back(h.key(), h.raw_value().empty() ? h.value() : h.raw_value());
  }
  return in;
}

void FillCheckResponse(const absl::StatusOr<Decision>& decision, v3::CheckResponse* response) {
  auto* meta = response->mutable_dynamic_metadata()->mutable_fields();
  auto set = [&](const char* key, const std::string& value) { (*meta)[key].set_string_value(value); };
  if (!decision.ok()) {
    response->mutable_status()->set_code(grpc::StatusCode::PERMISSION_DENIED);
    response->mutable_status()->set_message(std::string(decision.status().message()));
    auto* denied = response->mutable_denied_response();
    denied->mutable_status()->set_code(envoy::type::v3::Forbidden);
    denied->set_body("RBAC: access denied");
    set("error", std::string(decision.status().message()));
    return;
  }
  const Decision& d = *decision;
  set("policy", d.policy);
  set("rule", d.rule);
  set("reason", d.reason);
  if (!d.source_principal.empty()) set("source.principal", d.source_principal);
  if (!d.request_principal.empty()) set("request.auth.principal", d.request_principal);
  if (d.shadow) {
    set("shadow_effective_policy_id", d.shadow->policy);
    set("shadow_engine_result", d.shadow->allowed ? "allowed" : "denied");
  }
  if (d.allowed) {
    response->mutable_status()->set_code(grpc::StatusCode::OK);
    response->mutable_ok_response();
    return;
  }
  const bool unauthenticated = d.status == 401;
  response->mutable_status()->set_code(unauthenticated ? grpc::StatusCode::UNAUTHENTICATED
                                                       : grpc::StatusCode::PERMISSION_DENIED);
  response->mutable_status()->set_message(d.reason);
  auto* denied = response->mutable_denied_response();
  denied->mutable_status()->set_code(unauthenticated ? envoy::type::v3::Unauthorized : envoy::type::v3::Forbidden);
  denied->set_body(unauthenticated ? d.reason : "RBAC: access denied");
}

namespace {
constexpr char kDecisionsMetric[] = "meshid_authz_decisions_total";
constexpr char kDecisionsHelp[] = "ext_authz decisions by result";
}  // namespace

ExtAuthzService::ExtAuthzService(EngineSource engine, ExtAuthzDefaults defaults, MetricsRegistry& metrics,
                                 LoggerPtr logger)
    : engine_(std::move(engine)),
      defaults_(std::move(defaults)),
      logger_(std::move(logger)),
      allowed_(metrics.AddCounter(kDecisionsMetric, kDecisionsHelp, {{"result", "allowed"}})),
      denied_(metrics.AddCounter(kDecisionsMetric, kDecisionsHelp, {{"result", "denied"}})),
      errors_(metrics.AddCounter(kDecisionsMetric, kDecisionsHelp, {{"result", "error"}})) {}

grpc::Status ExtAuthzService::Check(grpc::ServerContext*, const v3::CheckRequest* request,
                                    v3::CheckResponse* response) {
  absl::StatusOr<Decision> decision;
  auto engine = engine_();
  if (!engine) {
    decision = absl::UnavailableError("no policy engine loaded");
  } else {
    auto in = RequestFromCheck(*request, defaults_);
    decision = in.ok() ? engine->Check(*in) : absl::StatusOr<Decision>(in.status());
  }
  if (!decision.ok()) {
    logger_->warn("ext_authz: request denied, could not evaluate: {}", decision.status().message());
    errors_.Increment();
  } else if (decision->allowed) {
    allowed_.Increment();
  } else {
    logger_->debug("ext_authz: denied ({}): {}", decision->status, decision->reason);
    denied_.Increment();
  }
  FillCheckResponse(decision, response);
  return grpc::Status::OK;
}

}  // namespace meshid::authz
