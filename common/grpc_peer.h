// What a gRPC server knows of the peer of a call from its auth context: whether the connection
// is TLS, and the client certificate and chain it presented (unverified: the caller's
// authenticator decides what they prove).
#pragma once

#include <grpcpp/security/auth_context.h>

#include <memory>
#include <string>
#include <vector>

namespace meshid {

struct GrpcPeer {
  bool tls = false;
  std::string cert_pem;                 // the client's certificate, "" if none
  std::vector<std::string> chain_pems;  // the chain it sent, leaf first
};

inline GrpcPeer PeerOf(const std::shared_ptr<const grpc::AuthContext>& auth) {
  GrpcPeer peer;
  if (auth == nullptr) return peer;
  // "ssl" from SslServerCredentials, "tls" from the TLS credentials with a certificate provider.
  for (const auto& v : auth->FindPropertyValues("transport_security_type")) {
    peer.tls = peer.tls || v == "ssl" || v == "tls";
  }
  for (const auto& v : auth->FindPropertyValues("x509_pem_cert")) peer.cert_pem.assign(v.data(), v.size());
  for (const auto& v : auth->FindPropertyValues("x509_pem_cert_chain"))
    peer.chain_pems.emplace_back(v.data(), v.size());
  return peer;
}

}  // namespace meshid
