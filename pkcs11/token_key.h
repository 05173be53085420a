// A CA private key that lives in a PKCS#11 token (an HSM, a smart card, SoftHSM) and never
// leaves it: signing is a call into the token's module through a pool of sessions.
//
// Threading: thread-safe. Sign* may be called from any number of threads; each call borrows
// one session from the pool (waiting while all are busy), so issuance does not serialise on
// one session. When the token reports that it or a session is gone (removed, reset), the key
// turns unavailable: calls fail with UNAVAILABLE at once, and the first call at least
// `reconnect_interval` after the last attempt (or Health()) reopens the token, logs in and
// finds the same key again (the same public key, or it refuses), all on the calling thread.
//
// Why the module's own C API (loaded with dlopen, through the standard pkcs11.h that p11-kit
// ships) rather than a wrapper: Debian 12's Botan 2 is built without its PKCS#11 layer, and
// OpenSSL 3's pkcs11 engine (libp11) hides the token's return codes behind OpenSSL errors and
// keeps the slot list it read at start, so it cannot tell "token removed" from "bad input" or
// find a token that came back. docs/architecture.md says more.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/openssl_ptr.h"
#include "common/secret.h"
#include "pkcs11/uri.h"

namespace meshid::pkcs11 {

struct TokenKeyOptions {
  std::string uri;          // RFC 7512; names the token and the private key (object= and/or id=)
  std::string module_path;  // the module (.so); the URI's module-path when empty
  SecretString pin;         // the user PIN; empty: read from pin_file, else the URI's pin-source
  std::string pin_file;     // a file holding the PIN (trailing whitespace ignored)
  int sessions = 4;         // sessions in the pool
  absl::Duration reconnect_interval = absl::Seconds(1);
};

class TokenKey {
 public:
  // Loads the module, finds the one token and the one private key the URI names, logs in and
  // opens the sessions. The public key comes from the token's public-key object with the same
  // label/id (or, for RSA, the private key's modulus and exponent). Errors name what is wrong:
  // InvalidArgument (URI, no module path, a key that is neither EC nor RSA), NotFound (module
  // file, token, key), PermissionDenied (wrong or locked PIN), FailedPrecondition (several
  // tokens or keys match), Unavailable (the token is not present).
  static absl::StatusOr<std::shared_ptr<TokenKey>> Open(TokenKeyOptions options, const Clock& clock);
  ~TokenKey();
  TokenKey(const TokenKey&) = delete;
  TokenKey& operator=(const TokenKey&) = delete;

  // The key's public half; the private half stays in the token.
  EVP_PKEY* public_key() const;
  // The URI as parsed (attributes that select the key; no PIN), for logs and errors.
  const std::string& description() const;

  // Signs `digest`, the output of `md`, the way X.509 does: a DER ECDSA-Sig-Value for EC keys
  // (CKM_ECDSA over the digest: some tokens, SoftHSM 2.6 among them, refuse CKM_ECDSA_SHA256),
  // PKCS#1 v1.5 over DigestInfo for RSA (CKM_RSA_PKCS). Unavailable while the token is gone.
  absl::StatusOr<std::string> SignDigest(const EVP_MD* md, absl::string_view digest) const;

  // OK while the token answers; Unavailable (with the token's return code) while it does not.
  // Tries to reconnect when one is due, so a readiness probe brings the key back.
  absl::Status Health() const;

  // An EVP_PKEY that holds the public key and signs through this token key, for OpenSSL
  // functions that take a private key (X509_sign, EVP_DigestSign, ECDSA_sign, RSA_sign). It
  // keeps `key` alive. A failed token call surfaces there as an OpenSSL error.
  static absl::StatusOr<EvpPkeyPtr> AsEvpPkey(std::shared_ptr<const TokenKey> key);
  // The token key behind an EVP_PKEY made by AsEvpPkey; null for any other key.
  static const TokenKey* Of(EVP_PKEY* pkey);

 private:
  class Impl;
  explicit TokenKey(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace meshid::pkcs11
