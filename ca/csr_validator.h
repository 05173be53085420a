// Validation of certificate signing requests received from callers. The CSR is untrusted: it
// only contributes its public key (after proof of possession); the identity comes from the
// authenticated caller.
#pragma once

#include <cstddef>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/keys.h"
#include "common/openssl_ptr.h"
#include "common/spiffe_id.h"

namespace meshid {

inline constexpr size_t kMaxCsrPemBytes = 32 * 1024;

struct ValidatedCsr {
  EvpPkeyPtr public_key;
  KeyAlgorithm algorithm;
};

// Accepts exactly one PEM "CERTIFICATE REQUEST" of at most kMaxCsrPemBytes whose self-signature
// verifies, whose key is ECDSA P-256/P-384 or RSA 2048-4096, whose SAN extension is absent or
// holds exactly the URI `caller`, and which does not ask for CA:TRUE. Every refusal is
// InvalidArgument with a message starting "CSR" that says what was wrong.
absl::StatusOr<ValidatedCsr> ValidateCsr(absl::string_view pem, const SpiffeId& caller);

}  // namespace meshid
