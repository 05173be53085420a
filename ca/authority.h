// The CA's signing material: the signing certificate and key, the chain above it, and the trust
// bundle. Either a self-signed root kept in the data directory, or Istio's plug-in layout.
// Immutable once loaded; safe to share across threads.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/keys.h"
#include "common/openssl_ptr.h"
#include "common/random.h"
#include "common/secret.h"
#include "pkcs11/token_key.h"

namespace meshid {

struct SigningAuthority {
  X509Ptr cert;  // signs workload certificates
  EvpPkeyPtr key;
  std::vector<X509Ptr> intermediates;   // from the signing cert's issuer up, roots excluded
  std::vector<X509Ptr> roots;           // trust bundle (one or more self-signed roots)
  std::vector<std::string> chain_pems;  // response chain after the leaf: signing cert (if not a
                                        // root), intermediates, roots
  std::string root_bundle_pem;          // roots, concatenated
  std::string source;                   // "self-signed <dir>" or "plug-in <dir>", for logs
};

// The CA's private key when it is in a PKCS#11 token (`meshid server --ca-key pkcs11:...`)
// instead of ca-key.pem; null: the file. The key never leaves the token: the authority's `key`
// is then an EVP_PKEY that signs through it (pkcs11/token_key.h).
using CaTokenKey = std::shared_ptr<const pkcs11::TokenKey>;

struct SelfSignedOptions {
  std::string data_dir;
  std::string trust_domain = "cluster.local";
  KeyAlgorithm key_algorithm = KeyAlgorithm::kEcdsaP256;
  absl::Duration lifetime = absl::Hours(24 * 3650);
  CaTokenKey token_key;  // the root's key is in this token; no ca-key.pem is read or written
};

// Loads <data_dir>/ca-key.pem + ca-cert.pem, or creates them on first start (key mode 0600).
// An existing pair is checked (key matches cert, cert is a CA and not expired); an error names
// the file. A different requested key type than the stored one is not an error: the stored
// root keeps being used. With a token key, ca-cert.pem is made for (or must match) the token's
// key, and a ca-key.pem beside it is refused (two private keys for one root).
absl::StatusOr<std::shared_ptr<const SigningAuthority>> LoadOrCreateSelfSignedAuthority(
    const SelfSignedOptions& options, const Clock& clock, RandomSource& random);

// Loads Istio's plug-in layout: ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem in
// `dir`. Checks that every file exists and parses, the key matches ca-cert.pem, ca-cert.pem is
// a CA, and ca-cert.pem verifies through cert-chain.pem to a root in root-cert.pem. Errors
// name the file and what is wrong. ReadPluggedInFiles, then ParsePluggedInAuthority.
absl::StatusOr<std::shared_ptr<const SigningAuthority>> LoadPluggedInAuthority(const std::string& dir,
                                                                               const Clock& clock);

// The four files of the plug-in layout as read once, so that a reloader can tell whether they
// changed and parse exactly what it compared.
struct PluggedInFiles {
  std::string dir;
  std::string ca_cert;     // ca-cert.pem
  SecretString ca_key;     // ca-key.pem (empty when read for a key in a token)
  std::string cert_chain;  // cert-chain.pem
  std::string root_cert;   // root-cert.pem

  // Equal contents (the key compared too): nothing to reload.
  bool SameContents(const PluggedInFiles& other) const;
};

// Reads the four files of `dir` (at most 1 MiB each; three when the key is in a token).
// InvalidArgument "incomplete plug-in CA bundle: missing <files>" when some do not exist;
// another read error names its file.
absl::StatusOr<PluggedInFiles> ReadPluggedInFiles(const std::string& dir, bool key_in_token = false);

// The checks and result of LoadPluggedInAuthority, on contents already read. InvalidArgument
// naming the file and what is wrong. With `token_key` (files read with key_in_token) the key
// that must match ca-cert.pem is the token's.
absl::StatusOr<std::shared_ptr<const SigningAuthority>> ParsePluggedInAuthority(const PluggedInFiles& files,
                                                                                const Clock& clock,
                                                                                const CaTokenKey& token_key = nullptr);

// Writes the trust bundle to <data_dir>/root-cert.pem for clients.
absl::Status WriteTrustBundle(const SigningAuthority& authority, const std::string& data_dir);

}  // namespace meshid
