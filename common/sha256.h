// SHA-256 as lower-case hex: the one digest helper for public-key fingerprints, content
// versions, token hashes and policy digests.
//
// OpenSSL's SHA-256 fails only when it cannot allocate memory; these helpers then abort, as the
// process does on any other allocation failure, instead of returning a digest of nothing.
#pragma once

#include <string>

#include "absl/strings/string_view.h"
#include "common/openssl_ptr.h"

namespace meshid {

// Lower-case hex SHA-256 of `data` (64 digits).
std::string Sha256Hex(absl::string_view data);

// An incremental SHA-256 over several pieces. Not thread-safe.
class Sha256Hasher {
 public:
  Sha256Hasher();
  void Update(absl::string_view data);
  // Lower-case hex of the digest; the hasher is spent afterwards.
  std::string HexDigest();

 private:
  EvpMdCtxPtr ctx_;
};

}  // namespace meshid
