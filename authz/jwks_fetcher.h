// Where JSON Web Key Sets come from: `jwks_uri`/`jwksUri` as file:// (a local file, read when
// the engine is built), http:// or https:// (fetched when the engine is built, as istiod does
// before pushing config; https verifies the server against the system trust store).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace meshid::authz {

class JwksFetcher {
 public:
  virtual ~JwksFetcher() = default;
  // The document at `uri`. Errors name the URI and what went wrong.
  virtual absl::StatusOr<std::string> Fetch(const std::string& uri) const = 0;
};

// file://, http:// and https://. Thread-safe (stateless).
class DefaultJwksFetcher final : public JwksFetcher {
 public:
  explicit DefaultJwksFetcher(absl::Duration timeout = absl::Seconds(5)) : timeout_(timeout) {}
  absl::StatusOr<std::string> Fetch(const std::string& uri) const override;

 private:
  absl::Duration timeout_;
};

// A plain HTTP(S) GET returning the body of a 200 response (at most `max_bytes`).
absl::StatusOr<std::string> HttpGet(const std::string& url, absl::Duration timeout, size_t max_bytes = 1 << 20);

}  // namespace meshid::authz
