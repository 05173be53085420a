// Test helpers: an in-memory self-signed authority and CSR builders.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "ca/authority.h"
#include "ca/cert_issuer.h"
#include "common/clock.h"
#include "common/csr.h"
#include "common/keys.h"
#include "common/random.h"
#include "common/x509.h"

namespace meshid::testing {

inline std::shared_ptr<const SigningAuthority> MakeAuthority(const Clock& clock, RandomSource& random,
                                                             const std::string& td = "cluster.local",
                                                             absl::Duration lifetime = absl::Hours(24 * 365),
                                                             KeyAlgorithm algorithm = KeyAlgorithm::kEcdsaP256) {
  auto a = std::make_shared<SigningAuthority>();
  a->key = *GenerateKey(algorithm);
  a->cert = *CreateSelfSignedRoot(a->key.get(), td, lifetime, clock, random);
  a->roots.push_back(CopyCert(a->cert.get()));
  a->chain_pems.push_back(CertToPem(a->cert.get()));
  a->root_bundle_pem = a->chain_pems.back();
  return a;
}

inline std::string TempDir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / (name + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

}  // namespace meshid::testing
