// A CaClient for tests and benchmarks that signs in-process with meshid's own CertIssuer: it
// maps bearer tokens to SPIFFE IDs (as the real CA's authenticators would), can be told to
// fail, and can rotate its root (publishing a bundle with both roots first).
#pragma once

#include <openssl/pem.h>

#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "ca/cert_issuer.h"
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

inline TestRoot MakeTestRoot(const Clock& clock, RandomSource& random, const std::string& td = "cluster.local") {
  TestRoot root;
  root.key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
  root.cert = *CreateSelfSignedRoot(root.key.get(), td, absl::Hours(24 * 365), clock, random);
  root.pem = CertToPem(root.cert.get());
  return root;
}

class FakeCa final : public CaClient {
 public:
  FakeCa(const Clock& clock, RandomSource& random) : clock_(clock), random_(random) {
    roots_.push_back(std::make_shared<TestRoot>(MakeTestRoot(clock, random)));
    Rebuild(0);
  }

  // Tokens the CA accepts and the identity each one proves.
  void AllowToken(const std::string& token, const std::string& ns, const std::string& sa) {
    absl::MutexLock lock(&mu_);
    tokens_[token] = SpiffeId::ForServiceAccount("cluster.local", ns, sa)->ToString();
  }
  // Every call fails with `status` until cleared with OkStatus().
  void SetFailure(absl::Status status) {
    absl::MutexLock lock(&mu_);
    failure_ = std::move(status);
  }
  // Adds a new root next to the existing ones (the bundle grows) without signing with it.
  void AddRoot() {
    absl::MutexLock lock(&mu_);
    roots_.push_back(std::make_shared<TestRoot>(MakeTestRoot(clock_, random_)));
    Rebuild(signer_);
  }
  // Signs with root `index` from now on.
  void SignWith(size_t index) {
    absl::MutexLock lock(&mu_);
    Rebuild(index);
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
    auto issued = issuer_->IssueSvid(key.get(), *SpiffeId::Parse(it->second), ttl);
    if (!issued.ok()) return issued.status();
    std::vector<std::string> chain{issued->pem};
    chain.insert(chain.end(), issuer_->authority().chain_pems.begin(), issuer_->authority().chain_pems.end());
    return chain;
  }

 private:
  void Rebuild(size_t signer) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    signer_ = signer;
    auto authority = std::make_shared<SigningAuthority>();
    authority->key = EvpPkeyPtr(roots_[signer]->key.get());
    EVP_PKEY_up_ref(authority->key.get());
    authority->cert = CopyCert(roots_[signer]->cert.get());
    std::string bundle;
    for (const auto& root : roots_) {
      authority->roots.push_back(CopyCert(root->cert.get()));
      bundle += root->pem;
    }
    authority->root_bundle_pem = bundle;
    authority->chain_pems = {bundle};
    authority->source = "fake";
    issuer_ = std::make_unique<CertIssuer>(std::move(authority), clock_, random_);
  }

  const Clock& clock_;
  RandomSource& random_;
  mutable absl::Mutex mu_;
  std::vector<std::shared_ptr<TestRoot>> roots_ ABSL_GUARDED_BY(mu_);
  size_t signer_ ABSL_GUARDED_BY(mu_) = 0;
  std::unique_ptr<CertIssuer> issuer_ ABSL_GUARDED_BY(mu_);
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
