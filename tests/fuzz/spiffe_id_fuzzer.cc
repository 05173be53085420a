#include <cstddef>
#include <cstdint>
#include <string>

#include "common/spiffe_id.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string input(reinterpret_cast<const char*>(data), size);
  auto id = meshid::SpiffeId::Parse(input, /*allow_root=*/true);
  if (id.ok() && id->ToString() != input) __builtin_trap();  // parsing is lossless
  return 0;
}
