// The trust bundle stream's responses reach every agent over the network, and the roots inside
// them become the anchors every workload and proxy on the node trusts. The input is read as a
// DiscoveryResponse and decoded (DecodeTrustBundleResponse). Besides not crashing: every refusal
// is InvalidArgument; an accepted response keeps the decoder's promises (one resource of the type,
// 1 to 16 roots, each a self-signed CA certificate, sorted by fingerprint without duplicates, the
// fingerprint field what the roots give, version_info the digest of it) and turns into the
// stream's resource and back unchanged.
// Corpus: responses carrying one and two self-signed roots, and broken variants.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/fingerprint.h"
#include "common/x509.h"
#include "envoy/service/discovery/v3/discovery.pb.h"
#include "trustbundle/wire.h"

namespace {

void CheckResponse(const std::string& bytes) {
  envoy::service::discovery::v3::DiscoveryResponse response;
  if (!response.ParseFromString(bytes)) return;
  auto bundle = meshid::trustbundle::DecodeTrustBundleResponse(response);
  if (!bundle.ok()) {
    if (!absl::IsInvalidArgument(bundle.status())) __builtin_trap();  // refusals are always InvalidArgument
    return;
  }
  if (response.type_url() != meshid::trustbundle::kTrustBundleTypeUrl || response.resources_size() != 1) {
    __builtin_trap();
  }
  if (bundle->root_der_size() < 1 || bundle->root_der_size() > meshid::trustbundle::kMaxTrustBundleRoots) {
    __builtin_trap();
  }
  std::vector<std::string> ders;
  std::string previous;
  for (const std::string& der : bundle->root_der()) {
    if (der.size() > meshid::trustbundle::kMaxRootBytes) __builtin_trap();
    auto cert = meshid::CertFromDer(der);
    if (!cert.ok() || !meshid::IsCa(cert->get()) || !meshid::IsSelfSigned(cert->get())) __builtin_trap();
    const std::string fingerprint = meshid::RootFingerprint(der);
    if (!previous.empty() && !(previous < fingerprint)) __builtin_trap();  // sorted, distinct
    previous = fingerprint;
    ders.push_back(der);
  }
  if (bundle->fingerprint() != meshid::RootSetFingerprint(ders)) __builtin_trap();
  if (!meshid::trustbundle::ValidateTrustBundle(*bundle).ok()) __builtin_trap();

  meshid::xds::Resource resource = meshid::trustbundle::TrustBundleResource(*bundle);
  if (resource.name != meshid::trustbundle::kTrustBundleName) __builtin_trap();
  if (resource.version != response.version_info()) __builtin_trap();
  meshid::trustbundle::v1::TrustBundle again;
  if (!again.ParseFromString(std::string(resource.body.view()))) __builtin_trap();
  if (again.SerializeAsString() != bundle->SerializeAsString()) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  CheckResponse(std::string(reinterpret_cast<const char*>(data), size));
  return 0;
}
