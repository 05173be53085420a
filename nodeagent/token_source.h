// Where the agent's own credential for the CA comes from.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/secret.h"

namespace meshid {

class TokenSource {
 public:
  virtual ~TokenSource() = default;
  // The current token; called before every CA request. Thread-safe.
  virtual absl::StatusOr<SecretString> Token() = 0;
};

// Re-reads `path` on every call, so that a projected service-account token that the kubelet
// rotates is picked up (Istio's ./var/run/secrets/tokens/istio-token). Surrounding whitespace
// is trimmed; an empty or missing file is an Unauthenticated error naming the file.
std::unique_ptr<TokenSource> MakeFileTokenSource(std::string path);

}  // namespace meshid
