#include "tests/support/softhsm.h"

#include <stdlib.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "common/keys.h"
#include "common/openssl_ptr.h"
#include "common/pem.h"
#include "tests/support/subprocess.h"
#include "tests/support/temp_dir.h"

namespace meshid::testing {
namespace {

std::string Quote(const std::string& s) { return absl::StrCat("'", s, "'"); }

}  // namespace

bool SoftHsm::Available() {
  return access(kModule, R_OK) == 0 && RunShell("command -v softhsm2-util && command -v pkcs11-tool").first == 0;
}

SoftHsm::SoftHsm(const std::string& dir) : dir_(dir), config_(dir + "/softhsm2.conf") {
  RunShell(absl::StrCat("mkdir -p ", Quote(dir_ + "/tokens")));
  WriteTestFile(config_, absl::StrCat("directories.tokendir = ", dir_, "/tokens\nobjectstore.backend = file\n",
                                      "log.level = ERROR\n"));
  setenv("SOFTHSM2_CONF", config_.c_str(), 1);
}

absl::Status SoftHsm::Run(const std::string& command, const std::string& what) {
  auto [rc, output] = RunShell(absl::StrCat("SOFTHSM2_CONF=", Quote(config_), " ", command, " 2>&1"));
  if (rc != 0) return absl::InternalError(absl::StrCat(what, " failed (exit ", rc, "): ", output));
  return absl::OkStatus();
}

absl::Status SoftHsm::InitToken(const std::string& token, const std::string& pin, const std::string& so_pin) {
  return Run(absl::StrCat("softhsm2-util --init-token --free --label ", Quote(token), " --pin ", Quote(pin),
                          " --so-pin ", Quote(so_pin)),
             "softhsm2-util --init-token");
}

absl::Status SoftHsm::ImportKey(const std::string& token, const std::string& pin, EVP_PKEY* key,
                                const std::string& label, const std::string& id_hex) {
  auto private_der = EncodeDer([&](unsigned char** out) { return i2d_PrivateKey(key, out); }, "encoding the key");
  if (!private_der.ok()) return private_der.status();
  auto public_der = PublicKeyDer(key);
  if (!public_der.ok()) return public_der.status();
  const std::string private_file = absl::StrCat(dir_, "/import-", label, ".key.der");
  const std::string public_file = absl::StrCat(dir_, "/import-", label, ".pub.der");
  WriteTestFile(private_file, *private_der);
  WriteTestFile(public_file, *public_der);
  const std::string common = absl::StrCat("pkcs11-tool --module ", kModule, " --token-label ", Quote(token),
                                          " --login --pin ", Quote(pin), " --label ", Quote(label), " --id ", id_hex);
  absl::Status s = Run(absl::StrCat(common, " --write-object ", Quote(private_file), " --type privkey"),
                       "pkcs11-tool --write-object (private key)");
  if (s.ok()) {
    s = Run(absl::StrCat(common, " --write-object ", Quote(public_file), " --type pubkey"),
            "pkcs11-tool --write-object (public key)");
  }
  unlink(private_file.c_str());
  return s;
}

absl::Status SoftHsm::GenerateKey(const std::string& token, const std::string& pin, const std::string& key_type,
                                  const std::string& label, const std::string& id_hex) {
  return Run(
      absl::StrCat("pkcs11-tool --module ", kModule, " --token-label ", Quote(token), " --login --pin ", Quote(pin),
                   " --keypairgen --key-type ", key_type, " --label ", Quote(label), " --id ", id_hex),
      "pkcs11-tool --keypairgen");
}

absl::Status SoftHsm::DeleteToken(const std::string& token) {
  return Run(absl::StrCat("softhsm2-util --delete-token --token ", Quote(token)), "softhsm2-util --delete-token");
}

}  // namespace meshid::testing
