// --ca-key, --pkcs11-module and --pkcs11-pin-file, shared by `meshid server` and the offline
// `meshid certs crl`; the PIN itself only from a file or MESHID_PKCS11_PIN, never a flag.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdlib>

#include "daemons/server.h"

namespace meshid::cli {

inline void AddCaKeyFlags(CLI::App* cmd, daemons::CaTokenKeyConfig& config) {
  cmd->add_option("--ca-key", config.uri,
                  "The CA's private key in a PKCS#11 token, as an RFC 7512 URI (pkcs11:token=...;object=...): the "
                  "self-signed root's key, or the plug-in layout's instead of ca-key.pem. The PIN comes from "
                  "--pkcs11-pin-file, MESHID_PKCS11_PIN or the URI's pin-source, never from a flag");
  cmd->add_option("--pkcs11-module", config.module,
                  "The token's PKCS#11 module (e.g. /usr/lib/softhsm/libsofthsm2.so); or module-path in the URI. "
                  "Also for a `meshid ca rotate` key in a token");
  cmd->add_option("--pkcs11-pin-file", config.pin_file, "A file holding the token's user PIN");
}

// Called once the flags are parsed.
inline void ReadPinFromEnvironment(daemons::CaTokenKeyConfig& config) {
  if (const char* pin = std::getenv("MESHID_PKCS11_PIN"); pin != nullptr) config.pin = pin;
}

}  // namespace meshid::cli
