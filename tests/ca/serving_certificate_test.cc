// The CA endpoint's own certificate in files (ca/serving_certificate.h), in a temporary
// directory with a fake clock: each renewal is a whole new version behind one symlink, renewals
// happen when the chain changes or at half the lifetime, and what is left from an earlier run
// is cleared.
#include "ca/serving_certificate.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "common/files.h"
#include "common/keys.h"
#include "common/random.h"
#include "common/x509.h"
#include "tests/support/fake_clock.h"
#include "tests/support/signing_authority.h"
#include "tests/support/status_matchers.h"
#include "tests/support/temp_dir.h"

namespace meshid {
namespace {

using ::meshid::testing::FakeClock;
using ::meshid::testing::IsOkAndHolds;
using ::meshid::testing::MakeAuthority;
using ::meshid::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::UnorderedElementsAre;

class ServingCertificateTest : public ::testing::Test {
 protected:
  std::unique_ptr<CertIssuer> Issuer() {
    auto issuer = CertIssuer::Create(MakeAuthority(clock_, random_), clock_, random_);
    EXPECT_TRUE(issuer.ok()) << issuer.status();
    return std::move(*issuer);
  }

  ServingCertificateFiles Files() {
    ServingCertificateOptions options;
    options.dir = dir_;
    options.names = {"localhost", "127.0.0.1", "ca.example"};
    options.ttl = absl::Hours(10);
    auto files = ServingCertificateFiles::Create(options);
    EXPECT_TRUE(files.ok()) << files.status();
    return std::move(*files);
  }

  std::vector<std::string> Entries() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(dir_)) names.push_back(e.path().filename().string());
    return names;
  }

  FakeClock clock_;
  OpenSslRandom random_;
  testing::TempDir temp_{"serving-cert-test"};
  std::string dir_ = temp_.File("serving");
};

TEST_F(ServingCertificateTest, EachRenewalIsAWholeVersionBehindTheSymlink) {
  auto issuer = Issuer();
  ServingCertificateFiles files = Files();
  ASSERT_OK(files.Renew(*issuer));
  EXPECT_EQ(std::filesystem::read_symlink(dir_ + "/current"), "v1");
  struct stat st {};
  ASSERT_EQ(stat(files.key_file().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "the key is the owner's alone";

  // The certificate is for the key beside it, with the SANs asked for, followed by the CA's chain.
  auto key = PrivateKeyFromPem(*ReadFile(files.key_file()));
  ASSERT_OK(key.status());
  auto chain = CertsFromPem(*ReadFile(files.chain_file()));
  ASSERT_OK(chain.status());
  ASSERT_EQ(chain->size(), 2u);
  EXPECT_TRUE(SamePublicKey(X509_get0_pubkey((*chain)[0].get()), key->get()));
  EXPECT_EQ(SerialHex((*chain)[0].get()), files.serial_hex());
  EXPECT_THAT(DnsSans((*chain)[0].get()), ElementsAre("localhost", "ca.example"));
  EXPECT_OK(VerifyCertChain((*chain)[0].get(), {}, {issuer->authority().cert.get()}, clock_.Now()));

  const std::string first_serial = files.serial_hex();
  ASSERT_OK(files.Renew(*issuer));
  ASSERT_OK(files.Renew(*issuer));
  EXPECT_EQ(std::filesystem::read_symlink(dir_ + "/current"), "v3");
  EXPECT_NE(files.serial_hex(), first_serial);
  EXPECT_THAT(Entries(), UnorderedElementsAre("current", "v2", "v3")) << "the version before stays, older go";
}

TEST_F(ServingCertificateTest, RenewsWhenTheChainChangesOrAtHalfItsLife) {
  auto issuer = Issuer();
  ServingCertificateFiles files = Files();
  EXPECT_THAT(files.RenewIfDue(*issuer, clock_), IsOkAndHolds(true)) << "none issued yet";
  EXPECT_THAT(files.RenewIfDue(*issuer, clock_), IsOkAndHolds(false));
  clock_.Advance(absl::Hours(4));
  EXPECT_THAT(files.RenewIfDue(*issuer, clock_), IsOkAndHolds(false));
  clock_.Advance(absl::Hours(1) + absl::Seconds(1));
  EXPECT_THAT(files.RenewIfDue(*issuer, clock_), IsOkAndHolds(true)) << "past half of 10 hours";
  EXPECT_THAT(files.RenewIfDue(*issuer, clock_), IsOkAndHolds(false));

  // A reload replaced the signing material: the next look renews from the new chain.
  auto replaced = Issuer();
  EXPECT_THAT(files.RenewIfDue(*replaced, clock_), IsOkAndHolds(true));
  auto chain = CertsFromPem(*ReadFile(files.chain_file()));
  ASSERT_OK(chain.status());
  EXPECT_OK(VerifyCertChain((*chain)[0].get(), {}, {replaced->authority().cert.get()}, clock_.Now()));
}

TEST_F(ServingCertificateTest, WhatAnEarlierRunLeftIsCleared) {
  std::filesystem::create_directories(dir_ + "/v7");
  ASSERT_OK(WriteFileAtomic(dir_ + "/v7/key.pem", "stale", 0600));
  ASSERT_EQ(symlink("v7", (dir_ + "/current").c_str()), 0);
  ASSERT_OK(WriteFileAtomic(dir_ + "/README", "an operator's note", 0644));
  ServingCertificateFiles files = Files();
  EXPECT_THAT(Entries(), ElementsAre("README")) << "only what is ours is removed";
  auto issuer = Issuer();
  ASSERT_OK(files.Renew(*issuer));
  EXPECT_EQ(std::filesystem::read_symlink(dir_ + "/current"), "v1");
}

TEST_F(ServingCertificateTest, ABadDirectoryIsAnError) {
  ServingCertificateOptions options;
  EXPECT_THAT(ServingCertificateFiles::Create(options), StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_OK(WriteFileAtomic(temp_.File("a-file"), "x", 0644));
  options.dir = temp_.File("a-file");
  EXPECT_FALSE(ServingCertificateFiles::Create(options).ok());
}

}  // namespace
}  // namespace meshid
