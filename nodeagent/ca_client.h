// Client for Istio's CSR API (istio.v1.auth.IstioCertificateService/CreateCertificate), as
// istio-agent calls it. Thread-safe; one channel per client, reused across calls.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace meshid {

struct CaClientOptions {
  std::string address;                // host:port of meshid server (or istiod), or a list (ParseServerTarget)
  std::string root_cert_pem;          // trust bundle for the server's certificate
  std::string tls_server_name;        // overrides the name checked in the server cert, if set
  std::string client_cert_chain_pem;  // optional: authenticate with an existing SVID (renewal)
  std::string client_key_pem;
  bool insecure_plaintext = false;  // only for a server started with --insecure-plaintext
  absl::Duration timeout = absl::Seconds(30);
};

class CaClient {
 public:
  static absl::StatusOr<std::unique_ptr<CaClient>> Create(const CaClientOptions& options);
  virtual ~CaClient() = default;

  // Sends `csr_pem` with `bearer_token` in the authorization metadata (none if empty) and asks
  // for `ttl` (zero: the server default). With `impersonated_identity` (Istio's
  // metadata.ImpersonatedIdentity, a SPIFFE ID) the caller asks for a workload on its node
  // rather than for itself, which the server grants only to the parent of that workload's
  // registration entry. Returns the PEM chain, leaf first, root last, or the server's gRPC status
  // mapped one-to-one onto absl codes.
  virtual absl::StatusOr<std::vector<std::string>> CreateCertificate(absl::string_view csr_pem,
                                                                     absl::string_view bearer_token, absl::Duration ttl,
                                                                     absl::string_view impersonated_identity) = 0;
  // For the caller's own identity.
  absl::StatusOr<std::vector<std::string>> CreateCertificate(absl::string_view csr_pem, absl::string_view bearer_token,
                                                             absl::Duration ttl) {
    return CreateCertificate(csr_pem, bearer_token, ttl, "");
  }
};

}  // namespace meshid
