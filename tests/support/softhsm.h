// SoftHSM2 tokens in a temporary directory, for tests of keys in PKCS#11 tokens: the token
// directory and configuration are the test's own (SOFTHSM2_CONF is set for this process, which
// the module reads when it is first loaded), tokens and keys are made with the real tools
// (softhsm2-util, pkcs11-tool from opensc), as an operator would.
#pragma once

#include <openssl/evp.h>

#include <string>

#include "absl/status/status.h"

namespace meshid::testing {

class SoftHsm {
 public:
  static constexpr const char* kModule = "/usr/lib/softhsm/libsofthsm2.so";
  // The module and both tools are installed (scripts/install-deps.sh installs them).
  static bool Available();
  static constexpr const char* kMissing =
      "SoftHSM2 and OpenSC (apt-get install softhsm2 opensc; scripts/install-deps.sh does)";

  // Tokens live under <dir>/tokens; <dir>/softhsm2.conf points there.
  explicit SoftHsm(const std::string& dir);

  // A fresh token with this label, user PIN and SO PIN.
  absl::Status InitToken(const std::string& token, const std::string& pin, const std::string& so_pin = "5678");
  // Writes `key`'s private and public halves into the token with this label and id (hex).
  absl::Status ImportKey(const std::string& token, const std::string& pin, EVP_PKEY* key, const std::string& label,
                         const std::string& id_hex);
  // Generates a key pair inside the token ("EC:prime256v1", "rsa:2048"): the private half
  // never exists outside it.
  absl::Status GenerateKey(const std::string& token, const std::string& pin, const std::string& key_type,
                           const std::string& label, const std::string& id_hex);
  // Removes the token (its directory), as pulling an HSM would.
  absl::Status DeleteToken(const std::string& token);

  const std::string& config_path() const { return config_; }

 private:
  absl::Status Run(const std::string& command, const std::string& what);
  std::string dir_;
  std::string config_;
};

}  // namespace meshid::testing
