// The revocation stream's responses reach every agent over the network, and the CRL inside them
// ends in the RevocationIndex every proxy consults on each handshake. The input is read as a
// DiscoveryResponse (DecodeRevocationResponse, then the index over the CRL it carries) and, raw,
// as a CRL (RevocationIndex::FromCrlDer). Besides not crashing: every refusal is
// InvalidArgument; an accepted response keeps the decoder's promises and turns into the stream's
// resource and back unchanged; an accepted CRL is one OpenSSL reads whole as version 2, and
// every serial it lists is revoked for a certificate of its issuer and for no other issuer name.
// Corpus: responses carrying tests/fuzz/corpus/crl/two-revoked.der (cRLNumber 2) and its issuer.
#include <openssl/x509.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/crl.h"
#include "common/openssl_ptr.h"
#include "envoy/service/discovery/v3/discovery.pb.h"
#include "revocation/wire.h"

namespace {

void CheckIndex(const std::string& der) {
  auto index = meshid::RevocationIndex::FromCrlDer(der);
  if (!index.ok()) {
    if (!absl::IsInvalidArgument(index.status())) __builtin_trap();  // refusals are always InvalidArgument
    return;
  }
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  meshid::X509CrlPtr crl(d2i_X509_CRL(nullptr, &p, static_cast<long>(der.size())));
  if (!crl || p != reinterpret_cast<const unsigned char*>(der.data() + der.size())) __builtin_trap();
  if (X509_CRL_get_version(crl.get()) != X509_CRL_VERSION_2) __builtin_trap();
  const STACK_OF(X509_REVOKED)* revoked = X509_CRL_get_REVOKED(crl.get());
  const int entries = sk_X509_REVOKED_num(revoked);
  if ((*index)->size() > static_cast<size_t>(std::max(entries, 0))) __builtin_trap();
  if (entries > 0 && (*index)->size() == 0) __builtin_trap();

  // A certificate is only its serial and issuer name to the index.
  meshid::X509Ptr cert(X509_new());
  meshid::X509NamePtr other_name(X509_NAME_new());
  if (!cert || !other_name) __builtin_trap();  // allocation
  if (X509_NAME_add_entry_by_txt(other_name.get(), "O", MBSTRING_ASC,
                                 reinterpret_cast<const unsigned char*>("not the issuer"), -1, -1, 0) != 1) {
    __builtin_trap();
  }
  const bool names_differ = X509_NAME_cmp(other_name.get(), X509_CRL_get_issuer(crl.get())) != 0;
  for (int i = 0; i < std::min(entries, 16); ++i) {
    const ASN1_INTEGER* serial = X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(revoked, i));
    if (X509_set_serialNumber(cert.get(), const_cast<ASN1_INTEGER*>(serial)) != 1) __builtin_trap();
    if (X509_set_issuer_name(cert.get(), X509_CRL_get_issuer(crl.get())) != 1) __builtin_trap();
    if (!(*index)->IsRevoked(cert.get())) __builtin_trap();
    if (X509_set_issuer_name(cert.get(), other_name.get()) != 1) __builtin_trap();
    if (names_differ && (*index)->IsRevoked(cert.get())) __builtin_trap();
  }
}

void CheckResponse(const std::string& bytes) {
  envoy::service::discovery::v3::DiscoveryResponse response;
  if (!response.ParseFromString(bytes)) return;
  auto list = meshid::revocation::DecodeRevocationResponse(response);
  if (!list.ok()) {
    if (!absl::IsInvalidArgument(list.status())) __builtin_trap();
    return;
  }
  if (response.type_url() != meshid::revocation::kRevocationListTypeUrl || response.resources_size() != 1) {
    __builtin_trap();
  }
  if (list->crl_der().empty() || list->issuer_chain_der_size() > meshid::revocation::kMaxIssuerChain ||
      list->crl_number() < 0) {
    __builtin_trap();
  }
  // version_info is "<crl_number>.<digest>".
  int64_t version = 0;
  const std::string& info = response.version_info();
  if (!absl::SimpleAtoi(absl::string_view(info).substr(0, info.find('.')), &version)) __builtin_trap();
  if (version != list->crl_number()) __builtin_trap();

  meshid::xds::Resource resource = meshid::revocation::RevocationListResource(*list);
  if (resource.name != meshid::revocation::kRevocationListName) __builtin_trap();
  if (!absl::StartsWith(resource.version, absl::StrCat(list->crl_number(), "."))) __builtin_trap();
  meshid::revocation::v1::RevocationList again;
  if (!again.ParseFromString(std::string(resource.body.view()))) __builtin_trap();
  if (again.SerializeAsString() != list->SerializeAsString()) __builtin_trap();

  CheckIndex(list->crl_der());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  CheckResponse(bytes);
  CheckIndex(bytes);
  return 0;
}
