#include "daemons/sidecar.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "policy/agent_source.h"
#include "policy/file_source.h"
#include "sds/resource.h"

namespace meshid::daemons {
namespace {

using envoy::extensions::transport_sockets::tls::v3::Secret;

// Only inline data sources: the agent sends bytes, never file names.
absl::StatusOr<absl::string_view> Inline(const envoy::config::core::v3::DataSource& ds, absl::string_view field) {
  if (ds.has_inline_bytes()) return absl::string_view(ds.inline_bytes());
  if (ds.has_inline_string()) return absl::string_view(ds.inline_string());
  return absl::InvalidArgumentError(absl::StrCat(field, ": only inline_bytes or inline_string are supported"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Sidecar>> Sidecar::Start(SidecarConfig config, LoggerPtr logger,
                                                        MetricsRegistry& metrics, const Clock& clock) {
  std::unique_ptr<Sidecar> s(new Sidecar());
  const meshproxy::ProxyOptions& po = config.proxy;
  // One node id on both streams to the agent (SDS and policy), so that the agent can report this
  // proxy's CRL (from its ROOTCA ACKs) in the same `meshid status` row as its policy.
  const std::string node_id = policy::DefaultProxyId(po.service, po.namespace_);
  const std::string cluster = absl::StrCat(po.service, ".", po.namespace_);
  if (config.policy_from_agent) {
    policy::AgentPolicySourceOptions agent;
    agent.socket_path = config.sds_socket;
    agent.node = {node_id, po.service, po.namespace_};
    agent.load = config.policy_files.load;
    agent.engine = config.policy_files.engine;
    s->policy_ = std::make_unique<policy::AgentPolicySource>(std::move(agent), clock, logger, metrics);
  } else {
    s->policy_ = std::make_unique<policy::FilePolicySource>(config.policy_files, clock, metrics, logger);
  }
  auto proxy = meshproxy::Proxy::Create(std::move(config.proxy), logger, metrics, clock);
  if (!proxy.ok()) return proxy.status();
  s->proxy_ = std::move(*proxy);
  meshproxy::Proxy* p = s->proxy_.get();

  logger->info("policy from {}", s->policy_->Describe());
  absl::Status started =
      s->policy_->Start([p](const policy::PolicySource::Snapshot& snapshot) { return p->ApplyPolicy(snapshot); });
  if (!started.ok()) return started;

  sds::SdsClientOptions sds_options;
  sds_options.target = absl::StrCat("unix:", config.sds_socket);
  sds_options.resource_names = {std::string(sds::kWorkloadResourceName), std::string(sds::kRootResourceName)};
  sds_options.node_id = node_id;
  sds_options.node_cluster = cluster;
  sds_options.token_file = config.token_file;
  auto handler = [p](const Secret& secret, const std::string& version) -> absl::Status {
    if (secret.name() == sds::kWorkloadResourceName) {
      if (!secret.has_tls_certificate()) return absl::InvalidArgumentError("secret \"default\" has no tls_certificate");
      const auto& tc = secret.tls_certificate();
      auto chain = Inline(tc.certificate_chain(), "certificate_chain");
      if (!chain.ok()) return chain.status();
      auto key = Inline(tc.private_key(), "private_key");
      if (!key.ok()) return key.status();
      auto cert = meshproxy::ParseWorkloadCert(*chain, *key, version);
      if (!cert.ok()) return cert.status();
      return p->ApplyWorkloadCert(std::move(*cert));
    }
    if (!secret.has_validation_context())
      return absl::InvalidArgumentError("secret \"ROOTCA\" has no validation_context");
    auto roots = Inline(secret.validation_context().trusted_ca(), "trusted_ca");
    if (!roots.ok()) return roots.status();
    absl::string_view crl;
    if (secret.validation_context().has_crl()) {
      auto inline_crl = Inline(secret.validation_context().crl(), "crl");
      if (!inline_crl.ok()) return inline_crl.status();
      crl = *inline_crl;
    }
    auto bundle = meshproxy::ParseTrustBundle(*roots, crl, version);
    if (!bundle.ok()) return bundle.status();
    return p->ApplyTrustBundle(std::move(*bundle));
  };
  auto sds = sds::SdsClient::Create(std::move(sds_options), handler, s->random_, logger, metrics);
  if (!sds.ok()) return sds.status();
  s->sds_ = std::move(*sds);

  if (!config.admin_address.empty()) {
    auto stats = [m = &metrics](const std::string&) {
      return HttpReply{200, "text/plain; version=0.0.4; charset=utf-8", m->RenderPrometheus()};
    };
    std::map<std::string, HttpHandler> handlers = {
        {"/stats", stats},
        {"/stats/prometheus", stats},
        {"/ready",
         [p](const std::string&) {
           const std::string waiting = p->WaitingFor();
           if (waiting.empty()) return HttpReply{200, "text/plain; charset=utf-8", "LIVE\n"};
           return HttpReply{503, "text/plain; charset=utf-8",
                            absl::StrCat("INITIALIZING: waiting for ", waiting, "\n")};
         }},
        {"/certs",
         [p](const std::string&) {
           return HttpReply{200, "application/json", p->CertsJson()};
         }},
        {"/policy",
         [p](const std::string&) {
           return HttpReply{200, "application/json", p->PolicyJson()};
         }},
    };
    auto admin = HttpStatusServer::Create(config.admin_address, std::move(handlers));
    if (!admin.ok())
      return absl::Status(admin.status().code(), absl::StrCat("--admin-addr: ", admin.status().message()));
    s->admin_ = std::move(*admin);
  }
  return s;
}

Sidecar::~Sidecar() {
  admin_.reset();
  sds_.reset();
  if (policy_) policy_->Stop();
  proxy_.reset();
}

uint16_t Sidecar::admin_port() const { return admin_ ? admin_->port() : 0; }

}  // namespace meshid::daemons
