// Tokens and key sets both arrive from outside: fuzz decoding, verification and claim checks.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/jwt.h"
#include "common/keys.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const meshid::Jwks jwks = [] {
    auto key = *meshid::GenerateKey(meshid::KeyAlgorithm::kEcdsaP256);
    return *meshid::Jwks::FromPublicKey(key.get(), "k1");
  }();
  std::string input(reinterpret_cast<const char*>(data), size);
  auto jwt = meshid::DecodeJwt(input);
  if (jwt.ok()) {
    if (meshid::VerifyJwtSignature(*jwt, jwks).ok()) __builtin_trap();  // nobody has the private key
    meshid::JwtClaimChecks checks;
    checks.issuer = "x";
    checks.audiences = {"istio-ca"};
    checks.now = absl::FromUnixSeconds(1'800'000'000);
    (void)meshid::CheckJwtClaims(*jwt, checks);
    (void)jwt->audiences();
  }
  (void)meshid::Jwks::Parse(input);
  return 0;
}
