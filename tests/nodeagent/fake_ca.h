// A CaClient for tests and benchmarks that signs in-process with the test certificates of
// tests/support/certs.h (independent of ca/): it maps bearer tokens to SPIFFE IDs (as the real
// CA's authenticators would), can be told to fail, and can rotate its root (publishing a bundle
// with both roots first).
#pragma once

#include <openssl/pem.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
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
#include "tests/support/certs.h"
#include "tests/support/fake_clock.h"

namespace meshid::testing {

// A root for trust domain `td` (subject O=<td>), valid for a year from clock.Now().
inline absl::StatusOr<TestCa> MakeTestRoot(const Clock& clock, const std::string& td = "cluster.local") {
  return TestCa::Create(
      {.organization = td, .not_before = clock.Now(), .not_after = clock.Now() + absl::Hours(24 * 365)});
}

class FakeCa final : public CaClient {
 public:
  // Aborts the process, saying why, when no root can be made (no CA, no test).
  explicit FakeCa(const Clock& clock) : clock_(clock) { roots_.push_back(NewRoot()); }

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
    roots_.push_back(NewRoot());
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
  std::shared_ptr<const TestCa> Root(size_t index) const {
    absl::MutexLock lock(&mu_);
    return roots_[index];
  }
  std::string RootPem(size_t index) const {
    absl::MutexLock lock(&mu_);
    return roots_[index]->cert_pem();
  }
  int calls() const {
    absl::MutexLock lock(&mu_);
    return calls_;
  }
  // `parent` (a SPIFFE ID a token maps to) may mint `identity` for a workload on its node.
  void AllowMinting(const std::string& identity, const std::string& parent) {
    absl::MutexLock lock(&mu_);
    mintable_[identity] = parent;
  }
  void ForbidMinting(const std::string& identity) {
    absl::MutexLock lock(&mu_);
    mintable_.erase(identity);
  }
  std::vector<std::string> impersonated_seen() const {
    absl::MutexLock lock(&mu_);
    return impersonated_seen_;
  }
  std::vector<std::string> tokens_seen() const {
    absl::MutexLock lock(&mu_);
    return tokens_seen_;
  }

  using CaClient::CreateCertificate;
  absl::StatusOr<std::vector<std::string>> CreateCertificate(absl::string_view csr_pem, absl::string_view bearer_token,
                                                             absl::Duration ttl,
                                                             absl::string_view impersonated_identity) override {
    absl::MutexLock lock(&mu_);
    ++calls_;
    tokens_seen_.emplace_back(bearer_token);
    if (!impersonated_identity.empty()) impersonated_seen_.emplace_back(impersonated_identity);
    if (!failure_.ok()) return failure_;
    auto it = tokens_.find(std::string(bearer_token));
    if (it == tokens_.end()) return absl::UnauthenticatedError("request authenticate failure");
    std::string identity = it->second;
    if (!impersonated_identity.empty()) {
      // The real CA's rule, reduced: the caller must be the parent of the identity's entry.
      auto minted = mintable_.find(std::string(impersonated_identity));
      if (minted == mintable_.end() || minted->second != identity) {
        return absl::UnauthenticatedError("request authenticate failure");
      }
      identity = minted->first;
    }
    BioPtr bio(BIO_new_mem_buf(csr_pem.data(), static_cast<int>(csr_pem.size())));
    X509ReqPtr req(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
    if (req == nullptr) return absl::InvalidArgumentError("bad CSR");
    EvpPkeyPtr key(X509_REQ_get_pubkey(req.get()));
    if (key == nullptr || X509_REQ_verify(req.get(), key.get()) != 1) {
      return absl::InvalidArgumentError("bad CSR signature");
    }
    const TestCa& signer = *roots_[signer_];
    // Like the real CA: backdated 2 minutes, never beyond the issuer.
    const absl::Time now = clock_.Now();
    CertificateSpec spec;
    spec.uri_sans = {identity};
    spec.not_before = now - absl::Minutes(2);
    spec.not_after = std::min(now + (ttl > absl::ZeroDuration() ? ttl : absl::Hours(1)), NotAfter(signer.cert()));
    auto leaf = signer.Sign(spec, key.get());
    if (!leaf.ok()) return leaf.status();
    std::vector<std::string> chain = {CertToPem(leaf->get())};
    if (one_root_per_element_) {
      for (const auto& root : roots_) chain.push_back(root->cert_pem());
    } else {
      std::string bundle;
      for (const auto& root : roots_) bundle += root->cert_pem();
      chain.push_back(std::move(bundle));
    }
    return chain;
  }

 private:
  std::shared_ptr<const TestCa> NewRoot() const {
    auto root = MakeTestRoot(clock_);
    if (!root.ok()) {
      std::fprintf(stderr, "FakeCa: no root: %s\n", root.status().ToString().c_str());
      std::abort();
    }
    return std::make_shared<const TestCa>(*std::move(root));
  }

  const Clock& clock_;
  mutable absl::Mutex mu_;
  std::vector<std::shared_ptr<const TestCa>> roots_ ABSL_GUARDED_BY(mu_);
  size_t signer_ ABSL_GUARDED_BY(mu_) = 0;
  bool one_root_per_element_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, std::string> tokens_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> mintable_ ABSL_GUARDED_BY(mu_);  // identity -> parent
  std::vector<std::string> impersonated_seen_ ABSL_GUARDED_BY(mu_);
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
