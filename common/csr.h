// Building PKCS#10 certificate signing requests (for the agent, tools, tests and benchmarks).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/openssl_ptr.h"

namespace meshid {

struct CsrOptions {
  std::vector<std::string> uri_sans;  // usually the one SPIFFE ID; may be empty
  std::vector<std::string> dns_sans;
  bool request_ca = false;  // adds basicConstraints CA:TRUE (only tests want this)
};

// A PEM "CERTIFICATE REQUEST" signed by `key` (SHA-256, or SHA-384 for P-384).
absl::StatusOr<std::string> BuildCsrPem(EVP_PKEY* key, const CsrOptions& options = {});

}  // namespace meshid
