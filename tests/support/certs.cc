#include "tests/support/certs.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/files.h"
#include "common/status_macros.h"
#include "common/x509.h"

namespace meshid::testing {
namespace {

absl::Status OpenSslFailure(absl::string_view step) {
  return absl::InternalError(absl::StrCat("test certificate: ", step, " failed: ", DrainOpenSslErrors()));
}

absl::Status AddNameEntry(X509_NAME* name, const char* field, const std::string& value) {
  if (value.empty()) return absl::OkStatus();
  if (X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(value.c_str()), -1,
                                 -1, 0) != 1) {
    return OpenSslFailure(absl::StrCat("subject ", field));
  }
  return absl::OkStatus();
}

absl::Status SetRandomSerial(X509* cert) {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) return OpenSslFailure("RAND_bytes");
  bytes[0] = (bytes[0] & 0x7f) | 0x40;  // positive, and 16 bytes long in DER
  BignumPtr bn(BN_bin2bn(bytes, sizeof(bytes), nullptr));
  if (bn == nullptr || BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert)) == nullptr) {
    return OpenSslFailure("serial number");
  }
  return absl::OkStatus();
}

absl::Status SetValidity(X509* cert, absl::Time not_before, absl::Time not_after) {
  if (ASN1_TIME_set(X509_getm_notBefore(cert), absl::ToTimeT(not_before)) == nullptr ||
      ASN1_TIME_set(X509_getm_notAfter(cert), absl::ToTimeT(not_after)) == nullptr) {
    return OpenSslFailure("validity");
  }
  return absl::OkStatus();
}

// One extension in openssl.cnf syntax ("critical,CA:TRUE"), resolved against `ctx`.
absl::Status AddExtension(X509* cert, X509V3_CTX& ctx, int nid, const std::string& value) {
  X509ExtensionPtr ext(X509V3_EXT_nconf_nid(nullptr, &ctx, nid, value.c_str()));
  if (ext == nullptr) return OpenSslFailure(absl::StrCat(OBJ_nid2sn(nid), "=", value));
  if (X509_add_ext(cert, ext.get(), -1) != 1) return OpenSslFailure(absl::StrCat("adding ", OBJ_nid2sn(nid)));
  return absl::OkStatus();
}

absl::Status AddExtensions(X509* cert, X509* issuer, const CertificateSpec& spec, EVP_PKEY* subject_key) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer != nullptr ? issuer : cert, cert, nullptr, nullptr, 0);
  std::vector<std::pair<int, std::string>> extensions;
  if (spec.ca) {
    extensions = {{NID_basic_constraints, "critical,CA:TRUE"},
                  {NID_key_usage, "critical,keyCertSign,cRLSign"},
                  {NID_subject_key_identifier, "hash"}};
  } else {
    const bool rsa = EVP_PKEY_get_base_id(subject_key) == EVP_PKEY_RSA;
    extensions = {{NID_basic_constraints, "critical,CA:FALSE"},
                  {NID_key_usage, rsa ? "critical,digitalSignature,keyEncipherment" : "critical,digitalSignature"},
                  {NID_ext_key_usage, "serverAuth,clientAuth"},
                  {NID_subject_key_identifier, "hash"}};
    if (!spec.uri_sans.empty()) {
      extensions.emplace_back(
          NID_subject_alt_name,
          absl::StrCat("critical,", absl::StrJoin(spec.uri_sans, ",", [](std::string* out, const std::string& uri) {
                         absl::StrAppend(out, "URI:", uri);
                       })));
    }
  }
  if (issuer != nullptr && X509_get0_subject_key_id(issuer) != nullptr) {
    extensions.emplace_back(NID_authority_key_identifier, "keyid");
  }
  for (const auto& [nid, value] : extensions) MESHID_RETURN_IF_ERROR(AddExtension(cert, ctx, nid, value));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<X509Ptr> SignCertificate(const CertificateSpec& spec, EVP_PKEY* subject_key, X509* issuer,
                                        EVP_PKEY* issuer_key) {
  if (subject_key == nullptr) return absl::InvalidArgumentError("test certificate: no subject key");
  if (issuer != nullptr && issuer_key == nullptr) return absl::InvalidArgumentError("test certificate: no issuer key");
  X509Ptr cert(X509_new());
  if (cert == nullptr) return OpenSslFailure("X509_new");
  if (X509_set_version(cert.get(), X509_VERSION_3) != 1) return OpenSslFailure("version");
  MESHID_RETURN_IF_ERROR(SetRandomSerial(cert.get()));
  MESHID_RETURN_IF_ERROR(SetValidity(cert.get(), spec.not_before, spec.not_after));
  X509_NAME* subject = X509_get_subject_name(cert.get());
  MESHID_RETURN_IF_ERROR(AddNameEntry(subject, "O", spec.organization));
  MESHID_RETURN_IF_ERROR(AddNameEntry(subject, "CN", spec.common_name));
  if (X509_set_issuer_name(cert.get(), issuer != nullptr ? X509_get_subject_name(issuer) : subject) != 1) {
    return OpenSslFailure("issuer name");
  }
  if (X509_set_pubkey(cert.get(), subject_key) != 1) return OpenSslFailure("public key");
  MESHID_RETURN_IF_ERROR(AddExtensions(cert.get(), issuer, spec, subject_key));
  if (X509_sign(cert.get(), issuer != nullptr ? issuer_key : subject_key, EVP_sha256()) <= 0) {
    return OpenSslFailure("X509_sign");
  }
  return cert;
}

TestCa::TestCa(EvpPkeyPtr key, X509Ptr cert, std::string cert_pem)
    : key_(std::move(key)), cert_(std::move(cert)), cert_pem_(std::move(cert_pem)) {}

absl::StatusOr<TestCa> TestCa::Create(const Options& options) {
  MESHID_ASSIGN_OR_RETURN(EvpPkeyPtr key, GenerateKey(options.algorithm));
  CertificateSpec spec;
  spec.ca = true;
  spec.organization = options.organization;
  spec.not_before = options.not_before;
  spec.not_after = options.not_after;
  MESHID_ASSIGN_OR_RETURN(X509Ptr cert, SignCertificate(spec, key.get()));
  std::string pem = CertToPem(cert.get());
  return TestCa(std::move(key), std::move(cert), std::move(pem));
}

absl::StatusOr<TestCa> TestCa::FromDataDir(const std::string& dir) {
  MESHID_ASSIGN_OR_RETURN(std::string cert_pem, ReadFile(dir + "/root-cert.pem"));
  MESHID_ASSIGN_OR_RETURN(std::string key_pem, ReadFile(dir + "/ca-key.pem"));
  MESHID_ASSIGN_OR_RETURN(X509Ptr cert, CertFromPem(cert_pem, dir + "/root-cert.pem"));
  MESHID_ASSIGN_OR_RETURN(EvpPkeyPtr key, PrivateKeyFromPem(key_pem));
  return TestCa(std::move(key), std::move(cert), std::move(cert_pem));
}

absl::StatusOr<X509Ptr> TestCa::Sign(const CertificateSpec& spec, EVP_PKEY* subject_key) const {
  return SignCertificate(spec, subject_key, cert_.get(), key_.get());
}

absl::StatusOr<CertAndKeyPem> TestCa::Leaf(std::vector<std::string> uri_sans, absl::Time not_before,
                                           absl::Time not_after) const {
  MESHID_ASSIGN_OR_RETURN(EvpPkeyPtr key, GenerateKey(KeyAlgorithm::kEcdsaP256));
  CertificateSpec spec;
  spec.uri_sans = std::move(uri_sans);
  spec.not_before = not_before;
  spec.not_after = not_after;
  MESHID_ASSIGN_OR_RETURN(X509Ptr cert, Sign(spec, key.get()));
  MESHID_ASSIGN_OR_RETURN(SecretString key_pem, PrivateKeyToPem(key.get()));
  return CertAndKeyPem{CertToPem(cert.get()), std::string(key_pem.view())};
}

absl::StatusOr<CertFiles> WriteCertFiles(const std::string& dir, const std::string& name, const CertAndKeyPem& pem) {
  CertFiles files{absl::StrCat(dir, "/", name, ".crt"), absl::StrCat(dir, "/", name, ".key")};
  MESHID_RETURN_IF_ERROR(WriteFileAtomic(files.cert, pem.cert));
  MESHID_RETURN_IF_ERROR(WriteFileAtomic(files.key, pem.key, 0600));
  return files;
}

absl::StatusOr<std::string> TestCa::Crl(const std::vector<X509*>& revoked, int64_t number) const {
  X509CrlPtr crl(X509_CRL_new());
  Asn1TimePtr now(ASN1_TIME_set(nullptr, absl::ToTimeT(absl::Now())));
  Asn1TimePtr next(ASN1_TIME_set(nullptr, absl::ToTimeT(absl::Now() + absl::Hours(24))));
  Asn1IntegerPtr crl_number(ASN1_INTEGER_new());
  if (!crl || !now || !next || !crl_number || X509_CRL_set_version(crl.get(), X509_CRL_VERSION_2) != 1 ||
      X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(cert_.get())) != 1 ||
      X509_CRL_set1_lastUpdate(crl.get(), now.get()) != 1 || X509_CRL_set1_nextUpdate(crl.get(), next.get()) != 1 ||
      ASN1_INTEGER_set_int64(crl_number.get(), number) != 1 ||
      X509_CRL_add1_ext_i2d(crl.get(), NID_crl_number, crl_number.get(), 0, 0) != 1) {
    return absl::InternalError("building a test CRL");
  }
  for (X509* cert : revoked) {
    X509RevokedPtr entry(X509_REVOKED_new());
    // set_serialNumber copies; the const_cast only satisfies OpenSSL 3.0's signature.
    if (!entry ||
        X509_REVOKED_set_serialNumber(entry.get(), const_cast<ASN1_INTEGER*>(X509_get0_serialNumber(cert))) != 1 ||
        X509_REVOKED_set_revocationDate(entry.get(), now.get()) != 1 ||
        X509_CRL_add0_revoked(crl.get(), entry.get()) != 1) {
      return absl::InternalError("adding a test CRL entry");
    }
    entry.release();  // owned by the CRL
  }
  if (X509_CRL_sign(crl.get(), key_.get(), EVP_sha256()) <= 0) return absl::InternalError("signing a test CRL");
  unsigned char* der = nullptr;
  const int len = i2d_X509_CRL(crl.get(), &der);
  if (len <= 0) return absl::InternalError("encoding a test CRL");
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

}  // namespace meshid::testing
