#include "common/random.h"

#include <cstdlib>
#include <vector>

#include "absl/strings/escaping.h"

namespace meshid {

std::string RandomSource::Hex(size_t bytes) {
  std::string buf(bytes, '\0');
  Fill(reinterpret_cast<uint8_t*>(buf.data()), bytes);
  return absl::BytesToHexString(buf);
}

void OpenSslRandom::Fill(uint8_t* out, size_t n) {
  // RAND_bytes only fails when the DRBG cannot be seeded, which is a broken machine.
  if (RAND_bytes(out, static_cast<int>(n)) != 1) std::abort();
}

}  // namespace meshid
