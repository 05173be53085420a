// Randomness source passed into components that need unpredictable bytes (serials, nonces).
#pragma once

#include <openssl/rand.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace meshid {

class RandomSource {
 public:
  virtual ~RandomSource() = default;
  // Fills `out` with `n` bytes. Thread-safe.
  virtual void Fill(uint8_t* out, size_t n) = 0;
  uint64_t Uint64() {
    uint64_t v;
    Fill(reinterpret_cast<uint8_t*>(&v), sizeof(v));
    return v;
  }
  // Uniform in [0, 1).
  double Uniform() { return static_cast<double>(Uint64() >> 11) * 0x1.0p-53; }
  std::string Hex(size_t bytes);
};

// Cryptographically secure bytes from OpenSSL's DRBG. Fill aborts if the DRBG cannot be seeded
// (a broken machine: there is no safe way to go on without randomness).
class OpenSslRandom final : public RandomSource {
 public:
  void Fill(uint8_t* out, size_t n) override;
};

}  // namespace meshid
