// CSR validation is the CA's main parser of network input. Besides not crashing, every CSR it
// accepts must also be accepted by OpenSSL's own PKCS#10 parser, with a verifying signature
// and the same public key (a differential check of our DER reader).
#include <openssl/x509.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "ca/csr_validator.h"
#include "common/keys.h"
#include "common/pem.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const meshid::SpiffeId caller = *meshid::SpiffeId::Parse("spiffe://cluster.local/ns/default/sa/sleep");
  std::string input(reinterpret_cast<const char*>(data), size);
  auto result = meshid::ValidateCsr(input, caller);
  if (!result.ok()) {
    if (!absl::IsInvalidArgument(result.status())) __builtin_trap();  // refusals are always InvalidArgument
    return 0;
  }
  auto blocks = meshid::ParsePemBlocks(input);
  if (!blocks.ok() || blocks->size() != 1) __builtin_trap();
  const std::string& der = (*blocks)[0].der;
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  meshid::X509ReqPtr req(d2i_X509_REQ(nullptr, &p, static_cast<long>(der.size())));
  if (!req) __builtin_trap();
  EVP_PKEY* key = X509_REQ_get0_pubkey(req.get());
  if (key == nullptr || X509_REQ_verify(req.get(), key) != 1) __builtin_trap();
  if (*meshid::PublicKeyDer(key) != result->spki_der) __builtin_trap();
  return 0;
}
