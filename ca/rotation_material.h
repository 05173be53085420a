// The signing material of a staged CA rotation (`meshid ca rotate prepare`): a new self-signed
// root or a new intermediate under an existing root, as Istio's plug-in layout texts with the
// private key by reference (store/records.h StoredCaMaterial), and the way back from such a
// record to a SigningAuthority (a server at activation, ca/rotation_follower.h).
//
// The key a record names is a file every replica can read (a shared mount) or a key in a PKCS#11
// token (a pkcs11: URI, RFC 7512). Opening a token key is the caller's (it knows the module and
// the PIN): `OpenTokenKey`. Functions here are thread-compatible; they hold no state.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ca/authority.h"
#include "common/clock.h"
#include "common/keys.h"
#include "common/random.h"
#include "store/records.h"

namespace meshid {

// Opens the token key a pkcs11: URI names (with the module and PIN the caller was given).
using OpenTokenKey = std::function<absl::StatusOr<CaTokenKey>(const std::string& pkcs11_uri)>;

// True for a key reference that names a key in a token ("pkcs11:..."); anything else is a file.
bool IsTokenKeyRef(absl::string_view key_ref);
// A key reference as a record holds it: a file path made absolute and normal (the record must
// mean the same file on every replica); a pkcs11: URI unchanged. Touches no file.
std::string CanonicalKeyRef(const std::string& key_ref);

inline constexpr absl::Duration kDefaultRootLifetime = absl::Hours(24 * 3650);  // as a self-signed root's
inline constexpr absl::Duration kDefaultIntermediateLifetime = absl::Hours(24 * 365);

struct NewCaMaterialOptions {
  std::string kind;  // kCaRotationRoot or kCaRotationIntermediate
  std::string trust_domain = "cluster.local";
  // The new signing key (--key): a pkcs11: URI of a key that exists in its token, a PEM private
  // key file to use, or a file that does not exist yet, which is generated (key_algorithm) and
  // written with mode 0600 (its directory must exist; an existing file is never replaced). A
  // relative path is made absolute: the record must mean the same file on every replica.
  std::string key_ref;
  KeyAlgorithm key_algorithm = KeyAlgorithm::kEcdsaP256;  // a generated key's only
  // Zero: kDefaultRootLifetime for a root, kDefaultIntermediateLifetime for an intermediate. An
  // intermediate never outlives its root: its notAfter is at most the root's.
  absl::Duration lifetime = absl::ZeroDuration();
  // Intermediate only: the root that signs it (--root-cert, one self-signed CA certificate) and
  // that root's key (--root-key: a PEM file or a pkcs11: URI). The root's key is only used to
  // sign; the record does not name it.
  std::string root_cert_pem;
  std::string root_key_ref;
};

// Makes the material of a new root (a self-signed CA certificate with the profile of
// LoadOrCreateSelfSignedAuthority's: ca_cert = cert_chain = root_cert = the root) or of a new
// intermediate (CA:TRUE pathlen 0, keyCertSign + cRLSign + digitalSignature, SKI and AKI,
// subject O=<trust domain>, CN=meshid intermediate CA <date>, valid from 5 minutes ago (not
// before the root) for the lifetime, not past the root's notAfter; ca_cert = the intermediate,
// cert_chain = intermediate + root, root_cert = the root), then checks it as a server will load
// it (LoadStoredCaMaterial's checks: the key matches, the chain verifies to the root). A key
// file is generated only once everything else succeeded. key_ref in the result is absolute.
// Errors name the `meshid ca rotate prepare` flag at fault: InvalidArgument ("--kind: ...",
// "--root-cert: ...", "--root-key: does not match --root-cert", "--key: not a private key",
// "--lifetime: must be positive"), FailedPrecondition (an expired root, a --key directory that
// does not exist), NotFound (a --root-key file that does not exist); a token's errors (from
// `open_token_key`) prefixed with the flag. `open_token_key` is called only for pkcs11: refs.
absl::StatusOr<StoredCaMaterial> MakeRotationMaterial(const NewCaMaterialOptions& options,
                                                      const OpenTokenKey& open_token_key, const Clock& clock,
                                                      RandomSource& random);

// The SigningAuthority `material` describes: the key read from its file (at most 1 MiB) or
// opened in its token, then ParsePluggedInAuthority over the texts (whose file names read
// "the CA rotation record/ca-cert.pem" and so on). InvalidArgument for material that does not
// hold together (the message names what), NotFound for a key file that does not exist, the
// token's errors as `open_token_key` returns them, prefixed with the key_ref.
absl::StatusOr<std::shared_ptr<const SigningAuthority>> LoadStoredCaMaterial(const StoredCaMaterial& material,
                                                                             const OpenTokenKey& open_token_key,
                                                                             const Clock& clock);

// "sha256:<hex>" of each certificate in `roots_pem` (DER), sorted and comma-separated: the form
// of TrustAnchorFingerprint (ca/shared_ca.h) and of PolicyStatusRow::trust_bundle.
// InvalidArgument if `roots_pem` holds anything but one or more PEM certificates.
absl::StatusOr<std::string> RootFingerprintsOfPem(absl::string_view roots_pem);

// The serial (upper-case hex, as the ledger's issuer_serial_hex) and notAfter of the signing
// certificate of `material`; InvalidArgument if ca_cert_pem does not parse.
struct SigningCertSummary {
  std::string serial_hex;
  absl::Time not_after;
};
absl::StatusOr<SigningCertSummary> SummarizeSigningCert(const StoredCaMaterial& material);

}  // namespace meshid
