#include "ca/local_issuer.h"

#include <filesystem>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/files.h"
#include "common/keys.h"
#include "common/spiffe_id.h"
#include "common/status_macros.h"

namespace meshid {

absl::StatusOr<LocalTokenIssuer> LocalTokenIssuer::Load(const std::string& data_dir, bool create) {
  std::string path = (std::filesystem::path(data_dir) / kLocalTokenKeyFile).string();
  auto pem = ReadFile(path);
  EvpPkeyPtr key;
  if (pem.ok()) {
    auto parsed = PrivateKeyFromPem(*pem);
    if (!parsed.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", parsed.status().message()));
    key = std::move(*parsed);
  } else if (absl::IsNotFound(pem.status()) && create) {
    MESHID_RETURN_IF_ERROR(EnsureDirectory(data_dir, 0700));
    MESHID_ASSIGN_OR_RETURN(key, GenerateKey(KeyAlgorithm::kEcdsaP256));
    MESHID_ASSIGN_OR_RETURN(SecretString out, PrivateKeyToPem(key.get()));
    MESHID_RETURN_IF_ERROR(WriteFileAtomic(path, out.view(), 0600));
  } else if (absl::IsNotFound(pem.status())) {
    return absl::NotFoundError(
        absl::StrCat(path, " does not exist; start `meshid server --data-dir ", data_dir, "` once to create it"));
  } else {
    return pem.status();
  }
  LocalTokenIssuer issuer;
  MESHID_ASSIGN_OR_RETURN(std::string fingerprint, PublicKeySha256Hex(key.get()));
  issuer.kid_ = fingerprint.substr(0, 16);
  issuer.key_ = std::shared_ptr<EVP_PKEY>(std::move(key));
  return issuer;
}

absl::StatusOr<std::string> LocalTokenIssuer::CreateToken(const std::string& ns, const std::string& service_account,
                                                          const std::vector<std::string>& audiences, absl::Duration ttl,
                                                          const Clock& clock) const {
  // Refuse names that would not make a valid SPIFFE ID, here rather than at the CA.
  if (auto id = SpiffeId::ForServiceAccount("cluster.local", ns, service_account); !id.ok()) return id.status();
  if (ttl <= absl::ZeroDuration()) return absl::InvalidArgumentError("token TTL must be positive");
  if (audiences.empty()) return absl::InvalidArgumentError("at least one audience is required");
  int64_t now = absl::ToUnixSeconds(clock.Now());
  nlohmann::json payload = {
      {"iss", kLocalTokenIssuer},
      {"sub", absl::StrCat("system:serviceaccount:", ns, ":", service_account)},
      {"iat", now},
      {"nbf", now},
      {"exp", now + absl::ToInt64Seconds(ttl)},
      {"kubernetes.io", {{"namespace", ns}, {"serviceaccount", {{"name", service_account}}}}},
  };
  payload["aud"] = audiences.size() == 1 ? nlohmann::json(audiences.front()) : nlohmann::json(audiences);
  return SignJwt(payload, key_.get(), kid_);
}

absl::StatusOr<JwtIssuer> LocalTokenIssuer::AsJwtIssuer(std::vector<std::string> audiences) const {
  MESHID_ASSIGN_OR_RETURN(Jwks jwks, Jwks::FromPublicKey(key_.get(), kid_));
  return JwtIssuer{kLocalTokenIssuer, std::move(jwks), std::move(audiences)};
}

}  // namespace meshid
