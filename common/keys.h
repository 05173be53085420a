// Key generation, classification and (de)serialization over OpenSSL.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/openssl_ptr.h"
#include "common/secret.h"

namespace meshid {

enum class KeyAlgorithm { kEcdsaP256, kEcdsaP384, kRsa2048, kRsa3072, kRsa4096 };

// Accepts "ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-3072", "rsa-4096".
absl::StatusOr<KeyAlgorithm> ParseKeyAlgorithm(absl::string_view name);
std::string KeyAlgorithmName(KeyAlgorithm algorithm);
bool IsRsa(KeyAlgorithm algorithm);

absl::StatusOr<EvpPkeyPtr> GenerateKey(KeyAlgorithm algorithm);

// Classifies a public key as one of the algorithms meshid accepts for workloads and CAs:
// ECDSA P-256/P-384 or RSA 2048-4096 bits (any size in that range rounds down to the listed
// names only for reporting). Anything else is InvalidArgument naming the key.
absl::StatusOr<KeyAlgorithm> ClassifyKey(EVP_PKEY* key);
// A human description such as "RSA-1024" or "EC secp192r1" for error messages.
std::string DescribeKey(EVP_PKEY* key);

// PKCS#8 PEM ("PRIVATE KEY").
absl::StatusOr<SecretString> PrivateKeyToPem(EVP_PKEY* key);
// Accepts PKCS#8, SEC1 ("EC PRIVATE KEY") and PKCS#1 ("RSA PRIVATE KEY") PEM.
absl::StatusOr<EvpPkeyPtr> PrivateKeyFromPem(absl::string_view pem);
// DER SubjectPublicKeyInfo.
absl::StatusOr<std::string> PublicKeyDer(EVP_PKEY* key);
// Lower-case hex SHA-256 of the DER SubjectPublicKeyInfo.
absl::StatusOr<std::string> PublicKeySha256Hex(EVP_PKEY* key);
// True if the two keys hold the same public key.
bool SamePublicKey(EVP_PKEY* a, EVP_PKEY* b);

}  // namespace meshid
