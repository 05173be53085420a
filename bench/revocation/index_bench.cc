// What revocation costs a proxy, against a CRL of 100,000 entries (docs/benchmarks.md,
// "Revocation"):
//  - per handshake: RevocationIndex::IsRevoked (what meshproxy/tls.cc's verify callback runs on
//    the peer's leaf), for a listed and an unlisted certificate, with warm caches and with the
//    caches flushed before every lookup;
//  - per new CRL: BuildCrl (the server signing it), VerifyCrl (the server's check of its own CRL,
//    signature included, with the serials as hex; and, with CrlSerials::kIndexOnly, the agent's
//    check, which also yields the index), CrlDerFromPem + RevocationIndex::FromCrlDer (what a
//    proxy does with each SDS ROOTCA), and OpenSSL's d2i_X509_CRL alone (no longer on any path);
//  - for comparison, OpenSSL's own revocation check: X509_verify_cert of the leaf against its CA
//    with X509_V_FLAG_CRL_CHECK and the same CRL in the store, and without it.
//
// The CRL is meshid's own (ca/crl_builder.h's BuildCrl, as `meshid server` signs it): 100,000
// random 16-byte serials, each with its revocation time and a reasonCode, signed by a P-256 test
// CA; the listed and unlisted leaves are P-256 certificates of the same CA (tests/support/certs.h).
#include <benchmark/benchmark.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "ca/crl_builder.h"
#include "common/crl.h"
#include "common/x509.h"
#include "tests/support/certs.h"

namespace meshid {
namespace {

constexpr int kEntries = 100000;
constexpr int kLeaves = 1000;  // listed and unlisted leaves each, for the lookups that rotate over them

void Check(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "setup failed: %s\n", what.c_str());
    std::abort();
  }
}

template <typename T>
T Must(absl::StatusOr<T> v, const std::string& what) {
  Check(v.ok(), absl::StrCat(what, ": ", v.status().ToString()));
  return *std::move(v);
}

X509Ptr LeafCert(const testing::TestCa& ca, int i) {
  auto pem = Must(ca.Leaf({absl::StrCat("spiffe://cluster.local/ns/default/sa/w", i)}), "leaf");
  auto certs = Must(CertsFromPem(pem.cert), "parsing a leaf");
  Check(!certs.empty(), "a leaf");
  return std::move(certs[0]);
}

// Built once, shared by every benchmark.
struct Setup {
  Setup() {
    ca = std::make_unique<testing::TestCa>(Must(testing::TestCa::Create(), "test CA"));
    for (int i = 0; i < kLeaves; ++i) {
      listed.push_back(LeafCert(*ca, i));
      unlisted.push_back(LeafCert(*ca, kLeaves + i));
    }
    const absl::Time now = absl::Now();
    const std::string issuer_serial = SerialHex(ca->cert());
    records.reserve(kEntries);
    auto record = [&](std::string serial_hex) {
      RevocationRecord r;
      r.serial_hex = std::move(serial_hex);
      r.spiffe_id = "spiffe://cluster.local/ns/default/sa/revoked";
      r.issuer_serial_hex = issuer_serial;
      r.not_after = now + absl::Hours(24);
      r.reason = RevocationReason::kKeyCompromise;
      r.revoked_by = "bench";
      r.revoked_at = now - absl::Minutes(1);
      records.push_back(std::move(r));
    };
    for (const auto& leaf : listed) record(SerialHex(leaf.get()));
    while (records.size() < kEntries) {
      unsigned char bytes[16];
      Check(RAND_bytes(bytes, sizeof(bytes)) == 1, "RAND_bytes");
      bytes[0] |= 0x01;  // no leading zero byte (any serial the ledger would hold)
      record(absl::AsciiStrToUpper(
          absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)))));
    }
    der = Must(BuildCrl(ca->cert(), ca->key(), records, CrlContents{42, now - absl::Minutes(1), now + absl::Hours(24)}),
               "building the CRL");
    pem = CrlDerToPem(der);
    index = Must(RevocationIndex::FromCrlDer(der), "indexing the CRL");
    Check(index->size() == kEntries, "100,000 entries in the index");
    for (const auto& leaf : listed) Check(index->IsRevoked(leaf.get()), "listed leaf found");
    for (const auto& leaf : unlisted) Check(!index->IsRevoked(leaf.get()), "unlisted leaf not found");
    std::fprintf(stderr, "CRL: %d entries, %zu bytes DER, %zu bytes PEM\n", kEntries, der.size(), pem.size());

    // OpenSSL's trust store: the CA, and (for the CRL check) the same CRL.
    const auto* p = reinterpret_cast<const unsigned char*>(der.data());
    crl.reset(d2i_X509_CRL(nullptr, &p, static_cast<long>(der.size())));
    Check(crl != nullptr, "d2i_X509_CRL");
    store.reset(X509_STORE_new());
    Check(store != nullptr && X509_STORE_add_cert(store.get(), ca->cert()) == 1 &&
              X509_STORE_add_crl(store.get(), crl.get()) == 1,
          "X509_STORE");
  }

  std::unique_ptr<testing::TestCa> ca;
  std::vector<X509Ptr> listed, unlisted;
  std::vector<RevocationRecord> records;
  std::string der, pem;
  std::shared_ptr<const RevocationIndex> index;
  X509CrlPtr crl;
  std::unique_ptr<X509_STORE, OpenSslDeleter<X509_STORE_free>> store;
};

Setup& S() {
  static Setup* setup = new Setup();
  return *setup;
}

// ---- per handshake ----

// One certificate over and over (everything in cache).
void BM_IsRevoked(benchmark::State& state) {
  const bool hit = state.range(0) == 1;
  X509* cert = (hit ? S().listed : S().unlisted)[0].get();
  for (auto _ : state) benchmark::DoNotOptimize(S().index->IsRevoked(cert));
  state.SetLabel(hit ? "listed (revoked)" : "not listed");
}
BENCHMARK(BM_IsRevoked)->Arg(1)->Arg(0);

// 1,000 different certificates in turn.
void BM_IsRevokedRotating(benchmark::State& state) {
  const bool hit = state.range(0) == 1;
  const auto& certs = hit ? S().listed : S().unlisted;
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(S().index->IsRevoked(certs[i].get()));
    if (++i == certs.size()) i = 0;
  }
  state.SetLabel(hit ? "listed (revoked), 1,000 certificates in turn" : "not listed, 1,000 certificates in turn");
}
BENCHMARK(BM_IsRevokedRotating)->Arg(1)->Arg(0);

// Cold caches: 64 MiB are read before every lookup, and each lookup is timed on its own
// (steady_clock). range(1) 0: nothing else is touched (certificate, index, code and page tables
// all cold: a worst case no handshake sees); 1: OpenSSL verifies the certificate's chain first
// (X509_verify_cert, no CRL), as a handshake does right before the verify callback, so only the
// index and IsRevoked's own code are cold; 2: no lookup at all, what the timing costs.
void BM_IsRevokedColdCache(benchmark::State& state) {
  const bool hit = state.range(0) == 1;
  const int64_t mode = state.range(1);
  const auto& certs = hit ? S().listed : S().unlisted;
  static std::vector<uint64_t> flush(64 << 20 >> 3, 1);
  std::unique_ptr<X509_STORE_CTX, OpenSslDeleter<X509_STORE_CTX_free>> ctx(X509_STORE_CTX_new());
  size_t i = 0;
  uint64_t sink = 0;
  for (auto _ : state) {
    for (size_t j = 0; j < flush.size(); j += 8) sink += flush[j];
    X509* cert = certs[i].get();
    if (mode == 1) {
      X509_STORE_CTX_init(ctx.get(), S().store.get(), cert, nullptr);
      sink += static_cast<uint64_t>(X509_verify_cert(ctx.get()));
      X509_STORE_CTX_cleanup(ctx.get());
    }
    benchmark::DoNotOptimize(sink);
    const auto start = std::chrono::steady_clock::now();
    if (mode != 2) benchmark::DoNotOptimize(S().index->IsRevoked(cert));
    const auto end = std::chrono::steady_clock::now();
    state.SetIterationTime(std::chrono::duration<double>(end - start).count());
    if (++i == certs.size()) i = 0;
  }
  const char* what[] = {"everything cold", "after X509_verify_cert of it", "timing only, no lookup"};
  state.SetLabel(absl::StrCat(mode == 2 ? "" : (hit ? "listed, " : "not listed, "), what[mode]));
}
BENCHMARK(BM_IsRevokedColdCache)
    ->Args({1, 0})
    ->Args({0, 0})
    ->Args({1, 1})
    ->Args({0, 1})
    ->Args({0, 2})
    ->UseManualTime()
    ->Iterations(1000);

// OpenSSL's chain verification of the leaf against its CA, with (range 1) or without (range 0)
// X509_V_FLAG_CRL_CHECK and the 100,000-entry CRL; range(1): listed leaf (1) or not (0).
void BM_OpensslVerifyCert(benchmark::State& state) {
  const bool crl_check = state.range(0) == 1;
  const bool hit = state.range(1) == 1;
  X509* cert = (hit ? S().listed : S().unlisted)[0].get();
  const int expected = hit && crl_check ? X509_V_ERR_CERT_REVOKED : X509_V_OK;
  std::unique_ptr<X509_STORE_CTX, OpenSslDeleter<X509_STORE_CTX_free>> ctx(X509_STORE_CTX_new());
  for (auto _ : state) {
    X509_STORE_CTX_init(ctx.get(), S().store.get(), cert, nullptr);
    if (crl_check) X509_STORE_CTX_set_flags(ctx.get(), X509_V_FLAG_CRL_CHECK);
    X509_verify_cert(ctx.get());
    if (X509_STORE_CTX_get_error(ctx.get()) != expected) {
      state.SkipWithError(X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get())));
      break;
    }
    X509_STORE_CTX_cleanup(ctx.get());
  }
  state.SetLabel(
      absl::StrCat(crl_check ? "X509_V_FLAG_CRL_CHECK, " : "no CRL check, ", hit ? "listed (revoked)" : "not listed"));
}
BENCHMARK(BM_OpensslVerifyCert)->Args({0, 0})->Args({1, 0})->Args({1, 1});

// ---- per new CRL ----

// A proxy's work for each ROOTCA carrying a CRL: PEM to DER, then the index.
void BM_CrlDerFromPem(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(CrlDerFromPem(S().pem));
  state.SetLabel("100,000 entries");
}
BENCHMARK(BM_CrlDerFromPem)->Unit(benchmark::kMillisecond);

// OpenSSL's parse alone (what FromCrlDer and VerifyCrl spent most of their time on before they
// read the revoked certificates themselves).
void BM_D2iX509Crl(benchmark::State& state) {
  for (auto _ : state) {
    const auto* p = reinterpret_cast<const unsigned char*>(S().der.data());
    X509CrlPtr crl(d2i_X509_CRL(nullptr, &p, static_cast<long>(S().der.size())));
    benchmark::DoNotOptimize(crl.get());
  }
  state.SetLabel("100,000 entries");
}
BENCHMARK(BM_D2iX509Crl)->Unit(benchmark::kMillisecond);

void BM_FromCrlDer(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(RevocationIndex::FromCrlDer(S().der));
  state.SetLabel("100,000 entries");
}
BENCHMARK(BM_FromCrlDer)->Unit(benchmark::kMillisecond);

// The server's check of the CRL it just built (parse, issuer, signature, serials as hex).
void BM_VerifyCrl(benchmark::State& state) {
  const absl::Time now = absl::Now();
  for (auto _ : state) benchmark::DoNotOptimize(VerifyCrl(S().der, S().ca->cert(), now));
  state.SetLabel("100,000 entries");
}
BENCHMARK(BM_VerifyCrl)->Unit(benchmark::kMillisecond);

// What the agent runs since it parses each CRL once (revocation/receiver.cc): the same checks,
// and the RevocationIndex instead of the hex strings.
void BM_VerifyCrlIndexOnly(benchmark::State& state) {
  const absl::Time now = absl::Now();
  for (auto _ : state) {
    benchmark::DoNotOptimize(VerifyCrl(S().der, S().ca->cert(), now, /*allow_stale=*/false, CrlSerials::kIndexOnly));
  }
  state.SetLabel("100,000 entries");
}
BENCHMARK(BM_VerifyCrlIndexOnly)->Unit(benchmark::kMillisecond);

// The server's work for each new CRL (ca/crl_builder.h, from the records the store returns).
void BM_BuildCrl(benchmark::State& state) {
  const absl::Time now = absl::Now();
  for (auto _ : state) {
    benchmark::DoNotOptimize(BuildCrl(S().ca->cert(), S().ca->key(), S().records,
                                      CrlContents{43, now - absl::Minutes(1), now + absl::Hours(24)}));
  }
  state.SetLabel("100,000 entries");
}
BENCHMARK(BM_BuildCrl)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace meshid

// The CRL, certificates and index are built before any benchmark runs (about 2 s), so that none
// of it is timed.
int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  meshid::S();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
