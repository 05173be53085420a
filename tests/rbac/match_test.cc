// Matchers and path normalisation: Istio's string patterns, CIDR blocks, and the Envoy-style
// normalisation that keeps path rules from being bypassed.
#include "rbac/match.h"

#include <gtest/gtest.h>

#include "rbac/attributes.h"
#include "rbac/predicate.h"

namespace meshid::rbac {
namespace {

TEST(StringMatcher, Patterns) {
  struct Case {
    const char* pattern;
    const char* value;
    bool match;
  };
  const Case cases[] = {
      {"abc", "abc", true},    {"abc", "abcd", false},  {"abc", "ab", false},     {"abc*", "abcdef", true},
      {"abc*", "abc", true},   {"abc*", "xabc", false}, {"*abc", "xyzabc", true}, {"*abc", "abc", true},
      {"*abc", "abcx", false}, {"*", "anything", true}, {"*", "", true},          {"a*c", "abc", false},
      {"a*c", "a*c", true},    {"**", "*x", true},      {"", "", true},           {"", "x", false},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(StringMatcher::FromPattern(c.pattern).Matches(absl::string_view(c.value)), c.match)
        << c.pattern << " vs " << c.value;
  }
}

TEST(StringMatcher, PresenceAndAny) {
  std::string v = "x";
  EXPECT_FALSE(StringMatcher::FromPattern("*").Matches(nullptr)) << "presence needs a value";
  EXPECT_TRUE(StringMatcher::FromPattern("*").Matches(&v));
  EXPECT_TRUE(StringMatcher::Any().Matches(nullptr)) << "v1alpha1 user \"*\" matches even without identity";
  EXPECT_FALSE(StringMatcher::FromPattern("x").Matches(nullptr));
}

TEST(StringMatcher, IgnoreCase) {
  auto m = StringMatcher::FromPattern("*.Example.com", true);
  EXPECT_TRUE(m.Matches(absl::string_view("API.EXAMPLE.COM")));
  EXPECT_FALSE(m.Matches(absl::string_view("example.org")));
  EXPECT_TRUE(StringMatcher::FromPattern("Host", true).Matches(absl::string_view("hOST")));
}

TEST(Cidr, ParseAndContains) {
  auto c = Cidr::Parse("10.1.0.0/16");
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->Contains(*IpAddress::Parse("10.1.255.1")));
  EXPECT_FALSE(c->Contains(*IpAddress::Parse("10.2.0.1")));
  EXPECT_FALSE(c->Contains(*IpAddress::Parse("::ffff:10.1.0.1"))) << "families never mix";
  auto host = Cidr::Parse("192.168.1.7");
  ASSERT_TRUE(host.ok());
  EXPECT_TRUE(host->Contains(*IpAddress::Parse("192.168.1.7")));
  EXPECT_FALSE(host->Contains(*IpAddress::Parse("192.168.1.8")));
  auto unaligned = Cidr::Parse("10.1.2.3/8");
  ASSERT_TRUE(unaligned.ok()) << "host bits are ignored, as Envoy does";
  EXPECT_TRUE(unaligned->Contains(*IpAddress::Parse("10.200.0.1")));
  auto v6 = Cidr::Parse("2001:db8::/33");
  ASSERT_TRUE(v6.ok());
  EXPECT_TRUE(v6->Contains(*IpAddress::Parse("2001:db8:7fff::1")));
  EXPECT_FALSE(v6->Contains(*IpAddress::Parse("2001:db8:8000::1")));
  auto all = Cidr::Parse("0.0.0.0/0");
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(all->Contains(*IpAddress::Parse("255.255.255.255")));
  for (const char* bad :
       {"", "10.0.0.0/33", "::/129", "10.0.0/8", "x", "10.0.0.0/-1", "10.0.0.0/", "1.2.3.4/8/9", " 10.0.0.1"}) {
    EXPECT_FALSE(Cidr::Parse(bad).ok()) << bad;
  }
}

TEST(NormalizePath, Table) {
  const std::pair<const char*, const char*> cases[] = {
      {"/", "/"},           {"/a/b", "/a/b"},      {"/a/b/", "/a/b/"},   {"/a/./b", "/a/b"},  {"/a/../b", "/b"},
      {"/a/b/..", "/a/"},   {"/a/b/.", "/a/b/"},   {"/..", "/"},         {"/../../a", "/a"},  {"//a//b//", "/a/b/"},
      {"/%2E%2E/a", "/a"},  {"/a/%2e%2e/b", "/b"}, {"/a/%2E/b", "/a/b"}, {"/a/.%2e/b", "/b"}, {"/%61%62c", "/abc"},
      {"/a%2fb", "/a%2Fb"}, {"/a%2Fb", "/a%2Fb"},  {"/a%20b", "/a%20b"}, {"/a%3f", "/a%3F"},  {"/a\\..\\b", "/b"},
      {"/a/...", "/a/..."}, {"/a/.b", "/a/.b"},    {"/a/b..", "/a/b.."}, {"/%zz", "/%zz"},    {"/%4", "/%4"},
      {"/a/%7E", "/a/~"},
  };
  for (const auto& [in, want] : cases) {
    auto got = NormalizePath(in);
    ASSERT_TRUE(got.ok()) << in << ": " << got.status();
    EXPECT_EQ(*got, want) << in;
  }
  for (const char* bad : {"", "a/b", "*", "/a\x01", "/a%00b", "/a\x7f"}) {
    EXPECT_FALSE(NormalizePath(bad).ok()) << bad;
  }
}

TEST(NormalizePath, Idempotent) {
  for (const char* p : {"/a/../b/%2E/c//d", "/x/%2e%2E/y/./z/", "/%41//b\\c"}) {
    auto once = NormalizePath(p);
    ASSERT_TRUE(once.ok());
    auto twice = NormalizePath(*once);
    ASSERT_TRUE(twice.ok());
    EXPECT_EQ(*once, *twice) << p;
  }
}

TEST(SplitRequestTarget, QueryAndFragment) {
  auto t = SplitRequestTarget("/a/b?x=1&y=2#frag");
  EXPECT_EQ(t.path, "/a/b");
  EXPECT_EQ(t.query, "x=1&y=2");
  auto f = SplitRequestTarget("/a#x?y");
  EXPECT_EQ(f.path, "/a");
  EXPECT_EQ(f.query, "");
}

TEST(Principal, Parts) {
  EXPECT_EQ(NamespaceFromPrincipal("cluster.local/ns/foo/sa/bar"), "foo");
  EXPECT_EQ(ServiceAccountFromPrincipal("cluster.local/ns/foo/sa/bar"), "bar");
  EXPECT_EQ(NamespaceFromPrincipal("cluster.local/sa/bar"), "");
  EXPECT_EQ(StripSpiffeScheme("spiffe://td/ns/a/sa/b"), "td/ns/a/sa/b");
  EXPECT_EQ(StripSpiffeScheme("td/ns/a"), "td/ns/a");
}

TEST(Headers, CanonicalizeAndLookup) {
  RequestAttributes a;
  a.headers = {{"X-B", "2"}, {"x-a", "1"}, {"X-A", "3"}};
  a.CanonicalizeHeaders();
  ASSERT_EQ(a.headers.size(), 2u);
  ASSERT_NE(a.Header("x-a"), nullptr);
  EXPECT_EQ(*a.Header("x-a"), "1,3") << "repeated headers join with ',' as Envoy does";
  EXPECT_EQ(*a.Header("x-b"), "2");
  EXPECT_EQ(a.Header("x-c"), nullptr);
}

TEST(ConditionPredicate, KeysAndErrors) {
  EXPECT_TRUE(ConditionPredicate("request.headers[X-Y]", {"a"}, false, false).ok());
  EXPECT_EQ(ConditionPredicate("request.headers[X-Y]", {"a"}, false, false)->key, "x-y");
  EXPECT_FALSE(ConditionPredicate("request.headers[]", {"a"}, false, false).ok());
  EXPECT_FALSE(ConditionPredicate("request.headers[a][b]", {"a"}, false, false).ok());
  EXPECT_FALSE(ConditionPredicate("destination.port", {"65536"}, false, false).ok());
  EXPECT_FALSE(ConditionPredicate("source.ip", {"1.2.3"}, false, false).ok());
  EXPECT_TRUE(ConditionPredicate("destination.labels[app]", {"x"}, false, true).ok());
  EXPECT_FALSE(ConditionPredicate("destination.labels[app]", {"x"}, false, false).ok());
  EXPECT_FALSE(ConditionPredicate("remote.ip", {"1.2.3.4"}, false, true).ok()) << "remote.ip is v1beta1 only";
  EXPECT_TRUE(ConditionPredicate("source.user", {"x"}, false, true).ok());
  EXPECT_FALSE(ConditionPredicate("source.user", {"x"}, false, false).ok());
}

}  // namespace
}  // namespace meshid::rbac
