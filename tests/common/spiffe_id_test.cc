#include "common/spiffe_id.h"

#include <gtest/gtest.h>

namespace meshid {
namespace {

TEST(SpiffeId, ParsesServiceAccountForm) {
  auto id = SpiffeId::Parse("spiffe://cluster.local/ns/default/sa/sleep");
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->trust_domain(), "cluster.local");
  EXPECT_EQ(id->path(), "/ns/default/sa/sleep");
  EXPECT_EQ(id->Namespace(), "default");
  EXPECT_EQ(id->ServiceAccount(), "sleep");
  EXPECT_EQ(id->ToString(), "spiffe://cluster.local/ns/default/sa/sleep");
  EXPECT_EQ(*SpiffeId::ForServiceAccount("example.org", "a", "b"), *SpiffeId::Parse("spiffe://example.org/ns/a/sa/b"));
  EXPECT_FALSE(SpiffeId::ForServiceAccount("example.org", "a/b", "c").ok());
  EXPECT_FALSE(SpiffeId::ForServiceAccount("example.org", "a", "").ok());
}

TEST(SpiffeId, RootOnlyWhenAllowed) {
  EXPECT_FALSE(SpiffeId::Parse("spiffe://cluster.local").ok());
  EXPECT_TRUE(SpiffeId::Parse("spiffe://cluster.local", /*allow_root=*/true).ok());
}

TEST(SpiffeId, RejectsEverySpecViolation) {
  const char* bad[] = {
      "http://cluster.local/ns/a/sa/b",        // scheme
      "SPIFFE://cluster.local/ns/a/sa/b",      // scheme is lower-case here
      "spiffe:///ns/a/sa/b",                   // empty trust domain
      "spiffe://Cluster.local/ns/a/sa/b",      // upper-case trust domain
      "spiffe://cluster.local:8080/ns/a",      // port
      "spiffe://user@cluster.local/ns/a",      // user info
      "spiffe://cluster.local/ns/a/sa/b?x=1",  // query
      "spiffe://cluster.local/ns/a/sa/b#f",    // fragment
      "spiffe://cluster.local/ns//sa/b",       // empty segment
      "spiffe://cluster.local/ns/./sa/b",      // dot segment
      "spiffe://cluster.local/ns/../sa/b",     // dot-dot segment
      "spiffe://cluster.local/ns/a/sa/b/",     // trailing slash
      "spiffe://cluster.local/ns/a%20b",       // percent-encoding
      "spiffe://cluster.local/ns/a b",         // space
      "spiffe://clu$ter.local/ns/a",           // bad trust domain character
  };
  for (const char* uri : bad) EXPECT_FALSE(SpiffeId::Parse(uri).ok()) << uri;
  EXPECT_FALSE(SpiffeId::Parse("spiffe://td/" + std::string(2100, 'a')).ok());
}

TEST(SpiffeId, TrustDomainValidation) {
  EXPECT_TRUE(ValidateTrustDomain("cluster.local").ok());
  EXPECT_TRUE(ValidateTrustDomain("my_td-1.example").ok());
  EXPECT_FALSE(ValidateTrustDomain("").ok());
  EXPECT_FALSE(ValidateTrustDomain("Example.org").ok());
  EXPECT_FALSE(ValidateTrustDomain(std::string(256, 'a')).ok());
}

}  // namespace
}  // namespace meshid
