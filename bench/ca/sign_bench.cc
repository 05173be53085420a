// In-process cost of issuing one certificate, piece by piece, next to the raw OpenSSL
// operations that bound it (one CSR signature verification + one certificate signature).
#include <benchmark/benchmark.h>
#include <openssl/evp.h>

#include "ca/certificate_service.h"
#include "ca/csr_validator.h"
#include "common/csr.h"
#include "common/logging.h"
#include "sql/store.h"
#include "tests/support/signing_authority.h"
#include "tests/support/temp_dir.h"

namespace meshid {
namespace {

struct Fixture {
  explicit Fixture(KeyAlgorithm ca_algorithm = KeyAlgorithm::kEcdsaP256,
                   KeyAlgorithm workload = KeyAlgorithm::kEcdsaP256) {
    authority = testing::MakeAuthority(clock, random, "cluster.local", absl::Hours(24 * 365), ca_algorithm);
    issuer = *CertIssuer::Create(authority, clock, random);
    token_key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
    std::vector<JwtIssuer> issuers;
    issuers.push_back(JwtIssuer{"iss", *Jwks::FromPublicKey(token_key.get(), "k"), {"istio-ca"}});
    ca_authenticator = std::make_shared<CompositeAuthenticator>(
        std::make_unique<ClientCertAuthenticator>(std::make_shared<const AuthoritySource>(issuer), "cluster.local",
                                                  clock),
        std::make_unique<JwtAuthenticator>("cluster.local", std::move(issuers), clock));
    ca = std::make_unique<CertificateAuthority>(CertificateServiceOptions{}, issuer, ca_authenticator,
                                                /*registry=*/nullptr, /*ledger=*/nullptr, clock, metrics,
                                                MakeNullLogger());
    creds.authorization = {"Bearer " + *SignJwt({{"iss", "iss"},
                                                 {"sub", "system:serviceaccount:default:sleep"},
                                                 {"aud", "istio-ca"},
                                                 {"exp", absl::ToUnixSeconds(clock.Now()) + 3600}},
                                                token_key.get(), "k")};
    workload_key = *GenerateKey(workload);
    csr = *BuildCsrPem(workload_key.get());
  }
  SystemClock clock;
  OpenSslRandom random;
  MetricsRegistry metrics;
  std::shared_ptr<const SigningAuthority> authority;
  std::shared_ptr<const CertIssuer> issuer;
  EvpPkeyPtr token_key, workload_key;
  std::shared_ptr<const CallerAuthenticator> ca_authenticator;
  std::unique_ptr<CertificateAuthority> ca;
  CallerCredentials creds;
  std::string csr;
  SpiffeId id = *SpiffeId::Parse("spiffe://cluster.local/ns/default/sa/sleep");
};

void BM_ValidateCsr(benchmark::State& state) {
  Fixture f;
  for (auto _ : state) benchmark::DoNotOptimize(ValidateCsr(f.csr, f.id));
}
BENCHMARK(BM_ValidateCsr);

void BM_IssueSvid(benchmark::State& state) {
  Fixture f;
  std::string spki = *PublicKeyDer(f.workload_key.get());
  for (auto _ : state)
    benchmark::DoNotOptimize(f.issuer->IssueSvid(spki, KeyAlgorithm::kEcdsaP256, f.id, absl::Hours(1)));
}
BENCHMARK(BM_IssueSvid);

// The whole CreateCertificate path minus gRPC: authenticate (cached token), validate, sign, PEM.
void BM_CertificateAuthoritySign(benchmark::State& state) {
  Fixture f(state.range(0) == 0 ? KeyAlgorithm::kEcdsaP256 : KeyAlgorithm::kRsa2048,
            state.range(1) == 0 ? KeyAlgorithm::kEcdsaP256 : KeyAlgorithm::kRsa2048);
  for (auto _ : state) benchmark::DoNotOptimize(f.ca->Sign(f.creds, f.csr, 0));
  state.SetLabel(absl::StrCat("CA ", state.range(0) == 0 ? "P-256" : "RSA-2048", ", workload ",
                              state.range(1) == 0 ? "P-256" : "RSA-2048"));
}
BENCHMARK(BM_CertificateAuthoritySign)->Args({0, 0})->Args({0, 1})->Args({1, 0});

// The same path with the issuance ledger and registry on a real SQLite store (WAL, fsync per
// commit), from many threads so that group commit can batch. Compare with no store at all.
void BM_SignWithLedger(benchmark::State& state) {
  static Fixture* f = nullptr;
  static std::unique_ptr<testing::TempDir> dir;  // a fresh database for every run
  static std::unique_ptr<Store> store;
  static std::unique_ptr<GroupCommitLedger> ledger;
  static std::unique_ptr<CertificateAuthority> ca;
  if (state.thread_index() == 0) {
    f = new Fixture();
    if (state.range(0) == 1) {
      dir = std::make_unique<testing::TempDir>("meshid-bench-ledger");
      store = *OpenStore("sqlite://" + dir->File("meshid.db"), f->clock, MakeNullLogger());
      ledger = std::make_unique<GroupCommitLedger>(*store, f->metrics);
    }
    ca = std::make_unique<CertificateAuthority>(CertificateServiceOptions{}, f->issuer, f->ca_authenticator,
                                                store.get(), ledger.get(), f->clock, f->metrics, MakeNullLogger());
  }
  for (auto _ : state) {
    auto chain = ca->Sign(f->creds, f->csr, 0);
    if (!chain.ok()) state.SkipWithError(std::string(chain.status().message()).c_str());
  }
  if (state.thread_index() == 0) {
    ca.reset();
    ledger.reset();
    store.reset();
    dir.reset();
    delete f;
  }
  state.SetItemsProcessed(state.iterations());
  state.SetLabel(state.range(0) == 1 ? "ledger on (SQLite)" : "no store");
}
BENCHMARK(BM_SignWithLedger)->Arg(0)->Arg(1)->Threads(32)->UseRealTime();

// The floor: what `openssl speed ecdsap256` measures, through the same EVP interface.
void BM_OpensslEcdsaP256Sign(benchmark::State& state) {
  auto key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
  unsigned char digest[32] = {1};
  unsigned char sig[80];
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new(key.get(), nullptr));
  EVP_PKEY_sign_init(ctx.get());
  for (auto _ : state) {
    size_t len = sizeof(sig);
    EVP_PKEY_sign(ctx.get(), sig, &len, digest, sizeof(digest));
  }
}
BENCHMARK(BM_OpensslEcdsaP256Sign);

void BM_OpensslEcdsaP256Verify(benchmark::State& state) {
  auto key = *GenerateKey(KeyAlgorithm::kEcdsaP256);
  unsigned char digest[32] = {1};
  unsigned char sig[80];
  size_t len = sizeof(sig);
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new(key.get(), nullptr));
  EVP_PKEY_sign_init(ctx.get());
  EVP_PKEY_sign(ctx.get(), sig, &len, digest, sizeof(digest));
  EVP_PKEY_verify_init(ctx.get());
  for (auto _ : state) benchmark::DoNotOptimize(EVP_PKEY_verify(ctx.get(), sig, len, digest, sizeof(digest)));
}
BENCHMARK(BM_OpensslEcdsaP256Verify);

}  // namespace
}  // namespace meshid

BENCHMARK_MAIN();
