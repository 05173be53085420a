// A workload's certificate taken from a running `meshid agent` over SDS FetchSecrets (so it is
// in the server's ledger, and the caller holds the very key the workload uses), and the mTLS
// probe that tells whether a proxy still serves it. For the revocation test and benchmark.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/x509.h"
#include "envoy/extensions/transport_sockets/tls/v3/secret.pb.h"
#include "envoy/service/secret/v3/sds.grpc.pb.h"
#include "tests/meshproxy/mesh_harness.h"

namespace meshid::testing {

struct Svid {
  CertFiles files;     // written as <dir>/<name>.crt and .key
  std::string serial;  // upper-case hex; empty when `error` says why there is none
  std::string error;
};

// The workload's "default" secret from the agent on `socket`, as the workload holding `token`.
inline Svid FetchSvid(const std::string& socket, const std::string& token, const std::string& dir,
                      const std::string& name) {
  auto channel = grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials());
  auto stub = envoy::service::secret::v3::SecretDiscoveryService::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  context.AddMetadata("authorization", "Bearer " + token);
  envoy::service::discovery::v3::DiscoveryRequest request;
  request.set_type_url("type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret");
  request.add_resource_names("default");
  request.mutable_node()->set_id("meshid-test-workload");
  envoy::service::discovery::v3::DiscoveryResponse response;
  Svid svid;
  grpc::Status status = stub->FetchSecrets(&context, request, &response);
  envoy::extensions::transport_sockets::tls::v3::Secret secret;
  if (!status.ok() || response.resources_size() != 1 || !response.resources(0).UnpackTo(&secret)) {
    svid.error = absl::StrCat("FetchSecrets: ", status.error_message(), " (", response.resources_size(), " resources)");
    return svid;
  }
  CertAndKeyPem pem{secret.tls_certificate().certificate_chain().inline_bytes(),
                    secret.tls_certificate().private_key().inline_bytes()};
  auto files = WriteCertFiles(dir, name, pem);
  if (!files.ok()) {
    svid.error = files.status().ToString();
    return svid;
  }
  svid.files = *files;
  auto certs = CertsFromPem(pem.cert);
  if (certs.ok() && !certs->empty()) svid.serial = SerialHex((*certs)[0].get());
  return svid;
}

inline Client::Options Mtls(const CertFiles& cert) {
  Client::Options o;
  o.tls = true;
  o.cert = cert;
  o.timeout_ms = 5000;
  return o;
}

// Whether a new mTLS connection with `cert` gets an answer from the proxy on `port`.
inline bool Served(int port, const CertFiles& cert) { return Request(port, Mtls(cert), "GET", "/probe").status == 200; }

}  // namespace meshid::testing
