// Signs with OpenSSL's low-level EC_KEY/RSA objects, which bypass the provider machinery.
#define OPENSSL_SUPPRESS_DEPRECATED

#include "ca/cert_issuer.h"

#include <arpa/inet.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/rsa.h>

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/der.h"
#include "common/keys.h"
#include "common/pem.h"
#include "common/status_macros.h"
#include "common/x509.h"
#include "pkcs11/token_key.h"

namespace meshid {
namespace {

const EVP_MD* DigestFor(EVP_PKEY* signing_key) {
  auto kind = ClassifyKey(signing_key);
  if (kind.ok() && *kind == KeyAlgorithm::kEcdsaP384) return EVP_sha384();
  return EVP_sha256();
}

constexpr size_t kSerialBytes = 16;

// A positive 127-bit serial of full width: the first 6 bytes are the issuance time in Unix
// milliseconds (big-endian; its top bit stays clear until the year 6429), the other 10 bytes (80
// bits) come from the CSPRNG, more than the 64 random bits the CA/Browser Forum requires of
// public CAs. Leading with the time makes serials, and so the ledger's primary key, grow with
// issuance: a batch of ledger rows lands on the index's last pages instead of dirtying one
// random B-tree page per certificate.
void TimeOrderedSerial(absl::Time now, RandomSource& random, uint8_t (&serial)[kSerialBytes]) {
  uint64_t millis = static_cast<uint64_t>(std::max<int64_t>(absl::ToUnixMillis(now), 1));
  for (int i = 5; i >= 0; --i, millis >>= 8) serial[i] = static_cast<uint8_t>(millis);
  serial[0] &= 0x7f;
  random.Fill(serial + 6, kSerialBytes - 6);
}

absl::StatusOr<Asn1IntegerPtr> SerialInteger(absl::Time now, RandomSource& random) {
  uint8_t bytes[kSerialBytes];
  TimeOrderedSerial(now, random, bytes);
  BignumPtr bn(BN_bin2bn(bytes, sizeof(bytes), nullptr));
  if (!bn) return OpenSslError("converting the serial number");
  Asn1IntegerPtr serial(BN_to_ASN1_INTEGER(bn.get(), nullptr));
  if (!serial) return OpenSslError("encoding the serial number");
  return serial;
}

absl::Status SetTime(ASN1_TIME* field, absl::Time t, absl::string_view which) {
  if (ASN1_TIME_set(field, absl::ToTimeT(t)) == nullptr) return OpenSslError(absl::StrCat("setting ", which));
  return absl::OkStatus();
}

// KeyUsage bit numbers from RFC 5280 §4.2.1.3.
constexpr int kDigitalSignature = 1 << 0;
constexpr int kKeyEncipherment = 1 << 2;
constexpr int kKeyCertSign = 1 << 5;
constexpr int kCrlSign = 1 << 6;

absl::StatusOr<X509ExtensionPtr> KeyUsageExtension(int bits) {
  Asn1StringPtr usage(ASN1_BIT_STRING_new());
  if (!usage) return OpenSslError("allocating keyUsage");
  for (int bit = 0; bit < 9; ++bit) {
    if ((bits & (1 << bit)) != 0 && ASN1_BIT_STRING_set_bit(usage.get(), bit, 1) != 1) {
      return OpenSslError("building keyUsage");
    }
  }
  return MakeExtension(NID_key_usage, /*critical=*/true, usage.get());
}

absl::StatusOr<X509ExtensionPtr> ExtendedKeyUsageExtension(bool server_only) {
  Asn1ObjectStackPtr usages(sk_ASN1_OBJECT_new_null());
  if (!usages || sk_ASN1_OBJECT_push(usages.get(), OBJ_nid2obj(NID_server_auth)) <= 0 ||
      (!server_only && sk_ASN1_OBJECT_push(usages.get(), OBJ_nid2obj(NID_client_auth)) <= 0)) {
    return OpenSslError("building extendedKeyUsage");
  }
  return MakeExtension(NID_ext_key_usage, /*critical=*/false, usages.get());
}

absl::StatusOr<X509ExtensionPtr> BasicConstraintsExtension(bool ca) {
  BasicConstraintsPtr constraints(BASIC_CONSTRAINTS_new());
  if (!constraints) return OpenSslError("allocating basicConstraints");
  constraints->ca = ca ? 0xff : 0;
  return MakeExtension(NID_basic_constraints, /*critical=*/true, constraints.get());
}

absl::StatusOr<std::string> ExtensionDer(absl::StatusOr<X509ExtensionPtr> ext) {
  if (!ext.ok()) return ext.status();
  return EncodeDer([&](unsigned char** out) { return i2d_X509_EXTENSION(ext->get(), out); }, "encoding an extension");
}

bool IsIpAddress(const std::string& s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

// Extension ::= SEQUENCE { extnID, critical BOOLEAN TRUE, extnValue OCTET STRING(GeneralNames) }
std::string SanExtensionDer(const std::vector<std::pair<int, std::string>>& names) {
  std::string general_names;
  for (const auto& [type, value] : names) {
    if (type == GEN_IPADD) {
      unsigned char buf[16];
      size_t len =
          inet_pton(AF_INET, value.c_str(), buf) == 1 ? 4 : (inet_pton(AF_INET6, value.c_str(), buf) == 1 ? 16 : 0);
      der::AppendTlv(&general_names, der::ContextPrimitive(7), absl::string_view(reinterpret_cast<char*>(buf), len));
    } else {
      der::AppendTlv(&general_names, der::ContextPrimitive(type == GEN_URI ? 6 : 2), value);
    }
  }
  constexpr absl::string_view kOidSubjectAltName("\x06\x03\x55\x1d\x11", 5);
  constexpr absl::string_view kCritical("\x01\x01\xff", 3);
  std::string body =
      absl::StrCat(kOidSubjectAltName, kCritical, der::Tlv(der::kOctetString, der::Tlv(der::kSequence, general_names)));
  return der::Tlv(der::kSequence, body);
}

}  // namespace

// Signs digests with OpenSSL's low-level key objects, which skip the provider dispatch, or with
// a key in a PKCS#11 token.
struct CertIssuer::Signer {
  EcKeyPtr ec;  // exactly one of ec, rsa and token is set
  RsaPtr rsa;
  const pkcs11::TokenKey* token = nullptr;  // owned by the authority's key
  const EVP_MD* md = nullptr;

  absl::StatusOr<std::string> Sign(absl::string_view data) const {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    if (EVP_Digest(data.data(), data.size(), digest, &digest_len, md, nullptr) != 1) {
      return OpenSslError("hashing the certificate");
    }
    // The token's own status (UNAVAILABLE while it is gone) rather than an OpenSSL error.
    if (token != nullptr) return token->SignDigest(md, absl::string_view(reinterpret_cast<char*>(digest), digest_len));
    std::string sig(
        ec != nullptr ? static_cast<size_t>(ECDSA_size(ec.get())) : static_cast<size_t>(RSA_size(rsa.get())), '\0');
    unsigned int sig_len = 0;
    int ok = ec != nullptr ? ECDSA_sign(0, digest, static_cast<int>(digest_len),
                                        reinterpret_cast<unsigned char*>(sig.data()), &sig_len, ec.get())
                           : RSA_sign(EVP_MD_get_type(md), digest, digest_len,
                                      reinterpret_cast<unsigned char*>(sig.data()), &sig_len, rsa.get());
    if (ok != 1) return OpenSslError("signing");
    sig.resize(sig_len);
    return sig;
  }
};

CertIssuer::CertIssuer(std::shared_ptr<const SigningAuthority> authority, const Clock& clock, RandomSource& random,
                       absl::Duration clock_skew)
    : authority_(std::move(authority)),
      clock_(clock),
      random_(random),
      clock_skew_(clock_skew),
      signer_(std::make_unique<Signer>()) {}

absl::StatusOr<std::unique_ptr<CertIssuer>> CertIssuer::Create(std::shared_ptr<const SigningAuthority> authority,
                                                               const Clock& clock, RandomSource& random,
                                                               absl::Duration clock_skew) {
  if (authority == nullptr || authority->cert == nullptr || authority->key == nullptr) {
    return absl::InvalidArgumentError("the signing authority has no certificate or key");
  }
  std::unique_ptr<CertIssuer> issuer(new CertIssuer(std::move(authority), clock, random, clock_skew));
  X509* cert = issuer->authority_->cert.get();
  issuer->signing_serial_hex_ = SerialHex(cert);
  issuer->chain_not_after_ = NotAfter(cert);
  for (const auto& c : issuer->authority_->intermediates) {
    issuer->chain_not_after_ = std::min(issuer->chain_not_after_, NotAfter(c.get()));
  }

  EVP_PKEY* key = issuer->authority_->key.get();
  Signer& signer = *issuer->signer_;
  signer.md = DigestFor(key);
  const int key_type = EVP_PKEY_get_base_id(key);
  signer.token = pkcs11::TokenKey::Of(key);
  if (key_type == EVP_PKEY_EC) {
    if (signer.token == nullptr) signer.ec.reset(EVP_PKEY_get1_EC_KEY(key));
    if (!signer.ec && signer.token == nullptr) return OpenSslError("reading the CA's EC key");
    // AlgorithmIdentifier for ecdsa-with-SHA256 / ecdsa-with-SHA384 (no parameters).
    issuer->signature_algorithm_ = signer.md == EVP_sha384()
                                       ? std::string("\x30\x0a\x06\x08\x2a\x86\x48\xce\x3d\x04\x03\x03", 12)
                                       : std::string("\x30\x0a\x06\x08\x2a\x86\x48\xce\x3d\x04\x03\x02", 12);
  } else if (key_type == EVP_PKEY_RSA) {
    if (signer.token == nullptr) signer.rsa.reset(EVP_PKEY_get1_RSA(key));
    if (!signer.rsa && signer.token == nullptr) return OpenSslError("reading the CA's RSA key");
    // sha256WithRSAEncryption with NULL parameters.
    issuer->signature_algorithm_ = std::string("\x30\x0d\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0b\x05\x00", 15);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("the CA key is ", DescribeKey(key), "; a CA signs with an ECDSA or RSA key"));
  }
  MESHID_ASSIGN_OR_RETURN(
      issuer->issuer_name_,
      EncodeDer([&](unsigned char** out) { return i2d_X509_NAME(X509_get_subject_name(cert), out); },
                "encoding the CA's subject name"));
  MESHID_ASSIGN_OR_RETURN(issuer->ext_basic_constraints_, ExtensionDer(BasicConstraintsExtension(false)));
  MESHID_ASSIGN_OR_RETURN(issuer->ext_key_usage_ec_, ExtensionDer(KeyUsageExtension(kDigitalSignature)));
  MESHID_ASSIGN_OR_RETURN(issuer->ext_key_usage_rsa_,
                          ExtensionDer(KeyUsageExtension(kDigitalSignature | kKeyEncipherment)));
  MESHID_ASSIGN_OR_RETURN(issuer->ext_eku_svid_, ExtensionDer(ExtendedKeyUsageExtension(false)));
  MESHID_ASSIGN_OR_RETURN(issuer->ext_eku_server_, ExtensionDer(ExtendedKeyUsageExtension(true)));
  // AKI = the issuer's SKI (key identifier only).
  if (const ASN1_OCTET_STRING* skid = X509_get0_subject_key_id(cert); skid != nullptr) {
    AuthorityKeyIdPtr akid(AUTHORITY_KEYID_new());
    if (!akid || (akid->keyid = ASN1_OCTET_STRING_dup(skid)) == nullptr) {
      return OpenSslError("building authorityKeyIdentifier");
    }
    MESHID_ASSIGN_OR_RETURN(issuer->ext_authority_key_id_,
                            ExtensionDer(MakeExtension(NID_authority_key_identifier, /*critical=*/false, akid.get())));
  }
  return issuer;
}

CertIssuer::~CertIssuer() = default;

absl::StatusOr<IssuedCertificate> CertIssuer::Issue(absl::string_view spki_der, bool rsa_key,
                                                    absl::string_view san_extension, bool server_only,
                                                    absl::Duration ttl) const {
  const absl::Time issued_at = clock_.Now();  // the serial keeps its milliseconds, the validity whole seconds
  absl::Time now = absl::FromUnixSeconds(absl::ToUnixSeconds(issued_at));
  if (now >= chain_not_after_) {
    return absl::FailedPreconditionError("the CA signing certificate (or its chain) has expired");
  }
  if (ttl <= absl::ZeroDuration()) return absl::InvalidArgumentError("certificate lifetime must be positive");
  absl::Time not_before = now - clock_skew_;
  absl::Time not_after = std::min(now + ttl, chain_not_after_);

  uint8_t serial[kSerialBytes];
  TimeOrderedSerial(issued_at, random_, serial);
  absl::string_view serial_bytes(reinterpret_cast<char*>(serial), sizeof(serial));

  std::string extensions;
  extensions.reserve(512);
  absl::StrAppend(&extensions, ext_basic_constraints_, rsa_key ? ext_key_usage_rsa_ : ext_key_usage_ec_,
                  server_only ? ext_eku_server_ : ext_eku_svid_, ext_authority_key_id_, san_extension);
  std::string tbs_body;
  tbs_body.reserve(1024);
  absl::StrAppend(&tbs_body, absl::string_view("\xa0\x03\x02\x01\x02", 5),  // [0] version v3
                  der::UnsignedIntegerTlv(serial_bytes), signature_algorithm_, issuer_name_,
                  der::Tlv(der::kSequence, der::TimeTlv(not_before) + der::TimeTlv(not_after)),
                  absl::string_view("\x30\x00", 2),  // empty subject
                  spki_der, der::Tlv(der::ContextConstructed(3), der::Tlv(der::kSequence, extensions)));
  std::string tbs = der::Tlv(der::kSequence, tbs_body);
  MESHID_ASSIGN_OR_RETURN(std::string signature, signer_->Sign(tbs));
  std::string cert_body =
      absl::StrCat(tbs, signature_algorithm_, der::Tlv(der::kBitString, absl::StrCat(std::string(1, '\0'), signature)));

  IssuedCertificate out;
  out.der = der::Tlv(der::kSequence, cert_body);
  out.pem = EncodePem("CERTIFICATE", out.der);
  out.serial_hex = absl::AsciiStrToUpper(absl::BytesToHexString(serial_bytes));
  out.not_before = not_before;
  out.not_after = not_after;
  return out;
}

absl::StatusOr<IssuedCertificate> CertIssuer::IssueSvid(absl::string_view spki_der, KeyAlgorithm key_algorithm,
                                                        const SpiffeId& id, absl::Duration ttl,
                                                        const std::vector<std::string>& dns_sans) const {
  std::vector<std::pair<int, std::string>> names = {{GEN_URI, id.ToString()}};
  for (const auto& dns : dns_sans) names.emplace_back(GEN_DNS, dns);
  // Critical because the subject is empty (RFC 5280 §4.2.1.6).
  return Issue(spki_der, IsRsa(key_algorithm), SanExtensionDer(names), /*server_only=*/false, ttl);
}

absl::StatusOr<IssuedCertificate> CertIssuer::IssueServingCert(EVP_PKEY* public_key,
                                                               const std::vector<std::string>& names,
                                                               absl::Duration ttl) const {
  MESHID_ASSIGN_OR_RETURN(std::string spki, PublicKeyDer(public_key));
  std::vector<std::pair<int, std::string>> general_names;
  for (const auto& name : names) general_names.emplace_back(IsIpAddress(name) ? GEN_IPADD : GEN_DNS, name);
  return Issue(spki, EVP_PKEY_get_base_id(public_key) == EVP_PKEY_RSA, SanExtensionDer(general_names),
               /*server_only=*/true, ttl);
}

absl::StatusOr<X509Ptr> CreateSelfSignedRoot(EVP_PKEY* key, const std::string& trust_domain, absl::Duration lifetime,
                                             const Clock& clock, RandomSource& random) {
  X509Ptr cert(X509_new());
  if (!cert) return OpenSslError("allocating the root certificate");
  const absl::Time now = clock.Now();
  MESHID_ASSIGN_OR_RETURN(Asn1IntegerPtr serial, SerialInteger(now, random));
  if (X509_set_version(cert.get(), X509_VERSION_3) != 1 || X509_set_serialNumber(cert.get(), serial.get()) != 1) {
    return OpenSslError("setting the root's version and serial number");
  }
  X509_NAME* name = X509_get_subject_name(cert.get());
  if (X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(trust_domain.c_str()),
                                 -1, -1, 0) != 1) {
    return OpenSslError(absl::StrCat("setting the root's subject O=", trust_domain));
  }
  if (X509_set_issuer_name(cert.get(), name) != 1) return OpenSslError("setting the root's issuer name");
  MESHID_RETURN_IF_ERROR(SetTime(X509_getm_notBefore(cert.get()), now, "the root's notBefore"));
  MESHID_RETURN_IF_ERROR(SetTime(X509_getm_notAfter(cert.get()), now + lifetime, "the root's notAfter"));
  if (X509_set_pubkey(cert.get(), key) != 1) return OpenSslError("setting the root's public key");
  // X509_add_ext copies the extension; ours is freed on return.
  auto add = [&](absl::StatusOr<X509ExtensionPtr> ext) -> absl::Status {
    if (!ext.ok()) return ext.status();
    if (X509_add_ext(cert.get(), ext->get(), -1) != 1) return OpenSslError("adding an extension to the root");
    return absl::OkStatus();
  };
  MESHID_RETURN_IF_ERROR(add(BasicConstraintsExtension(true)));
  MESHID_RETURN_IF_ERROR(add(KeyUsageExtension(kKeyCertSign | kCrlSign)));
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert.get(), cert.get(), nullptr, nullptr, 0);
  X509ExtensionPtr ski(X509V3_EXT_nconf_nid(nullptr, &ctx, NID_subject_key_identifier, "hash"));
  if (!ski) return OpenSslError("building the root's subjectKeyIdentifier");
  MESHID_RETURN_IF_ERROR(add(std::move(ski)));
  MESHID_ASSIGN_OR_RETURN(GeneralNamesPtr names, MakeGeneralNames({{GEN_URI, "spiffe://" + trust_domain}}));
  MESHID_RETURN_IF_ERROR(add(MakeExtension(NID_subject_alt_name, /*critical=*/false, names.get())));
  if (X509_sign(cert.get(), key, DigestFor(key)) <= 0) return OpenSslError("self-signing the root");
  return cert;
}

}  // namespace meshid
