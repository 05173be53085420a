// An independent X.509 implementation (Botan 2) checks SVIDs issued by meshid: RFC 5280 path
// validation to the given roots for TLS client and server use, then the X.509-SVID profile.
//
//   botan_svid_check ROOTS.pem CHAIN.pem [EXPECTED_SPIFFE_ID]
//
// Exit 0 and "OK <uri>" when everything holds; exit 1 with the first failed check otherwise.
#include <botan/certstor.h>
#include <botan/data_src.h>
#include <botan/x509cert.h>
#include <botan/x509path.h>

#include <iostream>
#include <string>
#include <vector>

#include "tests/interop/botan_tool.h"

using meshid::botan_tool::Fail;
using meshid::botan_tool::LoadAll;

int main(int argc, char** argv) {
  if (argc < 3) return Fail("usage: botan_svid_check ROOTS.pem CHAIN.pem [SPIFFE_ID]");
  try {
    std::vector<Botan::X509_Certificate> roots = LoadAll(argv[1]);
    std::vector<Botan::X509_Certificate> chain = LoadAll(argv[2]);
    if (roots.empty()) return Fail("no root certificates");
    if (chain.empty()) return Fail("no certificates in chain");
    Botan::Certificate_Store_In_Memory store;
    for (const auto& r : roots) store.add_certificate(r);
    Botan::Path_Validation_Restrictions restrictions(false, 110);
    for (auto usage : {Botan::Usage_Type::TLS_CLIENT_AUTH, Botan::Usage_Type::TLS_SERVER_AUTH}) {
      Botan::Path_Validation_Result result = Botan::x509_path_validate(chain, restrictions, store, "", usage);
      if (!result.successful_validation()) return Fail("path validation: " + result.result_string());
    }
    const Botan::X509_Certificate& leaf = chain.front();
    std::vector<std::string> uris = leaf.subject_alt_name().get_attribute("URI");
    if (uris.size() != 1) return Fail("expected exactly one URI SAN, found " + std::to_string(uris.size()));
    if (uris[0].rfind("spiffe://", 0) != 0) return Fail("URI SAN is not a SPIFFE ID: " + uris[0]);
    if (argc > 3 && uris[0] != argv[3]) return Fail("URI SAN " + uris[0] + " is not " + argv[3]);
    if (!leaf.subject_dn().empty()) return Fail("subject is not empty: " + leaf.subject_dn().to_string());
    const Botan::Extensions& ext = leaf.v3_extensions();
    if (!ext.critical_extension_set(Botan::OID::from_string("X509v3.SubjectAlternativeName"))) {
      return Fail("SAN extension is not critical (required with an empty subject)");
    }
    if (leaf.is_CA_cert()) return Fail("leaf is a CA certificate");
    if (!ext.critical_extension_set(Botan::OID::from_string("X509v3.BasicConstraints"))) {
      return Fail("basicConstraints is not critical");
    }
    if (!ext.critical_extension_set(Botan::OID::from_string("X509v3.KeyUsage")))
      return Fail("key usage is not critical");
    Botan::Key_Constraints ku = leaf.constraints();
    if (!(ku & Botan::DIGITAL_SIGNATURE)) return Fail("key usage lacks digitalSignature");
    if (ku & (Botan::KEY_CERT_SIGN | Botan::CRL_SIGN)) return Fail("key usage has keyCertSign or cRLSign");
    bool server = false, client = false;
    for (const auto& oid : leaf.extended_key_usage()) {
      server = server || oid == Botan::OID::from_string("PKIX.ServerAuth");
      client = client || oid == Botan::OID::from_string("PKIX.ClientAuth");
    }
    if (!server || !client) return Fail("extended key usage lacks serverAuth or clientAuth");
    if (leaf.authority_key_id().empty()) return Fail("no authority key identifier");
    if (leaf.serial_number().size() < 8) return Fail("serial shorter than 64 bits");
    std::cout << "OK " << uris[0] << std::endl;
    return 0;
  } catch (const std::exception& e) {
    return Fail(std::string("exception: ") + e.what());
  }
}
