#include "xds/resource.h"

#include "common/sha256.h"

namespace meshid::xds {

std::string ContentVersion(absl::string_view body) { return Sha256Hex(body).substr(0, 16); }

}  // namespace meshid::xds
