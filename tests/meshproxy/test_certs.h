// Certificates for the sidecar's tests: CAs and workload certificates minted with OpenSSL
// (a foreign CA, expired or malformed SVIDs), or signed by a running `meshid server`'s root.
#pragma once

#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/files.h"
#include "common/keys.h"
#include "common/openssl_ptr.h"
#include "common/x509.h"

namespace meshid::testing {

struct Pem {
  std::string cert;
  std::string key;
};

inline std::string KeyPem(EVP_PKEY* key) { return std::string((*PrivateKeyToPem(key)).view()); }

// A certificate for `key` signed by `issuer_key` (self-signed when `issuer` is null).
inline std::string SignCert(EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key, const std::vector<std::string>& uris,
                            bool ca, absl::Time not_before, absl::Time not_after) {
  X509Ptr cert(X509_new());
  X509_set_version(cert.get(), 2);
  unsigned char serial_bytes[16];
  RAND_bytes(serial_bytes, sizeof(serial_bytes));
  serial_bytes[0] &= 0x7f;
  BignumPtr bn(BN_bin2bn(serial_bytes, sizeof(serial_bytes), nullptr));
  BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert.get()));
  ASN1_TIME_set(X509_getm_notBefore(cert.get()), absl::ToTimeT(not_before));
  ASN1_TIME_set(X509_getm_notAfter(cert.get()), absl::ToTimeT(not_after));
  X509_set_pubkey(cert.get(), key);
  X509NamePtr name(X509_NAME_new());
  if (ca)
    X509_NAME_add_entry_by_txt(name.get(), "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("test CA"), -1, -1,
                               0);
  X509_set_subject_name(cert.get(), name.get());
  X509_set_issuer_name(cert.get(), issuer ? X509_get_subject_name(issuer) : name.get());
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer ? issuer : cert.get(), cert.get(), nullptr, nullptr, 0);
  auto add = [&](int nid, const std::string& value) {
    X509ExtensionPtr ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
    X509_add_ext(cert.get(), ext.get(), -1);
  };
  if (ca) {
    add(NID_basic_constraints, "critical,CA:TRUE");
    add(NID_key_usage, "critical,keyCertSign,cRLSign");
    add(NID_subject_key_identifier, "hash");
  } else {
    add(NID_basic_constraints, "critical,CA:FALSE");
    add(NID_key_usage, "critical,digitalSignature,keyEncipherment");
    add(NID_ext_key_usage, "serverAuth,clientAuth");
    if (!uris.empty()) {
      std::string san = "critical";
      for (const auto& u : uris) absl::StrAppend(&san, ",URI:", u);
      add(NID_subject_alt_name, san);
    }
  }
  X509_sign(cert.get(), issuer_key ? issuer_key : key, EVP_sha256());
  return CertToPem(cert.get());
}

struct TestCa {
  X509Ptr cert;
  EvpPkeyPtr key;
  std::string cert_pem;

  // A fresh self-signed CA (a "foreign" mesh).
  static TestCa Create() {
    TestCa ca;
    ca.key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
    ca.cert_pem =
        SignCert(ca.key.get(), nullptr, nullptr, {}, true, absl::Now() - absl::Hours(1), absl::Now() + absl::Hours(24));
    ca.cert = *CertFromPem(ca.cert_pem);
    return ca;
  }
  // The CA of a running `meshid server` (its self-signed root signs workload certificates).
  static TestCa FromDataDir(const std::string& dir) {
    TestCa ca;
    ca.cert_pem = *ReadFile(dir + "/root-cert.pem");
    ca.cert = *CertFromPem(ca.cert_pem);
    ca.key = *PrivateKeyFromPem(*ReadFile(dir + "/ca-key.pem"));
    return ca;
  }
  // A workload certificate with `uris` as its URI SANs (an SVID has exactly one).
  Pem Leaf(const std::vector<std::string>& uris, absl::Time not_before = absl::Now() - absl::Minutes(5),
           absl::Time not_after = absl::Now() + absl::Hours(1)) const {
    EvpPkeyPtr k = *GenerateKey(KeyAlgorithm::kEcdsaP256);
    return Pem{SignCert(k.get(), cert.get(), key.get(), uris, false, not_before, not_after), KeyPem(k.get())};
  }
};

// Files for curl / openssl s_client.
struct CertFiles {
  std::string cert;
  std::string key;
};
inline CertFiles WriteCert(const std::string& dir, const std::string& name, const Pem& pem) {
  CertFiles f{dir + "/" + name + ".crt", dir + "/" + name + ".key"};
  (void)WriteFileAtomic(f.cert, pem.cert);
  (void)WriteFileAtomic(f.key, pem.key, 0600);
  return f;
}

}  // namespace meshid::testing
