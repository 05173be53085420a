// Uses OpenSSL's low-level EC_KEY/RSA verification, which bypasses the provider machinery.
#define OPENSSL_SUPPRESS_DEPRECATED

#include "ca/csr_validator.h"

#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/der.h"
#include "common/openssl_ptr.h"
#include "common/pem.h"

namespace meshid {
namespace {

using der::Element;
using der::Reader;

// OID contents (DER value bytes).
constexpr absl::string_view kOidEcPublicKey("\x2a\x86\x48\xce\x3d\x02\x01", 7);
constexpr absl::string_view kOidP256("\x2a\x86\x48\xce\x3d\x03\x01\x07", 8);
constexpr absl::string_view kOidP384("\x2b\x81\x04\x00\x22", 5);
constexpr absl::string_view kOidRsaEncryption("\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01", 9);
constexpr absl::string_view kOidEcdsaSha256("\x2a\x86\x48\xce\x3d\x04\x03\x02", 8);
constexpr absl::string_view kOidEcdsaSha384("\x2a\x86\x48\xce\x3d\x04\x03\x03", 8);
constexpr absl::string_view kOidEcdsaSha512("\x2a\x86\x48\xce\x3d\x04\x03\x04", 8);
constexpr absl::string_view kOidRsaSha256("\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0b", 9);
constexpr absl::string_view kOidRsaSha384("\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0c", 9);
constexpr absl::string_view kOidRsaSha512("\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0d", 9);
constexpr absl::string_view kOidExtensionRequest("\x2a\x86\x48\x86\xf7\x0d\x01\x09\x0e", 9);
constexpr absl::string_view kOidSubjectAltName("\x55\x1d\x11", 3);
constexpr absl::string_view kOidBasicConstraints("\x55\x1d\x13", 3);

absl::Status Refuse(absl::string_view why) { return absl::InvalidArgumentError(absl::StrCat("CSR ", why)); }

// OpenSSL's short name for an OID ("prime192v1", "ED448"), or its dotted form.
std::string OidName(absl::string_view oid_value) {
  std::string tlv = der::Tlv(der::kOid, oid_value);
  const unsigned char* p = reinterpret_cast<const unsigned char*>(tlv.data());
  Asn1ObjectPtr obj(d2i_ASN1_OBJECT(nullptr, &p, static_cast<long>(tlv.size())));
  if (obj == nullptr) {
    ERR_clear_error();
    return "unknown";
  }
  char buf[128];
  int nid = OBJ_obj2nid(obj.get());
  return nid != NID_undef ? OBJ_nid2sn(nid) : (OBJ_obj2txt(buf, sizeof(buf), obj.get(), 1) > 0 ? buf : "unknown");
}

std::string DescribeKeyOid(absl::string_view oid_value) {
  std::string name = OidName(oid_value);
  if (name == "ED25519") return "Ed25519";
  if (name == "ED448") return "Ed448";
  return name;
}

// A parsed public key ready for signature verification.
struct PublicKey {
  KeyAlgorithm algorithm;
  EC_KEY* ec = nullptr;  // a thread-local object, see ThreadLocalEcKey
  RsaPtr rsa;
};

// Creating an EC_KEY (and its group) costs about as much as the signature check, so each
// thread keeps one per curve and only replaces its public point. A cache, not shared state:
// nothing of one CSR is visible to the next but the curve.
EC_KEY* ThreadLocalEcKey(int nid) {
  thread_local EcKeyPtr p256;
  thread_local EcKeyPtr p384;
  EcKeyPtr& slot = nid == NID_X9_62_prime256v1 ? p256 : p384;
  if (!slot) slot.reset(EC_KEY_new_by_curve_name(nid));
  return slot.get();
}

absl::StatusOr<PublicKey> ParsePublicKey(const Element& spki) {
  Reader r(spki.value);
  auto algorithm = r.Expect(der::kSequence, "CSR public key algorithm");
  if (!algorithm.ok()) return Refuse("has a malformed public key");
  auto bits = r.Next();
  if (!bits.ok() || !r.empty()) return Refuse("has a malformed public key");
  auto key_bytes = der::BitStringBytes(*bits);
  if (!key_bytes.ok()) return Refuse("has a malformed public key");
  Reader alg(algorithm->value);
  auto oid = alg.Expect(der::kOid, "algorithm");
  if (!oid.ok()) return Refuse("has a malformed public key algorithm");

  PublicKey key;
  if (oid->value == kOidEcPublicKey) {
    auto curve = alg.Expect(der::kOid, "curve");
    if (!curve.ok() || !alg.empty()) return Refuse("key: EC keys must name their curve");
    int nid;
    if (curve->value == kOidP256) {
      nid = NID_X9_62_prime256v1;
      key.algorithm = KeyAlgorithm::kEcdsaP256;
    } else if (curve->value == kOidP384) {
      nid = NID_secp384r1;
      key.algorithm = KeyAlgorithm::kEcdsaP384;
    } else {
      return Refuse(absl::StrCat("key: EC key on curve \"", OidName(curve->value),
                                 "\" is not allowed (ECDSA keys must be P-256 or P-384)"));
    }
    if (key_bytes->empty() || (*key_bytes)[0] == 0) return Refuse("key: the EC point is invalid");
    key.ec = ThreadLocalEcKey(nid);
    if (key.ec == nullptr) return OpenSslError("preparing an EC key");
    const unsigned char* p = reinterpret_cast<const unsigned char*>(key_bytes->data());
    // o2i_ECPublicKey replaces the point and checks that it is on the curve.
    if (o2i_ECPublicKey(&key.ec, &p, static_cast<long>(key_bytes->size())) == nullptr) {
      ERR_clear_error();
      return Refuse("key: the EC point is not on the curve");
    }
    return key;
  }
  if (oid->value == kOidRsaEncryption) {
    Reader rsa_seq(*key_bytes);
    auto seq = rsa_seq.Expect(der::kSequence, "RSA key");
    if (!seq.ok() || !rsa_seq.empty()) return Refuse("key: malformed RSA public key");
    Reader fields(seq->value);
    auto n_el = fields.Next();
    auto e_el = fields.Next();
    if (!n_el.ok() || !e_el.ok() || !fields.empty()) return Refuse("key: malformed RSA public key");
    auto n = der::UnsignedInteger(*n_el);
    auto e = der::UnsignedInteger(*e_el);
    if (!n.ok() || !e.ok()) return Refuse("key: malformed RSA public key");
    BignumPtr bn_n(BN_bin2bn(reinterpret_cast<const unsigned char*>(n->data()), static_cast<int>(n->size()), nullptr));
    BignumPtr bn_e(BN_bin2bn(reinterpret_cast<const unsigned char*>(e->data()), static_cast<int>(e->size()), nullptr));
    if (!bn_n || !bn_e) return OpenSslError("reading the CSR's RSA key");
    int modulus_bits = BN_num_bits(bn_n.get());
    if (modulus_bits < 2048 || modulus_bits > 4096) {
      return Refuse(absl::StrCat("key: RSA key of ", modulus_bits,
                                 " bits is not allowed (RSA keys must have 2048 to 4096 bits)"));
    }
    if (!BN_is_odd(bn_e.get()) || BN_num_bits(bn_e.get()) < 2 || BN_num_bits(bn_e.get()) > 64) {
      return Refuse("key: RSA public exponent is invalid");
    }
    key.rsa.reset(RSA_new());
    if (!key.rsa || RSA_set0_key(key.rsa.get(), bn_n.get(), bn_e.get(), nullptr) != 1) {
      return OpenSslError("building the CSR's RSA key");
    }
    bn_n.release();  // the key owns both numbers now
    bn_e.release();
    key.algorithm = modulus_bits >= 4096   ? KeyAlgorithm::kRsa4096
                    : modulus_bits >= 3072 ? KeyAlgorithm::kRsa3072
                                           : KeyAlgorithm::kRsa2048;
    return key;
  }
  return Refuse(absl::StrCat("key: ", DescribeKeyOid(oid->value),
                             " key is not allowed (keys must be ECDSA P-256/P-384 or RSA 2048-4096)"));
}

absl::Status VerifySignature(const PublicKey& key, absl::string_view signed_bytes, const Element& sig_alg,
                             const Element& sig_bits) {
  Reader alg(sig_alg.value);
  auto oid = alg.Expect(der::kOid, "signature algorithm");
  if (!oid.ok()) return Refuse("has a malformed signature algorithm");
  const EVP_MD* md = nullptr;
  bool ec_alg = false;
  if (oid->value == kOidEcdsaSha256)
    md = EVP_sha256(), ec_alg = true;
  else if (oid->value == kOidEcdsaSha384)
    md = EVP_sha384(), ec_alg = true;
  else if (oid->value == kOidEcdsaSha512)
    md = EVP_sha512(), ec_alg = true;
  else if (oid->value == kOidRsaSha256)
    md = EVP_sha256();
  else if (oid->value == kOidRsaSha384)
    md = EVP_sha384();
  else if (oid->value == kOidRsaSha512)
    md = EVP_sha512();
  else
    return Refuse(absl::StrCat("signature algorithm \"", OidName(oid->value), "\" is not supported"));
  if (ec_alg != (key.ec != nullptr)) return Refuse("signature algorithm does not fit the key");
  if (!alg.empty()) {
    auto params = alg.Next();
    if (ec_alg || !params.ok() || params->tag != der::kNull || !params->value.empty() || !alg.empty()) {
      return Refuse("has unexpected signature algorithm parameters");
    }
  }
  auto signature = der::BitStringBytes(sig_bits);
  if (!signature.ok()) return Refuse("has a malformed signature");
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  if (EVP_Digest(signed_bytes.data(), signed_bytes.size(), digest, &digest_len, md, nullptr) != 1) {
    return OpenSslError("hashing the CSR");
  }
  const auto* sig = reinterpret_cast<const unsigned char*>(signature->data());
  int ok = key.ec != nullptr
               ? ECDSA_verify(0, digest, static_cast<int>(digest_len), sig, static_cast<int>(signature->size()), key.ec)
               : RSA_verify(EVP_MD_get_type(md), digest, digest_len, sig, static_cast<unsigned int>(signature->size()),
                            key.rsa.get());
  ERR_clear_error();
  if (ok != 1) return Refuse("signature does not verify (no proof of possession of the private key)");
  return absl::OkStatus();
}

absl::Status CheckSans(absl::string_view ext_value, const SpiffeId& caller) {
  Reader outer(ext_value);
  auto names = outer.Expect(der::kSequence, "SAN");
  if (!names.ok() || !outer.empty()) return Refuse("has a malformed subjectAltName extension");
  const std::string want = caller.ToString();
  int uris = 0;
  for (Reader r(names->value); !r.empty();) {
    auto name = r.Next();
    if (!name.ok()) return Refuse("has a malformed subjectAltName extension");
    if (name->tag != der::ContextPrimitive(6)) {
      const char* kind = name->tag == der::ContextPrimitive(2)   ? "DNS"
                         : name->tag == der::ContextPrimitive(7) ? "IP"
                         : name->tag == der::ContextPrimitive(1) ? "email"
                                                                 : "non-URI";
      return Refuse(absl::StrCat("asks for a ", kind, " SAN; only the caller's SPIFFE ID ", want, " may be requested"));
    }
    if (name->value != want) {
      return Refuse(absl::StrCat("asks for URI SAN \"", absl::CHexEscape(name->value),
                                 "\" but the caller is authenticated as ", want));
    }
    ++uris;
  }
  if (uris > 1) return Refuse("repeats the URI SAN; an SVID has exactly one");
  return absl::OkStatus();
}

absl::Status CheckBasicConstraints(absl::string_view ext_value) {
  Reader outer(ext_value);
  auto seq = outer.Expect(der::kSequence, "basicConstraints");
  if (!seq.ok() || !outer.empty()) return Refuse("has a malformed basicConstraints extension");
  Reader r(seq->value);
  if (r.PeekTag(der::kBoolean)) {
    auto ca = r.Next();
    if (!ca.ok() || ca->value.size() != 1) return Refuse("has a malformed basicConstraints extension");
    if (ca->value[0] != 0) return Refuse("asks for CA:TRUE; workload certificates cannot be CAs");
  }
  return absl::OkStatus();
}

absl::Status CheckExtensions(absl::string_view attributes, const SpiffeId& caller) {
  for (Reader attrs(attributes); !attrs.empty();) {
    auto attr = attrs.Expect(der::kSequence, "attribute");
    if (!attr.ok()) return Refuse("has a malformed attribute");
    Reader a(attr->value);
    auto type = a.Expect(der::kOid, "attribute type");
    auto values = a.Expect(der::kSet, "attribute values");
    if (!type.ok() || !values.ok() || !a.empty()) return Refuse("has a malformed attribute");
    if (type->value != kOidExtensionRequest) continue;  // e.g. challengePassword: not used
    Reader v(values->value);
    auto exts = v.Expect(der::kSequence, "extensions");
    if (!exts.ok() || !v.empty()) return Refuse("has a malformed extension request");
    bool seen_san = false, seen_bc = false;
    for (Reader e(exts->value); !e.empty();) {
      auto ext = e.Expect(der::kSequence, "extension");
      if (!ext.ok()) return Refuse("has a malformed extension");
      Reader x(ext->value);
      auto id = x.Expect(der::kOid, "extension id");
      if (!id.ok()) return Refuse("has a malformed extension");
      if (x.PeekTag(der::kBoolean) && !x.Next().ok()) return Refuse("has a malformed extension");
      auto value = x.Expect(der::kOctetString, "extension value");
      if (!value.ok() || !x.empty()) return Refuse("has a malformed extension");
      if (id->value == kOidSubjectAltName) {
        if (seen_san) return Refuse("has two subjectAltName extensions");
        seen_san = true;
        if (absl::Status s = CheckSans(value->value, caller); !s.ok()) return s;
      } else if (id->value == kOidBasicConstraints) {
        if (seen_bc) return Refuse("has two basicConstraints extensions");
        seen_bc = true;
        if (absl::Status s = CheckBasicConstraints(value->value); !s.ok()) return s;
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ValidatedCsr> ValidateCsr(absl::string_view pem, const SpiffeId& caller) {
  if (pem.empty()) return Refuse("is empty");
  if (pem.size() > kMaxCsrPemBytes) {
    return Refuse(absl::StrCat("is ", pem.size(), " bytes, larger than the limit of ", kMaxCsrPemBytes));
  }
  PemParseOptions options;
  options.max_input_bytes = kMaxCsrPemBytes;
  options.max_blocks = 4;
  auto blocks = ParsePemBlocks(pem, options);
  if (!blocks.ok()) return Refuse(absl::StrCat("is not valid PEM: ", blocks.status().message()));
  if (blocks->size() != 1) return Refuse(absl::StrCat("must be one PEM block, found ", blocks->size()));
  const PemBlock& block = blocks->front();
  if (block.type != "CERTIFICATE REQUEST" && block.type != "NEW CERTIFICATE REQUEST") {
    return Refuse(absl::StrCat("PEM block is \"", block.type, "\", expected \"CERTIFICATE REQUEST\""));
  }

  // CertificationRequest ::= SEQUENCE { certificationRequestInfo, signatureAlgorithm, signature }
  const absl::Status malformed = Refuse("is not a valid DER PKCS#10 request");
  Reader top(block.der);
  auto request = top.Expect(der::kSequence, "request");
  if (!request.ok() || !top.empty()) return malformed;
  Reader body(request->value);
  auto info = body.Expect(der::kSequence, "info");
  auto sig_alg = body.Expect(der::kSequence, "signature algorithm");
  auto sig = body.Expect(der::kBitString, "signature");
  if (!info.ok() || !sig_alg.ok() || !sig.ok() || !body.empty()) return malformed;
  // CertificationRequestInfo ::= SEQUENCE { version INTEGER (0), subject Name, spki, [0] attributes }
  Reader fields(info->value);
  auto version = fields.Expect(der::kInteger, "version");
  auto subject = fields.Expect(der::kSequence, "subject");
  auto spki = fields.Expect(der::kSequence, "public key");
  if (!version.ok() || version->value != absl::string_view("\0", 1) || !subject.ok() || !spki.ok()) return malformed;
  absl::string_view attributes;
  if (!fields.empty()) {
    auto attrs = fields.Expect(der::ContextConstructed(0), "attributes");
    if (!attrs.ok() || !fields.empty()) return malformed;
    attributes = attrs->value;
  }

  auto key = ParsePublicKey(*spki);
  if (!key.ok()) return key.status();
  if (absl::Status s = VerifySignature(*key, info->whole, *sig_alg, *sig); !s.ok()) return s;
  if (absl::Status s = CheckExtensions(attributes, caller); !s.ok()) return s;
  return ValidatedCsr{std::string(spki->whole), key->algorithm};
}

}  // namespace meshid
