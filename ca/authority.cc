#include "ca/authority.h"

#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "ca/cert_issuer.h"
#include "common/files.h"
#include "common/status_macros.h"
#include "common/x509.h"

namespace meshid {
namespace {

std::string Join(const std::string& dir, const char* file) { return (std::filesystem::path(dir) / file).string(); }

absl::Status Prefix(const std::string& file, const absl::Status& s) {
  return absl::Status(s.code(), absl::StrCat(file, ": ", s.message()));
}

// Fills chain_pems (signing cert unless it is the root, intermediates, roots) and the bundle.
void FinishChain(SigningAuthority& a) {
  a.chain_pems.clear();
  a.root_bundle_pem.clear();
  if (!IsSelfSigned(a.cert.get())) a.chain_pems.push_back(CertToPem(a.cert.get()));
  for (const auto& c : a.intermediates) a.chain_pems.push_back(CertToPem(c.get()));
  for (const auto& r : a.roots) {
    std::string pem = CertToPem(r.get());
    a.chain_pems.push_back(pem);
    a.root_bundle_pem += pem;
  }
}

absl::Status CheckSigningCert(X509* cert, EVP_PKEY* key, const std::string& cert_file, const std::string& key_file,
                              absl::Time now) {
  EVP_PKEY* cert_key = X509_get0_pubkey(cert);
  if (cert_key == nullptr) {
    DrainOpenSslErrors();
    return absl::InvalidArgumentError(absl::StrCat(cert_file, ": the certificate's public key cannot be read"));
  }
  if (!SamePublicKey(cert_key, key)) {
    return absl::InvalidArgumentError(
        absl::StrCat(key_file, ": private key does not match the certificate in ", cert_file));
  }
  if (!IsCa(cert)) {
    return absl::InvalidArgumentError(
        absl::StrCat(cert_file, ": certificate is not a CA (basicConstraints CA:TRUE is missing)"));
  }
  if (uint32_t ku = X509_get_key_usage(cert); ku != UINT32_MAX && (ku & KU_KEY_CERT_SIGN) == 0) {
    return absl::InvalidArgumentError(absl::StrCat(cert_file, ": key usage does not allow keyCertSign"));
  }
  if (NotAfter(cert) <= now) {
    return absl::InvalidArgumentError(
        absl::StrCat(cert_file, ": CA certificate expired at ",
                     absl::FormatTime(absl::RFC3339_sec, NotAfter(cert), absl::UTCTimeZone())));
  }
  if (auto kind = ClassifyKey(key); !kind.ok()) return Prefix(key_file, kind.status());
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::shared_ptr<const SigningAuthority>> LoadOrCreateSelfSignedAuthority(
    const SelfSignedOptions& options, const Clock& clock, RandomSource& random) {
  MESHID_RETURN_IF_ERROR(EnsureDirectory(options.data_dir, 0700));
  std::string cert_file = Join(options.data_dir, "ca-cert.pem");
  std::string key_file = Join(options.data_dir, "ca-key.pem");
  auto authority = std::make_shared<SigningAuthority>();
  if (options.token_key != nullptr) {
    MESHID_ASSIGN_OR_RETURN(authority->key, pkcs11::TokenKey::AsEvpPkey(options.token_key));
    const std::string& key_name = options.token_key->description();
    if (std::filesystem::exists(key_file)) {
      return absl::FailedPreconditionError(absl::StrCat(key_file, " exists but the CA key is in a token (", key_name,
                                                        "); move the file away: one root has one private key"));
    }
    if (std::filesystem::exists(cert_file)) {
      MESHID_ASSIGN_OR_RETURN(std::string cert_pem, ReadFile(cert_file));
      MESHID_ASSIGN_OR_RETURN(authority->cert, CertFromPem(cert_pem, cert_file));
      MESHID_RETURN_IF_ERROR(
          CheckSigningCert(authority->cert.get(), authority->key.get(), cert_file, key_name, clock.Now()));
      if (!IsSelfSigned(authority->cert.get())) {
        return absl::InvalidArgumentError(
            absl::StrCat(cert_file, ": not a self-signed root (use --cacerts-dir for an intermediate)"));
      }
    } else {
      MESHID_RETURN_IF_ERROR(ClassifyKey(authority->key.get()).status());
      MESHID_ASSIGN_OR_RETURN(authority->cert, CreateSelfSignedRoot(authority->key.get(), options.trust_domain,
                                                                    options.lifetime, clock, random));
      MESHID_RETURN_IF_ERROR(WriteFileAtomic(cert_file, CertToPem(authority->cert.get()), 0644));
    }
    authority->roots.push_back(CopyCert(authority->cert.get()));
    authority->source = absl::StrCat("self-signed root in ", options.data_dir, ", key in ", key_name);
    FinishChain(*authority);
    return std::shared_ptr<const SigningAuthority>(std::move(authority));
  }
  auto key_pem = ReadFile(key_file);
  if (key_pem.ok()) {
    struct stat st {};
    if (stat(key_file.c_str(), &st) == 0 && (st.st_mode & 0077) != 0) {
      return absl::PermissionDeniedError(absl::StrCat(key_file, ": CA key is readable by group or others (mode ",
                                                      absl::StrFormat("%04o", st.st_mode & 07777), "); chmod 600 it"));
    }
    auto key = PrivateKeyFromPem(*key_pem);
    if (!key.ok()) return Prefix(key_file, key.status());
    auto cert_pem = ReadFile(cert_file);
    if (!cert_pem.ok()) return Prefix(cert_file, cert_pem.status());
    MESHID_ASSIGN_OR_RETURN(X509Ptr cert, CertFromPem(*cert_pem, cert_file));
    MESHID_RETURN_IF_ERROR(CheckSigningCert(cert.get(), key->get(), cert_file, key_file, clock.Now()));
    if (!IsSelfSigned(cert.get())) {
      return absl::InvalidArgumentError(
          absl::StrCat(cert_file, ": not a self-signed root (use --cacerts-dir for an intermediate)"));
    }
    authority->key = std::move(*key);
    authority->cert = std::move(cert);
  } else if (absl::IsNotFound(key_pem.status())) {
    if (std::filesystem::exists(cert_file)) {
      return absl::FailedPreconditionError(
          absl::StrCat(cert_file, " exists but ", key_file, " does not; refusing to replace the root"));
    }
    MESHID_ASSIGN_OR_RETURN(EvpPkeyPtr key, GenerateKey(options.key_algorithm));
    MESHID_ASSIGN_OR_RETURN(X509Ptr cert,
                            CreateSelfSignedRoot(key.get(), options.trust_domain, options.lifetime, clock, random));
    MESHID_ASSIGN_OR_RETURN(SecretString key_out, PrivateKeyToPem(key.get()));
    // The key first: a crash in between leaves a key without a cert, which the next start reports.
    MESHID_RETURN_IF_ERROR(WriteFileAtomic(key_file, key_out.view(), 0600));
    MESHID_RETURN_IF_ERROR(WriteFileAtomic(cert_file, CertToPem(cert.get()), 0644));
    authority->key = std::move(key);
    authority->cert = std::move(cert);
  } else {
    return key_pem.status();
  }
  authority->roots.push_back(CopyCert(authority->cert.get()));
  authority->source = absl::StrCat("self-signed root in ", options.data_dir);
  FinishChain(*authority);
  return std::shared_ptr<const SigningAuthority>(std::move(authority));
}

bool PluggedInFiles::SameContents(const PluggedInFiles& other) const {
  return ca_cert == other.ca_cert && ca_key.view() == other.ca_key.view() && cert_chain == other.cert_chain &&
         root_cert == other.root_cert;
}

absl::StatusOr<PluggedInFiles> ReadPluggedInFiles(const std::string& dir, bool key_in_token) {
  const std::string cert_file = Join(dir, "ca-cert.pem");
  const std::string key_file = Join(dir, "ca-key.pem");
  const std::string chain_file = Join(dir, "cert-chain.pem");
  const std::string root_file = Join(dir, "root-cert.pem");
  std::vector<std::string> missing;
  for (const auto& f : {cert_file, key_file, chain_file, root_file}) {
    if (key_in_token && f == key_file) continue;
    std::error_code ignored;  // an unreadable directory shows up below as a read error
    if (!std::filesystem::exists(f, ignored)) missing.push_back(f);
  }
  if (!missing.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("incomplete plug-in CA bundle: missing ", absl::StrJoin(missing, ", ")));
  }
  constexpr size_t kMaxFile = 1 << 20;
  PluggedInFiles files;
  files.dir = dir;
  // ReadFile's errors name the file.
  if (!key_in_token) {
    MESHID_ASSIGN_OR_RETURN(std::string key, ReadFile(key_file, kMaxFile));
    files.ca_key = SecretString(std::move(key));
  }
  MESHID_ASSIGN_OR_RETURN(files.ca_cert, ReadFile(cert_file, kMaxFile));
  MESHID_ASSIGN_OR_RETURN(files.cert_chain, ReadFile(chain_file, kMaxFile));
  MESHID_ASSIGN_OR_RETURN(files.root_cert, ReadFile(root_file, kMaxFile));
  return files;
}

absl::StatusOr<std::shared_ptr<const SigningAuthority>> LoadPluggedInAuthority(const std::string& dir,
                                                                               const Clock& clock) {
  MESHID_ASSIGN_OR_RETURN(PluggedInFiles files, ReadPluggedInFiles(dir));
  return ParsePluggedInAuthority(files, clock);
}

absl::StatusOr<std::shared_ptr<const SigningAuthority>> ParsePluggedInAuthority(const PluggedInFiles& files,
                                                                                const Clock& clock,
                                                                                const CaTokenKey& token_key) {
  const std::string& dir = files.dir;
  const std::string cert_file = Join(dir, "ca-cert.pem");
  const std::string chain_file = Join(dir, "cert-chain.pem");
  const std::string root_file = Join(dir, "root-cert.pem");
  const std::string key_file = token_key != nullptr ? token_key->description() : Join(dir, "ca-key.pem");
  auto authority = std::make_shared<SigningAuthority>();
  auto key = token_key != nullptr ? pkcs11::TokenKey::AsEvpPkey(token_key) : PrivateKeyFromPem(files.ca_key.view());
  if (!key.ok()) return Prefix(key_file, key.status());
  MESHID_ASSIGN_OR_RETURN(X509Ptr cert, CertFromPem(files.ca_cert, cert_file));
  absl::Time now = clock.Now();
  MESHID_RETURN_IF_ERROR(CheckSigningCert(cert.get(), key->get(), cert_file, key_file, now));

  MESHID_ASSIGN_OR_RETURN(std::vector<X509Ptr> roots, CertsFromPem(files.root_cert, root_file));
  for (size_t i = 0; i < roots.size(); ++i) {
    if (!IsCa(roots[i].get()) || !IsSelfSigned(roots[i].get())) {
      return absl::InvalidArgumentError(absl::StrCat(root_file, ": certificate ", i + 1, " is not a self-signed CA"));
    }
  }
  MESHID_ASSIGN_OR_RETURN(std::vector<X509Ptr> chain, CertsFromPem(files.cert_chain, chain_file));
  // Istio's convention: cert-chain.pem = ca-cert.pem + intermediates + root. Keep only what lies
  // strictly between the signing cert and the roots, in path order from the signing cert up.
  // Anything else there is refused: it is the chain of another signing certificate (a set
  // replaced file by file and caught half way), and would be handed out with every answer.
  std::vector<X509Ptr> between;
  for (auto& c : chain) {
    if (X509_cmp(c.get(), cert.get()) == 0 || IsSelfSigned(c.get())) continue;
    between.push_back(std::move(c));
  }
  for (X509* child = cert.get(); !between.empty();) {
    auto parent = std::find_if(between.begin(), between.end(),
                               [&](const X509Ptr& c) { return X509_check_issued(c.get(), child) == X509_V_OK; });
    if (parent == between.end()) {
      return absl::InvalidArgumentError(absl::StrCat(chain_file, ": holds ", between.size(),
                                                     " certificate(s) that are not on the path from ", cert_file,
                                                     " to its root (the chain of another certificate?)"));
    }
    authority->intermediates.push_back(std::move(*parent));
    between.erase(parent);
    child = authority->intermediates.back().get();
  }
  std::vector<X509*> untrusted, trusted;
  for (const auto& c : authority->intermediates) untrusted.push_back(c.get());
  for (const auto& r : roots) trusted.push_back(r.get());
  if (absl::Status s = VerifyCertChain(cert.get(), untrusted, trusted, now); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(cert_file, ": does not chain through ", chain_file, " to a root in ",
                                                   root_file, ": ", s.message()));
  }
  authority->cert = std::move(cert);
  authority->key = std::move(*key);
  authority->roots = std::move(roots);
  authority->source = absl::StrCat("plug-in CA in ", dir, token_key != nullptr ? ", key in " : "",
                                   token_key != nullptr ? token_key->description() : "");
  FinishChain(*authority);
  return std::shared_ptr<const SigningAuthority>(std::move(authority));
}

absl::Status WriteTrustBundle(const SigningAuthority& authority, const std::string& data_dir) {
  MESHID_RETURN_IF_ERROR(EnsureDirectory(data_dir, 0700));
  return WriteFileAtomic(Join(data_dir, "root-cert.pem"), authority.root_bundle_pem, 0644);
}

}  // namespace meshid
