#include "ca/cert_issuer.h"

#include <arpa/inet.h>
#include <openssl/err.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/keys.h"
#include "common/x509.h"

namespace meshid {
namespace {

const EVP_MD* DigestFor(EVP_PKEY* signing_key) {
  auto kind = ClassifyKey(signing_key);
  if (kind.ok() && *kind == KeyAlgorithm::kEcdsaP384) return EVP_sha384();
  return EVP_sha256();
}

// 16 random bytes with the top bit cleared: a positive 127-bit serial that always encodes in
// at most 16 DER content bytes.
Asn1IntegerPtr RandomSerial(RandomSource& random) {
  uint8_t bytes[16];
  random.Fill(bytes, sizeof(bytes));
  bytes[0] &= 0x7f;
  if (bytes[0] == 0) bytes[0] = 0x01;  // keep the full width, and never zero
  BignumPtr bn(BN_bin2bn(bytes, sizeof(bytes), nullptr));
  return Asn1IntegerPtr(BN_to_ASN1_INTEGER(bn.get(), nullptr));
}

void SetTime(ASN1_TIME* field, absl::Time t) { ASN1_TIME_set(field, absl::ToTimeT(t)); }

X509_EXTENSION* MakeExtension(int nid, bool critical, void* value) { return X509V3_EXT_i2d(nid, critical ? 1 : 0, value); }

X509ExtensionPtr KeyUsageExtension(int bits) {
  ASN1_BIT_STRING* ku = ASN1_BIT_STRING_new();
  for (int bit = 0; bit < 9; ++bit) {
    if (bits & (1 << bit)) ASN1_BIT_STRING_set_bit(ku, bit, 1);
  }
  X509ExtensionPtr ext(MakeExtension(NID_key_usage, true, ku));
  ASN1_BIT_STRING_free(ku);
  return ext;
}

// KeyUsage bit numbers from RFC 5280 §4.2.1.3.
constexpr int kDigitalSignature = 1 << 0;
constexpr int kKeyEncipherment = 1 << 2;
constexpr int kKeyCertSign = 1 << 5;
constexpr int kCrlSign = 1 << 6;

X509ExtensionPtr ExtendedKeyUsageExtension(bool server_only) {
  EXTENDED_KEY_USAGE* eku = sk_ASN1_OBJECT_new_null();
  sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_server_auth));
  if (!server_only) sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_client_auth));
  X509ExtensionPtr ext(MakeExtension(NID_ext_key_usage, false, eku));
  sk_ASN1_OBJECT_free(eku);
  return ext;
}

X509ExtensionPtr BasicConstraintsExtension(bool ca) {
  BASIC_CONSTRAINTS* bc = BASIC_CONSTRAINTS_new();
  bc->ca = ca ? 0xff : 0;
  X509ExtensionPtr ext(MakeExtension(NID_basic_constraints, true, bc));
  BASIC_CONSTRAINTS_free(bc);
  return ext;
}

void AddName(GENERAL_NAMES* names, int type, const std::string& value) {
  GENERAL_NAME* gn = GENERAL_NAME_new();
  if (type == GEN_IPADD) {
    unsigned char buf[16];
    int len = 0;
    if (inet_pton(AF_INET, value.c_str(), buf) == 1) len = 4;
    else if (inet_pton(AF_INET6, value.c_str(), buf) == 1) len = 16;
    ASN1_OCTET_STRING* ip = ASN1_OCTET_STRING_new();
    ASN1_OCTET_STRING_set(ip, buf, len);
    GENERAL_NAME_set0_value(gn, GEN_IPADD, ip);
  } else {
    ASN1_IA5STRING* s = ASN1_IA5STRING_new();
    ASN1_STRING_set(s, value.data(), static_cast<int>(value.size()));
    GENERAL_NAME_set0_value(gn, type, s);
  }
  sk_GENERAL_NAME_push(names, gn);
}

bool IsIpAddress(const std::string& s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

// The leaf extensions are the same for every certificate of a key kind; build them once.
struct ConstantExtensions {
  X509ExtensionPtr ku_ec = KeyUsageExtension(kDigitalSignature);
  X509ExtensionPtr ku_rsa = KeyUsageExtension(kDigitalSignature | kKeyEncipherment);
  X509ExtensionPtr eku_svid = ExtendedKeyUsageExtension(false);
  X509ExtensionPtr eku_server = ExtendedKeyUsageExtension(true);
  X509ExtensionPtr bc_leaf = BasicConstraintsExtension(false);
};

const ConstantExtensions& Constants() {
  static const ConstantExtensions* constants = new ConstantExtensions();
  return *constants;
}

}  // namespace

CertIssuer::CertIssuer(std::shared_ptr<const SigningAuthority> authority, const Clock& clock, RandomSource& random,
                       absl::Duration clock_skew)
    : authority_(std::move(authority)), clock_(clock), random_(random), clock_skew_(clock_skew) {
  digest_ = DigestFor(authority_->key.get());
  chain_not_after_ = NotAfter(authority_->cert.get());
  for (const auto& c : authority_->intermediates) chain_not_after_ = std::min(chain_not_after_, NotAfter(c.get()));
  // AKI = the issuer's SKI (key identifier only).
  const ASN1_OCTET_STRING* skid = X509_get0_subject_key_id(authority_->cert.get());
  if (skid != nullptr) {
    AUTHORITY_KEYID* akid = AUTHORITY_KEYID_new();
    akid->keyid = ASN1_OCTET_STRING_dup(skid);
    aki_.reset(MakeExtension(NID_authority_key_identifier, false, akid));
    AUTHORITY_KEYID_free(akid);
  }
}

absl::StatusOr<IssuedCertificate> CertIssuer::Issue(EVP_PKEY* public_key, X509_EXTENSION* san, bool server_only,
                                                    absl::Duration ttl) const {
  absl::Time now = clock_.Now();
  if (now >= chain_not_after_) {
    return absl::FailedPreconditionError("the CA signing certificate (or its chain) has expired");
  }
  if (ttl <= absl::ZeroDuration()) return absl::InvalidArgumentError("certificate lifetime must be positive");
  absl::Time not_before = now - clock_skew_;
  absl::Time not_after = std::min(now + ttl, chain_not_after_);

  X509Ptr cert(X509_new());
  X509_set_version(cert.get(), X509_VERSION_3);
  Asn1IntegerPtr serial = RandomSerial(random_);
  X509_set_serialNumber(cert.get(), serial.get());
  X509_set_issuer_name(cert.get(), X509_get_subject_name(authority_->cert.get()));
  SetTime(X509_getm_notBefore(cert.get()), not_before);
  SetTime(X509_getm_notAfter(cert.get()), not_after);
  if (X509_set_pubkey(cert.get(), public_key) != 1) {
    return absl::InternalError("setting the public key failed: " + DrainOpenSslErrors());
  }
  const ConstantExtensions& c = Constants();
  bool rsa = EVP_PKEY_get_base_id(public_key) == EVP_PKEY_RSA;
  X509_add_ext(cert.get(), c.bc_leaf.get(), -1);
  X509_add_ext(cert.get(), rsa ? c.ku_rsa.get() : c.ku_ec.get(), -1);
  X509_add_ext(cert.get(), server_only ? c.eku_server.get() : c.eku_svid.get(), -1);
  if (aki_) X509_add_ext(cert.get(), aki_.get(), -1);
  X509_add_ext(cert.get(), san, -1);
  if (X509_sign(cert.get(), authority_->key.get(), digest_) <= 0) {
    return absl::InternalError("signing the certificate failed: " + DrainOpenSslErrors());
  }
  IssuedCertificate out;
  out.pem = CertToPem(cert.get());
  out.serial_hex = SerialHex(cert.get());
  out.not_before = absl::FromTimeT(absl::ToTimeT(not_before));
  out.not_after = absl::FromTimeT(absl::ToTimeT(not_after));
  out.cert = std::move(cert);
  return out;
}

absl::StatusOr<IssuedCertificate> CertIssuer::IssueSvid(EVP_PKEY* public_key, const SpiffeId& id, absl::Duration ttl,
                                                        const std::vector<std::string>& dns_sans) const {
  GeneralNamesPtr names(sk_GENERAL_NAME_new_null());
  AddName(names.get(), GEN_URI, id.ToString());
  for (const auto& dns : dns_sans) AddName(names.get(), GEN_DNS, dns);
  // Critical because the subject is empty (RFC 5280 §4.2.1.6).
  X509ExtensionPtr san(MakeExtension(NID_subject_alt_name, true, names.get()));
  return Issue(public_key, san.get(), /*server_only=*/false, ttl);
}

absl::StatusOr<IssuedCertificate> CertIssuer::IssueServingCert(EVP_PKEY* public_key,
                                                               const std::vector<std::string>& names,
                                                               absl::Duration ttl) const {
  GeneralNamesPtr general_names(sk_GENERAL_NAME_new_null());
  for (const auto& name : names) AddName(general_names.get(), IsIpAddress(name) ? GEN_IPADD : GEN_DNS, name);
  X509ExtensionPtr san(MakeExtension(NID_subject_alt_name, true, general_names.get()));
  return Issue(public_key, san.get(), /*server_only=*/true, ttl);
}

absl::StatusOr<X509Ptr> CreateSelfSignedRoot(EVP_PKEY* key, const std::string& trust_domain, absl::Duration lifetime,
                                             const Clock& clock, RandomSource& random) {
  X509Ptr cert(X509_new());
  X509_set_version(cert.get(), X509_VERSION_3);
  Asn1IntegerPtr serial = RandomSerial(random);
  X509_set_serialNumber(cert.get(), serial.get());
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(trust_domain.c_str()),
                             -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  absl::Time now = clock.Now();
  SetTime(X509_getm_notBefore(cert.get()), now);
  SetTime(X509_getm_notAfter(cert.get()), now + lifetime);
  X509_set_pubkey(cert.get(), key);
  X509ExtensionPtr bc = BasicConstraintsExtension(true);
  X509ExtensionPtr ku = KeyUsageExtension(kKeyCertSign | kCrlSign);
  X509_add_ext(cert.get(), bc.get(), -1);
  X509_add_ext(cert.get(), ku.get(), -1);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert.get(), cert.get(), nullptr, nullptr, 0);
  X509ExtensionPtr ski(X509V3_EXT_nconf_nid(nullptr, &ctx, NID_subject_key_identifier, "hash"));
  if (!ski) return absl::InternalError("building SKI failed: " + DrainOpenSslErrors());
  X509_add_ext(cert.get(), ski.get(), -1);
  GeneralNamesPtr names(sk_GENERAL_NAME_new_null());
  AddName(names.get(), GEN_URI, "spiffe://" + trust_domain);
  X509ExtensionPtr san(MakeExtension(NID_subject_alt_name, false, names.get()));
  X509_add_ext(cert.get(), san.get(), -1);
  if (X509_sign(cert.get(), key, DigestFor(key)) <= 0) {
    return absl::InternalError("self-signing the root failed: " + DrainOpenSslErrors());
  }
  return cert;
}

}  // namespace meshid
