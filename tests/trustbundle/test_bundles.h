// What the trust bundle tests share: self-signed test CAs and the canonical bundle of some of
// them.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "tests/support/certs.h"
#include "tests/support/status_matchers.h"
#include "trustbundle/wire.h"

namespace meshid::trustbundle {

// A self-signed CA named by `organization`; aborts if it cannot be made (every test needs it).
inline testing::TestCa NewCa(const std::string& organization) {
  testing::TestCa::Options options;
  options.organization = organization;
  auto ca = testing::TestCa::Create(options);
  EXPECT_OK(ca.status());
  if (!ca.ok()) std::abort();
  return *std::move(ca);
}

// MakeTrustBundle of the certificates of `cas` (an empty bundle, and a test failure, if refused).
inline v1::TrustBundle Bundle(const std::vector<const testing::TestCa*>& cas) {
  std::string pem;
  for (const testing::TestCa* ca : cas) pem += ca->cert_pem();
  auto bundle = MakeTrustBundle("cluster.local", pem);
  EXPECT_OK(bundle.status());
  return bundle.ok() ? *bundle : v1::TrustBundle();
}

}  // namespace meshid::trustbundle
