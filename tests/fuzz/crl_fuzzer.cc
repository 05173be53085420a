// A CRL reaches an agent or a proxy over the network (pushed by the server), so VerifyCrl parses
// untrusted bytes. Besides not crashing: every CRL it accepts must also parse with OpenSSL's own
// reader, verify against the issuer, and list the same number of distinct serials (a
// differential check). The corpus CRLs are signed by the key of kIssuerPem (made with
// `openssl ca -gencrl`, valid until 2126).
#include <openssl/x509.h>

#include <cstddef>
#include <cstdint>
#include <set>
#include <string>

#include "common/crl.h"
#include "common/x509.h"

namespace {

constexpr char kIssuerPem[] = R"(-----BEGIN CERTIFICATE-----
MIIBfDCCASGgAwIBAgIUDOmkEwBu5qBW5ctYEsFLwbqTHiwwCgYIKoZIzj0EAwIw
EjEQMA4GA1UECgwHZnV6eiBDQTAgFw0yNjEyMDcwMTE1MzlaGA8yMTI2MTExMzAx
MTUzOVowEjEQMA4GA1UECgwHZnV6eiBDQTBZMBMGByqGSM49AgEGCCqGSM49AwEH
A0IABLKMwK4BSMABttfxBJa6LC3l1327oBpND4mK266t6rjXmARNDHDY0pNWy4Ar
N117KY/nf0SejplkNeXr84hHuTOjUzBRMB8GA1UdIwQYMBaAFPVmPs2rpVl6Yy9m
H93JFGVt33y1MA8GA1UdEwEB/wQFMAMBAf8wHQYDVR0OBBYEFPVmPs2rpVl6Yy9m
H93JFGVt33y1MAoGCCqGSM49BAMCA0kAMEYCIQDTS7z+zFEeNmoNXp9j80g2d0qA
alI/j88MCQ23z0NrxgIhAPxMoefoCUQHgCCuFL9nJmSDksrRM7xMQ7Fewim87Hyu
-----END CERTIFICATE-----
)";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static meshid::X509Ptr issuer = *meshid::CertFromPem(kIssuerPem);
  const std::string der(reinterpret_cast<const char*>(data), size);
  auto info = meshid::VerifyCrl(der, issuer.get(), absl::FromUnixSeconds(1'800'000'000));
  if (!info.ok()) {
    if (!absl::IsInvalidArgument(info.status())) __builtin_trap();  // refusals are always InvalidArgument
    return 0;
  }
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  meshid::X509CrlPtr crl(d2i_X509_CRL(nullptr, &p, static_cast<long>(der.size())));
  if (!crl || X509_CRL_verify(crl.get(), X509_get0_pubkey(issuer.get())) != 1) __builtin_trap();
  std::set<std::string> serials;
  const STACK_OF(X509_REVOKED)* revoked = X509_CRL_get_REVOKED(crl.get());
  for (int i = 0; i < sk_X509_REVOKED_num(revoked); ++i) {
    serials.insert(meshid::Asn1IntegerHex(X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(revoked, i))));
  }
  if (serials != info->revoked) __builtin_trap();
  return 0;
}
