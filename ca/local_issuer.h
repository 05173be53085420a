// The server's own token issuer, so that a mesh without Kubernetes can still authenticate
// workloads: `meshid token create` signs Kubernetes-style service-account tokens with a key in
// the data directory, and `meshid server` on that directory trusts them.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "ca/authenticator.h"
#include "common/clock.h"
#include "common/openssl_ptr.h"

namespace meshid {

inline constexpr char kLocalTokenIssuer[] = "meshid-local";
inline constexpr char kLocalTokenKeyFile[] = "token-signing-key.pem";

class LocalTokenIssuer {
 public:
  // Loads <data_dir>/token-signing-key.pem (ECDSA P-256, mode 0600), creating it if missing and
  // `create` is set; NotFound otherwise, naming the file.
  static absl::StatusOr<LocalTokenIssuer> Load(const std::string& data_dir, bool create);

  // A JWT with iss=meshid-local, sub=system:serviceaccount:<ns>:<sa>, aud, iat/nbf/exp.
  absl::StatusOr<std::string> CreateToken(const std::string& ns, const std::string& service_account,
                                          const std::vector<std::string>& audiences, absl::Duration ttl,
                                          const Clock& clock) const;

  // The issuer configuration that verifies tokens from CreateToken.
  absl::StatusOr<JwtIssuer> AsJwtIssuer(std::vector<std::string> audiences) const;
  EVP_PKEY* key() const { return key_.get(); }
  const std::string& kid() const { return kid_; }

 private:
  std::shared_ptr<EVP_PKEY> key_;
  std::string kid_;
};

}  // namespace meshid
