// A CaClient for tests and benchmarks that signs in-process with plain OpenSSL (independent of
// ca/): it maps bearer tokens to SPIFFE IDs (as the real CA's authenticators would), can be told
// to fail, and can rotate its root (publishing a bundle with both roots first).
#pragma once

#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/keys.h"
#include "common/random.h"
#include "common/spiffe_id.h"
#include "common/x509.h"
#include "nodeagent/ca_client.h"

namespace meshid::testing {

struct TestRoot {
  EvpPkeyPtr key;
  X509Ptr cert;
  std::string pem;
};

// Signs a certificate for `key` with `issuer_key` (self-signed when `issuer` is null): a CA
// certificate with subject O=<td> when `uri` is empty, else an SVID leaf with that URI SAN.
inline X509Ptr SignTestCert(EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key, const std::string& uri,
                            const std::string& td, absl::Time not_before, absl::Time not_after) {
  X509Ptr cert(X509_new());
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof(serial));
  serial[0] &= 0x7f;
  BignumPtr bn(BN_bin2bn(serial, sizeof(serial), nullptr));
  BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert.get()));
  ASN1_TIME_set(X509_getm_notBefore(cert.get()), absl::ToTimeT(not_before));
  ASN1_TIME_set(X509_getm_notAfter(cert.get()), absl::ToTimeT(not_after));
  const bool ca = uri.empty();
  if (ca) {
    X509_NAME_add_entry_by_txt(X509_get_subject_name(cert.get()), "O", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>(td.c_str()), -1, -1, 0);
  }
  X509_set_issuer_name(cert.get(), issuer ? X509_get_subject_name(issuer) : X509_get_subject_name(cert.get()));
  X509_set_pubkey(cert.get(), key);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer ? issuer : cert.get(), cert.get(), nullptr, nullptr, 0);
  std::vector<std::pair<int, std::string>> exts = {
      {NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE"},
      {NID_key_usage, ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature"},
      {NID_subject_key_identifier, "hash"},
  };
  if (!ca) {
    exts.push_back({NID_ext_key_usage, "serverAuth,clientAuth"});
    exts.push_back({NID_subject_alt_name, "critical,URI:" + uri});
    exts.push_back({NID_authority_key_identifier, "keyid"});
  }
  for (const auto& [nid, value] : exts) {
    X509ExtensionPtr ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
    X509_add_ext(cert.get(), ext.get(), -1);
  }
  X509_sign(cert.get(), issuer_key, EVP_sha256());
  return cert;
}

inline TestRoot MakeTestRoot(const Clock& clock, const std::string& td = "cluster.local") {
  TestRoot root;
  root.key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
  root.cert =
      SignTestCert(root.key.get(), nullptr, root.key.get(), "", td, clock.Now(), clock.Now() + absl::Hours(24 * 365));
  root.pem = CertToPem(root.cert.get());
  return root;
}

class FakeCa final : public CaClient {
 public:
  explicit FakeCa(const Clock& clock) : clock_(clock) {
    roots_.push_back(std::make_shared<TestRoot>(MakeTestRoot(clock)));
  }

  // Tokens the CA accepts and the identity each one proves.
  void AllowToken(const std::string& token, const std::string& ns, const std::string& sa) {
    absl::MutexLock lock(&mu_);
    tokens_[token] = SpiffeId::ForServiceAccount("cluster.local", ns, sa)->ToString();
  }
  // The token is no longer accepted (e.g. it expired).
  void RevokeToken(const std::string& token) {
    absl::MutexLock lock(&mu_);
    tokens_.erase(token);
  }
  // Every call fails with `status` until cleared with OkStatus().
  void SetFailure(absl::Status status) {
    absl::MutexLock lock(&mu_);
    failure_ = std::move(status);
  }
  // Adds a new root next to the existing ones (the bundle grows) without signing with it.
  void AddRoot() {
    absl::MutexLock lock(&mu_);
    roots_.push_back(std::make_shared<TestRoot>(MakeTestRoot(clock_)));
  }
  // Sends each root as its own cert_chain element, as meshid server does (istiod sends the
  // whole bundle as the last element, the default here).
  void SetOneRootPerElement(bool one_per_element) {
    absl::MutexLock lock(&mu_);
    one_root_per_element_ = one_per_element;
  }
  // Signs with root `index` from now on.
  void SignWith(size_t index) {
    absl::MutexLock lock(&mu_);
    signer_ = index;
  }
  std::string RootPem(size_t index) const {
    absl::MutexLock lock(&mu_);
    return roots_[index]->pem;
  }
  int calls() const {
    absl::MutexLock lock(&mu_);
    return calls_;
  }
  std::vector<std::string> tokens_seen() const {
    absl::MutexLock lock(&mu_);
    return tokens_seen_;
  }

  absl::StatusOr<std::vector<std::string>> CreateCertificate(absl::string_view csr_pem, absl::string_view bearer_token,
                                                             absl::Duration ttl) override {
    absl::MutexLock lock(&mu_);
    ++calls_;
    tokens_seen_.emplace_back(bearer_token);
    if (!failure_.ok()) return failure_;
    auto it = tokens_.find(std::string(bearer_token));
    if (it == tokens_.end()) return absl::UnauthenticatedError("request authenticate failure");
    BioPtr bio(BIO_new_mem_buf(csr_pem.data(), static_cast<int>(csr_pem.size())));
    X509ReqPtr req(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
    if (req == nullptr) return absl::InvalidArgumentError("bad CSR");
    EvpPkeyPtr key(X509_REQ_get_pubkey(req.get()));
    if (key == nullptr || X509_REQ_verify(req.get(), key.get()) != 1) {
      return absl::InvalidArgumentError("bad CSR signature");
    }
    const TestRoot& signer = *roots_[signer_];
    // Like the real CA: backdated 2 minutes, never beyond the issuer.
    const absl::Time now = clock_.Now();
    const absl::Time not_after =
        std::min(now + (ttl > absl::ZeroDuration() ? ttl : absl::Hours(1)), NotAfter(signer.cert.get()));
    X509Ptr leaf =
        SignTestCert(key.get(), signer.cert.get(), signer.key.get(), it->second, "", now - absl::Minutes(2), not_after);
    std::vector<std::string> chain = {CertToPem(leaf.get())};
    if (one_root_per_element_) {
      for (const auto& root : roots_) chain.push_back(root->pem);
    } else {
      std::string bundle;
      for (const auto& root : roots_) bundle += root->pem;
      chain.push_back(std::move(bundle));
    }
    return chain;
  }

 private:
  const Clock& clock_;
  mutable absl::Mutex mu_;
  std::vector<std::shared_ptr<TestRoot>> roots_ ABSL_GUARDED_BY(mu_);
  size_t signer_ ABSL_GUARDED_BY(mu_) = 0;
  bool one_root_per_element_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, std::string> tokens_ ABSL_GUARDED_BY(mu_);
  absl::Status failure_ ABSL_GUARDED_BY(mu_);
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::string> tokens_seen_ ABSL_GUARDED_BY(mu_);
};

// A TokenSource returning a settable value.
class FakeTokenSource final : public TokenSource {
 public:
  explicit FakeTokenSource(std::string token) : token_(std::move(token)) {}
  void Set(std::string token) {
    absl::MutexLock lock(&mu_);
    token_ = std::move(token);
  }
  absl::StatusOr<SecretString> Token() override {
    absl::MutexLock lock(&mu_);
    if (token_.empty()) return absl::UnauthenticatedError("token file is empty");
    return SecretString(token_);
  }

 private:
  absl::Mutex mu_;
  std::string token_ ABSL_GUARDED_BY(mu_);
};

// Uniform() returns the queued values in turn (then 0.5 forever): deterministic jitter.
class ScriptedRandom final : public RandomSource {
 public:
  explicit ScriptedRandom(std::vector<double> uniforms = {}) : uniforms_(std::move(uniforms)) {}
  void Fill(uint8_t* out, size_t n) override {
    absl::MutexLock lock(&mu_);
    double u = 0.5;
    if (next_ < uniforms_.size()) u = uniforms_[next_++];
    // Uniform() = (Uint64() >> 11) * 2^-53, so put u * 2^53 into the top 53 bits.
    uint64_t v = static_cast<uint64_t>(u * 9007199254740992.0) << 11;
    if (n == sizeof(v)) {
      std::memcpy(out, &v, sizeof(v));
    } else {
      real_.Fill(out, n);  // serials, nonces
    }
  }

 private:
  absl::Mutex mu_;
  std::vector<double> uniforms_ ABSL_GUARDED_BY(mu_);
  size_t next_ ABSL_GUARDED_BY(mu_) = 0;
  OpenSslRandom real_;
};

}  // namespace meshid::testing
