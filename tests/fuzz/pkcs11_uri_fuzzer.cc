// `meshid server --ca-key` URIs: any bytes either parse, and then survive ToString() and a
// second parse unchanged, or are refused with a status; never a crash.
#include <cstddef>
#include <cstdint>
#include <string>

#include "pkcs11/uri.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string input(reinterpret_cast<const char*>(data), size);
  auto uri = meshid::pkcs11::ParseUri(input);
  if (!uri.ok()) return 0;
  auto again = meshid::pkcs11::ParseUri(uri->ToString());
  if (!again.ok() || again->token != uri->token || again->object != uri->object || again->id != uri->id ||
      again->serial != uri->serial || again->slot_id != uri->slot_id || again->type != uri->type) {
    __builtin_trap();  // what we print must read back as the same key
  }
  return 0;
}
