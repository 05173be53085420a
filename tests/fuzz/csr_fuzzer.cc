// CSR validation is the CA's main parser of network input.
#include <cstddef>
#include <cstdint>
#include <string>

#include "ca/csr_validator.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const meshid::SpiffeId caller = *meshid::SpiffeId::Parse("spiffe://cluster.local/ns/default/sa/sleep");
  std::string input(reinterpret_cast<const char*>(data), size);
  auto result = meshid::ValidateCsr(input, caller);
  if (!result.ok() && !absl::IsInvalidArgument(result.status())) __builtin_trap();  // refusals are always InvalidArgument
  return 0;
}
