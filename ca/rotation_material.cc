#include "ca/rotation_material.h"

#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "ca/cert_issuer.h"
#include "ca/shared_ca.h"
#include "common/files.h"
#include "common/status_macros.h"
#include "common/x509.h"
#include "pkcs11/token_key.h"

namespace meshid {
namespace {

constexpr size_t kMaxKeyFile = 1 << 20;
constexpr absl::Duration kIntermediateBackdate = absl::Minutes(5);
// ParsePluggedInAuthority names the texts as files of a directory; this is that "directory".
constexpr char kRecordLabel[] = "the CA rotation record";

absl::Status Prefixed(absl::string_view what, const absl::Status& status) {
  return absl::Status(status.code(), absl::StrCat(what, ": ", status.message()));
}

// A private key as a reference resolved it: in memory (read or just generated), or in a token.
struct ResolvedKey {
  std::string ref;   // the reference, a file made absolute
  EvpPkeyPtr key;    // signs (through the token for a token key)
  CaTokenKey token;  // null: a file key
  SecretString pem;  // a file key's PEM
  bool generated = false;
};

std::string Rfc3339(absl::Time t) { return absl::FormatTime("%Y-%m-%d%ET%H:%M:%SZ", t, absl::UTCTimeZone()); }

// Resolves `ref` (named `flag` in errors). A file that does not exist is generated when
// `may_generate` (not written yet: WriteGeneratedKey), else NotFound.
absl::StatusOr<ResolvedKey> ResolveKey(absl::string_view flag, const std::string& ref, bool may_generate,
                                       KeyAlgorithm algorithm, const OpenTokenKey& open_token_key) {
  ResolvedKey out;
  if (ref.empty()) return absl::InvalidArgumentError(absl::StrCat(flag, ": required (a key file or a pkcs11: URI)"));
  if (IsTokenKeyRef(ref)) {
    out.ref = ref;
    auto token = open_token_key(ref);
    if (!token.ok()) return Prefixed(flag, token.status());
    out.token = *std::move(token);
    auto key = pkcs11::TokenKey::AsEvpPkey(out.token);
    if (!key.ok()) return Prefixed(absl::StrCat(flag, ": ", ref), key.status());
    out.key = *std::move(key);
  } else {
    std::error_code error;
    out.ref = CanonicalKeyRef(ref);
    auto text = ReadFile(out.ref, kMaxKeyFile);
    if (text.ok()) {
      out.pem = SecretString(*std::move(text));
      auto key = PrivateKeyFromPem(out.pem.view());
      if (!key.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(flag, ": ", out.ref, ": not a PEM private key (", key.status().message(), ")"));
      }
      out.key = *std::move(key);
    } else if (absl::IsNotFound(text.status()) && may_generate) {
      const std::filesystem::path dir = std::filesystem::path(out.ref).parent_path();
      if (!std::filesystem::is_directory(dir, error)) {
        return absl::FailedPreconditionError(absl::StrCat(flag, ": ", out.ref, ": the directory ", dir.string(),
                                                          " does not exist (create it, on storage every replica "
                                                          "reads, then run again)"));
      }
      MESHID_ASSIGN_OR_RETURN(out.key, GenerateKey(algorithm));
      MESHID_ASSIGN_OR_RETURN(out.pem, PrivateKeyToPem(out.key.get()));
      out.generated = true;
    } else {
      return Prefixed(flag, text.status());  // ReadFile's message names the file
    }
  }
  if (auto kind = ClassifyKey(out.key.get()); !kind.ok())
    return Prefixed(absl::StrCat(flag, ": ", out.ref), kind.status());
  return out;
}

// Writes a generated key to `path` with mode 0600, never replacing a file: the key goes to a
// temporary file first (complete and synced), which is then hard-linked to `path` (link fails
// when `path` exists) and removed.
absl::Status WriteGeneratedKey(absl::string_view flag, const std::string& path, const SecretString& pem) {
  const std::string temporary = absl::StrCat(path, ".new-", ::getpid());
  MESHID_RETURN_IF_ERROR(WriteFileAtomic(temporary, pem.view(), 0600));
  const int linked = ::link(temporary.c_str(), path.c_str());
  const int link_errno = errno;
  ::unlink(temporary.c_str());  // failing leaves a stray file, not a wrong key
  if (linked == 0) return absl::OkStatus();
  if (link_errno == EEXIST) {
    return absl::AbortedError(
        absl::StrCat(flag, ": ", path, " was created by someone else meanwhile; run again to use it"));
  }
  return absl::InternalError(absl::StrCat(flag, ": writing ", path, ": ", std::strerror(link_errno)));
}

const EVP_MD* DigestFor(EVP_PKEY* key) {
  auto kind = ClassifyKey(key);
  return kind.ok() && *kind == KeyAlgorithm::kEcdsaP384 ? EVP_sha384() : EVP_sha256();
}

absl::Status AddExtension(X509* cert, absl::StatusOr<X509ExtensionPtr> ext) {
  if (!ext.ok()) return ext.status();
  if (*ext == nullptr || X509_add_ext(cert, ext->get(), -1) != 1) {  // X509_add_ext copies it
    return OpenSslError("adding an extension to the intermediate");
  }
  return absl::OkStatus();
}

// The intermediate's certificate, signed by `root_key`. The serial is 16 random bytes, positive.
absl::StatusOr<X509Ptr> CreateIntermediate(EVP_PKEY* key, X509* root, EVP_PKEY* root_key,
                                           const std::string& trust_domain, absl::Duration lifetime, const Clock& clock,
                                           RandomSource& random) {
  X509Ptr cert(X509_new());
  if (!cert) return OpenSslError("allocating the intermediate certificate");
  const absl::Time now = clock.Now();
  uint8_t bytes[16];
  random.Fill(bytes, sizeof(bytes));
  bytes[0] = (bytes[0] & 0x7f) | 0x40;  // positive, full width
  BignumPtr bn(BN_bin2bn(bytes, sizeof(bytes), nullptr));
  Asn1IntegerPtr serial(bn ? BN_to_ASN1_INTEGER(bn.get(), nullptr) : nullptr);
  if (!serial) return OpenSslError("encoding the intermediate's serial number");
  if (X509_set_version(cert.get(), X509_VERSION_3) != 1 || X509_set_serialNumber(cert.get(), serial.get()) != 1) {
    return OpenSslError("setting the intermediate's version and serial number");
  }
  X509_NAME* name = X509_get_subject_name(cert.get());
  const std::string common_name =
      absl::StrCat("meshid intermediate CA ", absl::FormatTime("%Y-%m-%d", now, absl::UTCTimeZone()));
  if (X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(trust_domain.c_str()),
                                 -1, -1, 0) != 1 ||
      X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(common_name.c_str()),
                                 -1, -1, 0) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("--trust-domain: \"", trust_domain, "\" cannot be a subject O"));
  }
  if (X509_set_issuer_name(cert.get(), X509_get_subject_name(root)) != 1) {
    return OpenSslError("setting the intermediate's issuer name");
  }
  // Backdated a little (never before the root), for machines whose clocks run behind this one's.
  const absl::Time not_before = std::max(now - kIntermediateBackdate, NotBefore(root));
  const absl::Time not_after = std::min(now + lifetime, NotAfter(root));
  if (ASN1_TIME_set(X509_getm_notBefore(cert.get()), absl::ToTimeT(not_before)) == nullptr ||
      ASN1_TIME_set(X509_getm_notAfter(cert.get()), absl::ToTimeT(not_after)) == nullptr) {
    return OpenSslError("setting the intermediate's validity");
  }
  if (X509_set_pubkey(cert.get(), key) != 1) return OpenSslError("setting the intermediate's public key");

  BasicConstraintsPtr constraints(BASIC_CONSTRAINTS_new());
  if (!constraints || (constraints->pathlen = ASN1_INTEGER_new()) == nullptr ||
      ASN1_INTEGER_set(constraints->pathlen, 0) != 1) {
    return OpenSslError("building basicConstraints");
  }
  constraints->ca = 0xff;
  MESHID_RETURN_IF_ERROR(
      AddExtension(cert.get(), MakeExtension(NID_basic_constraints, /*critical=*/true, constraints.get())));
  Asn1StringPtr usage(ASN1_BIT_STRING_new());
  // RFC 5280 §4.2.1.3: digitalSignature (0), keyCertSign (5), cRLSign (6).
  for (int bit : {0, 5, 6}) {
    if (!usage || ASN1_BIT_STRING_set_bit(usage.get(), bit, 1) != 1) return OpenSslError("building keyUsage");
  }
  MESHID_RETURN_IF_ERROR(AddExtension(cert.get(), MakeExtension(NID_key_usage, /*critical=*/true, usage.get())));
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, root, cert.get(), nullptr, nullptr, 0);
  MESHID_RETURN_IF_ERROR(AddExtension(
      cert.get(), X509ExtensionPtr(X509V3_EXT_nconf_nid(nullptr, &ctx, NID_subject_key_identifier, "hash"))));
  MESHID_RETURN_IF_ERROR(AddExtension(
      cert.get(), X509ExtensionPtr(X509V3_EXT_nconf_nid(nullptr, &ctx, NID_authority_key_identifier, "keyid:always"))));
  MESHID_ASSIGN_OR_RETURN(GeneralNamesPtr names, MakeGeneralNames({{GEN_URI, "spiffe://" + trust_domain}}));
  MESHID_RETURN_IF_ERROR(
      AddExtension(cert.get(), MakeExtension(NID_subject_alt_name, /*critical=*/false, names.get())));
  if (X509_sign(cert.get(), root_key, DigestFor(root_key)) <= 0) {
    return OpenSslError("signing the intermediate with the root's key");
  }
  return cert;
}

// The checks and result of ParsePluggedInAuthority over `material`, with the key given.
absl::StatusOr<std::shared_ptr<const SigningAuthority>> ParseMaterial(const StoredCaMaterial& material,
                                                                      SecretString key_pem, const CaTokenKey& token,
                                                                      const Clock& clock) {
  PluggedInFiles files;
  files.dir = kRecordLabel;
  files.ca_cert = material.ca_cert_pem;
  files.ca_key = std::move(key_pem);
  files.cert_chain = material.cert_chain_pem;
  files.root_cert = material.root_cert_pem;
  return ParsePluggedInAuthority(files, clock, token);
}

}  // namespace

bool IsTokenKeyRef(absl::string_view key_ref) { return absl::StartsWithIgnoreCase(key_ref, "pkcs11:"); }

std::string CanonicalKeyRef(const std::string& key_ref) {
  if (key_ref.empty() || IsTokenKeyRef(key_ref)) return key_ref;
  std::error_code error;  // absolute() fails only without a working directory: keep it as given
  std::filesystem::path path = std::filesystem::absolute(key_ref, error);
  return error ? key_ref : path.lexically_normal().string();
}

absl::StatusOr<StoredCaMaterial> MakeRotationMaterial(const NewCaMaterialOptions& options,
                                                      const OpenTokenKey& open_token_key, const Clock& clock,
                                                      RandomSource& random) {
  const bool root = options.kind == kCaRotationRoot;
  if (!root && options.kind != kCaRotationIntermediate) {
    return absl::InvalidArgumentError(
        absl::StrCat("--kind: \"", options.kind, "\": must be ", kCaRotationRoot, " or ", kCaRotationIntermediate));
  }
  if (options.trust_domain.empty()) return absl::InvalidArgumentError("--trust-domain: required");
  if (options.lifetime < absl::ZeroDuration()) return absl::InvalidArgumentError("--lifetime: must be positive");
  const absl::Duration lifetime = options.lifetime != absl::ZeroDuration() ? options.lifetime
                                  : root                                   ? kDefaultRootLifetime
                                                                           : kDefaultIntermediateLifetime;
  const absl::Time now = clock.Now();

  // The signing root of an intermediate, checked before any key is generated.
  X509Ptr root_cert;
  ResolvedKey root_key;
  if (!root) {
    if (options.root_cert_pem.empty()) return absl::InvalidArgumentError("--root-cert: required for an intermediate");
    auto parsed = CertFromPem(options.root_cert_pem);
    if (!parsed.ok()) return Prefixed("--root-cert", parsed.status());
    root_cert = *std::move(parsed);
    if (!IsCa(root_cert.get()) || !IsSelfSigned(root_cert.get())) {
      return absl::InvalidArgumentError("--root-cert: not a self-signed CA certificate");
    }
    if (NotAfter(root_cert.get()) <= now) {
      return absl::FailedPreconditionError(
          absl::StrCat("--root-cert: the root expired at ", Rfc3339(NotAfter(root_cert.get()))));
    }
    MESHID_ASSIGN_OR_RETURN(root_key, ResolveKey("--root-key", options.root_key_ref, /*may_generate=*/false,
                                                 options.key_algorithm, open_token_key));
    if (!SamePublicKey(X509_get0_pubkey(root_cert.get()), root_key.key.get())) {
      return absl::InvalidArgumentError(absl::StrCat("--root-key: ", root_key.ref, " does not match --root-cert"));
    }
  }

  MESHID_ASSIGN_OR_RETURN(ResolvedKey key, ResolveKey("--key", options.key_ref, /*may_generate=*/true,
                                                      options.key_algorithm, open_token_key));
  if (!root && SamePublicKey(key.key.get(), root_key.key.get())) {
    return absl::InvalidArgumentError(
        absl::StrCat("--key: ", key.ref, " is the root's key (--root-key); an intermediate needs a key of its own"));
  }

  StoredCaMaterial material;
  material.key_ref = key.ref;
  if (root) {
    MESHID_ASSIGN_OR_RETURN(X509Ptr cert,
                            CreateSelfSignedRoot(key.key.get(), options.trust_domain, lifetime, clock, random));
    material.ca_cert_pem = CertToPem(cert.get());
    material.cert_chain_pem = material.ca_cert_pem;
    material.root_cert_pem = material.ca_cert_pem;
  } else {
    MESHID_ASSIGN_OR_RETURN(X509Ptr cert, CreateIntermediate(key.key.get(), root_cert.get(), root_key.key.get(),
                                                             options.trust_domain, lifetime, clock, random));
    material.ca_cert_pem = CertToPem(cert.get());
    material.root_cert_pem = CertToPem(root_cert.get());
    material.cert_chain_pem = material.ca_cert_pem + material.root_cert_pem;
  }

  // As a server will load it; a failure here is ours.
  SecretString key_pem(std::string(key.pem.view()));
  if (auto loaded = ParseMaterial(material, std::move(key_pem), key.token, clock); !loaded.ok()) {
    return absl::InternalError(absl::StrCat("the new material does not hold together: ", loaded.status().message()));
  }
  if (key.generated) MESHID_RETURN_IF_ERROR(WriteGeneratedKey("--key", key.ref, key.pem));
  return material;
}

absl::StatusOr<std::shared_ptr<const SigningAuthority>> LoadStoredCaMaterial(const StoredCaMaterial& material,
                                                                             const OpenTokenKey& open_token_key,
                                                                             const Clock& clock) {
  if (material.empty()) return absl::InvalidArgumentError("the CA rotation record holds no signing certificate");
  MESHID_ASSIGN_OR_RETURN(X509Ptr cert, CertFromPem(material.ca_cert_pem, "the CA rotation record's signing cert"));
  if (IsTokenKeyRef(material.key_ref)) {
    auto token = open_token_key(material.key_ref);
    if (!token.ok()) return Prefixed(material.key_ref, token.status());
    return ParseMaterial(material, SecretString(), *token, clock);
  }
  auto text = ReadFile(material.key_ref, kMaxKeyFile);
  if (!text.ok()) return text.status();  // names the file
  SecretString pem(*std::move(text));
  auto key = PrivateKeyFromPem(pem.view());
  if (!key.ok()) return Prefixed(material.key_ref, key.status());
  if (!SamePublicKey(X509_get0_pubkey(cert.get()), key->get())) {
    return absl::InvalidArgumentError(
        absl::StrCat(material.key_ref, ": private key does not match the CA rotation record's signing certificate"));
  }
  return ParseMaterial(material, std::move(pem), nullptr, clock);
}

absl::StatusOr<std::string> RootFingerprintsOfPem(absl::string_view roots_pem) {
  SigningAuthority roots;  // TrustAnchorFingerprint reads only the roots
  MESHID_ASSIGN_OR_RETURN(roots.roots, CertsFromPem(roots_pem));
  return TrustAnchorFingerprint(roots);
}

absl::StatusOr<SigningCertSummary> SummarizeSigningCert(const StoredCaMaterial& material) {
  MESHID_ASSIGN_OR_RETURN(X509Ptr cert, CertFromPem(material.ca_cert_pem, "signing certificate"));
  return SigningCertSummary{SerialHex(cert.get()), NotAfter(cert.get())};
}

}  // namespace meshid
