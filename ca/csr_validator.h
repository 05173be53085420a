// Validation of certificate signing requests received from callers. The CSR is untrusted: it
// only contributes its public key (after proof of possession); the identity comes from the
// authenticated caller.
#pragma once

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/keys.h"
#include "common/spiffe_id.h"

namespace meshid {

inline constexpr size_t kMaxCsrPemBytes = 32 * 1024;

struct ValidatedCsr {
  std::string spki_der;  // the SubjectPublicKeyInfo exactly as the CSR carried it
  KeyAlgorithm algorithm;
};

// Accepts exactly one PEM "CERTIFICATE REQUEST" of at most kMaxCsrPemBytes that is well-formed
// DER, whose self-signature verifies, whose key is ECDSA P-256/P-384 or RSA 2048-4096, whose
// SAN extension is absent or holds exactly the URI `caller`, and which does not ask for CA:TRUE.
// Every refusal is InvalidArgument with a message starting "CSR" that says what was wrong;
// Internal only when OpenSSL fails on our side (out of memory).
//
// The request is parsed here rather than with d2i_X509_REQ: OpenSSL 3.0 decodes every public
// key through its provider decoder framework, which costs more than the signature check.
absl::StatusOr<ValidatedCsr> ValidateCsr(absl::string_view pem, const SpiffeId& caller);

}  // namespace meshid
