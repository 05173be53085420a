#include <cstddef>
#include <cstdint>
#include <string>

#include "common/pem.h"
#include "common/x509.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string input(reinterpret_cast<const char*>(data), size);
  auto blocks = meshid::ParsePemBlocks(input);
  if (blocks.ok()) {
    for (const auto& b : *blocks) {
      // Re-encoding must parse back to the same bytes.
      auto again = meshid::ParsePemBlocks(meshid::EncodePem(b.type, b.der));
      if (!again.ok() || again->size() != 1 || (*again)[0].der != b.der) __builtin_trap();
    }
  }
  (void)meshid::CertsFromPem(input);
  return 0;
}
