// An independent X.509 implementation (Botan 2) checks a certificate against a CRL made by meshid:
// path validation of CHAIN (leaf first, then any intermediates) to ROOTS with the CRL in the
// certificate store, so Botan itself checks the CRL's issuer and signature and looks the leaf up.
//
//   botan_crl_check ROOTS.pem CRL.pem CHAIN.pem
//
// Exit 0 and "OK" when the path validates and the leaf is not revoked; exit 1 with Botan's reason
// otherwise ("FAIL Certificate is revoked" for a revoked leaf).
#include <botan/certstor.h>
#include <botan/data_src.h>
#include <botan/x509_crl.h>
#include <botan/x509cert.h>
#include <botan/x509path.h>

#include <iostream>
#include <string>
#include <vector>

#include "tests/interop/botan_tool.h"

using meshid::botan_tool::Fail;
using meshid::botan_tool::LoadAll;

int main(int argc, char** argv) {
  if (argc != 4) return Fail("usage: botan_crl_check ROOTS.pem CRL.pem CHAIN.pem");
  try {
    std::vector<Botan::X509_Certificate> roots = LoadAll(argv[1]);
    std::vector<Botan::X509_Certificate> chain = LoadAll(argv[3]);
    if (roots.empty()) return Fail("no root certificates");
    if (chain.empty()) return Fail("no certificates in chain");
    Botan::Certificate_Store_In_Memory store;
    for (const auto& r : roots) store.add_certificate(r);
    store.add_crl(Botan::X509_CRL(std::string(argv[2])));
    // Revocation data is not required (the root has no CRL); the CRL present is used.
    Botan::Path_Validation_Restrictions restrictions(false, 110);
    Botan::Path_Validation_Result result =
        Botan::x509_path_validate(chain, restrictions, store, "", Botan::Usage_Type::TLS_CLIENT_AUTH);
    if (!result.successful_validation()) return Fail(result.result_string());
    std::cout << "OK" << std::endl;
    return 0;
  } catch (const std::exception& e) {
    return Fail(std::string("exception: ") + e.what());
  }
}
