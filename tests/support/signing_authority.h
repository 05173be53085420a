// A SigningAuthority for the CA's unit tests and benchmarks: a fresh self-signed root made by
// ca/'s own code (tests/support/certs.h makes certificates independently of ca/).
#pragma once

#include <memory>
#include <string>

#include "absl/time/time.h"
#include "ca/authority.h"
#include "common/clock.h"
#include "common/keys.h"
#include "common/random.h"

namespace meshid::testing {

// A self-signed root for trust domain `td` valid for `lifetime` from clock.Now(), as the only
// certificate of its chain and bundle. Aborts the process, saying why, if ca/ cannot make one.
std::shared_ptr<const SigningAuthority> MakeAuthority(const Clock& clock, RandomSource& random,
                                                      const std::string& td = "cluster.local",
                                                      absl::Duration lifetime = absl::Hours(24 * 365),
                                                      KeyAlgorithm algorithm = KeyAlgorithm::kEcdsaP256);

}  // namespace meshid::testing
