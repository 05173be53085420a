// Small helpers for SDS tests: resources with chosen content and generation.
#pragma once

#include <string>

#include "sds/resource.h"

namespace meshid::sds::testing {

inline xds::ResourcePtr Cert(const std::string& content, uint64_t generation) {
  return *MakeTlsCertificateResource(kWorkloadResourceName, "CHAIN " + content, "KEY " + content, generation);
}
inline xds::ResourcePtr Roots(const std::string& content, uint64_t generation) {
  return *MakeValidationContextResource(kRootResourceName, {"ROOT " + content}, generation);
}

}  // namespace meshid::sds::testing
