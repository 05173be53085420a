#include "common/keys.h"

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/pem.h>

#include <climits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/sha256.h"

namespace meshid {

absl::StatusOr<KeyAlgorithm> ParseKeyAlgorithm(absl::string_view name) {
  if (name == "ecdsa-p256") return KeyAlgorithm::kEcdsaP256;
  if (name == "ecdsa-p384") return KeyAlgorithm::kEcdsaP384;
  if (name == "rsa-2048") return KeyAlgorithm::kRsa2048;
  if (name == "rsa-3072") return KeyAlgorithm::kRsa3072;
  if (name == "rsa-4096") return KeyAlgorithm::kRsa4096;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown key type \"", name, "\" (want ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072 or rsa-4096)"));
}

std::string KeyAlgorithmName(KeyAlgorithm a) {
  switch (a) {
    case KeyAlgorithm::kEcdsaP256:
      return "ecdsa-p256";
    case KeyAlgorithm::kEcdsaP384:
      return "ecdsa-p384";
    case KeyAlgorithm::kRsa2048:
      return "rsa-2048";
    case KeyAlgorithm::kRsa3072:
      return "rsa-3072";
    case KeyAlgorithm::kRsa4096:
      return "rsa-4096";
  }
  return "unknown";
}

bool IsRsa(KeyAlgorithm a) {
  return a == KeyAlgorithm::kRsa2048 || a == KeyAlgorithm::kRsa3072 || a == KeyAlgorithm::kRsa4096;
}

absl::StatusOr<EvpPkeyPtr> GenerateKey(KeyAlgorithm a) {
  EVP_PKEY* key = nullptr;
  switch (a) {
    case KeyAlgorithm::kEcdsaP256:
      key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
      break;
    case KeyAlgorithm::kEcdsaP384:
      key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384");
      break;
    case KeyAlgorithm::kRsa2048:
      key = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048});
      break;
    case KeyAlgorithm::kRsa3072:
      key = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{3072});
      break;
    case KeyAlgorithm::kRsa4096:
      key = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{4096});
      break;
  }
  if (key == nullptr) return absl::InternalError("key generation failed: " + DrainOpenSslErrors());
  return EvpPkeyPtr(key);
}

namespace {
std::string CurveName(EVP_PKEY* key) {
  char name[64] = {0};
  size_t len = 0;
  if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, name, sizeof(name), &len) != 1) {
    ERR_clear_error();
    return "";
  }
  return std::string(name, len);
}
}  // namespace

std::string DescribeKey(EVP_PKEY* key) {
  switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_RSA:
      return absl::StrCat("RSA-", EVP_PKEY_get_bits(key));
    case EVP_PKEY_EC:
      return absl::StrCat("EC ", CurveName(key));
    case EVP_PKEY_ED25519:
      return "Ed25519";
    case EVP_PKEY_ED448:
      return "Ed448";
    case EVP_PKEY_DSA:
      return absl::StrCat("DSA-", EVP_PKEY_get_bits(key));
    default: {
      const char* name = EVP_PKEY_get0_type_name(key);
      return name != nullptr ? name : "unknown key type";
    }
  }
}

absl::StatusOr<KeyAlgorithm> ClassifyKey(EVP_PKEY* key) {
  if (key == nullptr) return absl::InvalidArgumentError("no public key");
  int id = EVP_PKEY_get_base_id(key);
  if (id == EVP_PKEY_RSA) {
    int bits = EVP_PKEY_get_bits(key);
    if (bits < 2048 || bits > 4096) {
      return absl::InvalidArgumentError(
          absl::StrCat("RSA key of ", bits, " bits is not allowed (RSA keys must have 2048 to 4096 bits)"));
    }
    if (bits >= 4096) return KeyAlgorithm::kRsa4096;
    if (bits >= 3072) return KeyAlgorithm::kRsa3072;
    return KeyAlgorithm::kRsa2048;
  }
  if (id == EVP_PKEY_EC) {
    std::string curve = CurveName(key);
    if (curve == SN_X9_62_prime256v1 || curve == "P-256") return KeyAlgorithm::kEcdsaP256;
    if (curve == SN_secp384r1 || curve == "P-384") return KeyAlgorithm::kEcdsaP384;
    return absl::InvalidArgumentError(absl::StrCat("EC key on curve \"", curve.empty() ? "unnamed" : curve,
                                                   "\" is not allowed (ECDSA keys must be P-256 or P-384)"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat(DescribeKey(key), " key is not allowed (keys must be ECDSA P-256/P-384 or RSA 2048-4096)"));
}

absl::StatusOr<SecretString> PrivateKeyToPem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_secmem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return OpenSslError("encoding the private key");
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  if (data == nullptr || len <= 0) return OpenSslError("reading the encoded private key");
  SecretString out(std::string(data, static_cast<size_t>(len)));
  return out;
}

absl::StatusOr<EvpPkeyPtr> PrivateKeyFromPem(absl::string_view pem) {
  if (pem.size() > static_cast<size_t>(INT_MAX)) return absl::InvalidArgumentError("private key PEM is too large");
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return OpenSslError("reading the private key PEM");
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, const_cast<char*>(""));
  if (key == nullptr) {
    std::string err = DrainOpenSslErrors();
    return absl::InvalidArgumentError("not a PEM private key (PKCS#8, SEC1 or PKCS#1) without a password: " + err);
  }
  return EvpPkeyPtr(key);
}

absl::StatusOr<std::string> PublicKeyDer(EVP_PKEY* key) {
  return EncodeDer([&](unsigned char** out) { return i2d_PUBKEY(key, out); }, "encoding the public key");
}

absl::StatusOr<std::string> PublicKeySha256Hex(EVP_PKEY* key) {
  auto der = PublicKeyDer(key);
  if (!der.ok()) return der.status();
  return Sha256Hex(*der);
}

bool SamePublicKey(EVP_PKEY* a, EVP_PKEY* b) {
  // 0: different keys; negative: different key types, or not comparable. Neither is an error
  // worth keeping on the queue.
  const int eq = EVP_PKEY_eq(a, b);
  ERR_clear_error();
  if (eq >= 0) return eq == 1;
  // Not comparable: a key whose private half is elsewhere (a PKCS#11 token key) cannot be
  // exported to a provider. The SubjectPublicKeyInfo encodings can be compared.
  auto der_a = PublicKeyDer(a);
  auto der_b = PublicKeyDer(b);
  return der_a.ok() && der_b.ok() && *der_a == *der_b;
}

}  // namespace meshid
