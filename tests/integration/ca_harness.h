// Helpers for the integration tests of a running `meshid server` (tests/support/processes.h)
// that need the CA's own code: CA clients for it and tokens signed by its local issuer.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "ca/local_issuer.h"
#include "common/jwt.h"
#include "nodeagent/ca_client.h"
#include "tests/support/processes.h"

namespace meshid::testing {

// A CA client for `server`, optionally authenticating with a client certificate. The options
// are fixed, so a client that cannot be made is a bug here: it throws (failing the test).
inline std::unique_ptr<CaClient> ClientFor(const ServerProcess& server, const std::string& cert = "",
                                           const std::string& key = "") {
  CaClientOptions options;
  options.address = server.address();
  options.root_cert_pem = server.root();
  options.client_cert_chain_pem = cert;
  options.client_key_pem = key;
  options.timeout = absl::Seconds(10);
  return CaClient::Create(options).value();
}

// A token with arbitrary claims (and optionally another key id), signed by the local issuer key
// in `server`'s data directory; throws (failing the test) if that key cannot be read.
inline std::string LocalIssuerToken(const ServerProcess& server, const nlohmann::json& claims,
                                    const std::string& kid_override = "") {
  auto issuer = LocalTokenIssuer::Load(server.data_dir(), /*create=*/false).value();
  return SignJwt(claims, issuer.key(), kid_override.empty() ? issuer.kid() : kid_override).value();
}

// The claims of a valid local-issuer token for default/sleep, expiring `exp_in` seconds from now.
inline nlohmann::json LocalIssuerClaims(int64_t exp_in = 3600) {
  const int64_t now = absl::ToUnixSeconds(absl::Now());
  return {{"iss", kLocalTokenIssuer},
          {"sub", "system:serviceaccount:default:sleep"},
          {"aud", "istio-ca"},
          {"iat", now},
          {"exp", now + exp_in}};
}

}  // namespace meshid::testing
