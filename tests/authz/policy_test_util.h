// Helpers for table tests: build an engine from inline YAML, describe requests fluently, and
// check decisions case by case (each failure names its case).
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "authz/policy_engine.h"
#include "authz/policy_set.h"

namespace meshid::authz::testing {

inline absl::StatusOr<PolicySet> Parse(const std::string& yaml, rbac::Diagnostics* diag_out = nullptr) {
  rbac::Diagnostics diag;
  auto set = ParsePolicySet(yaml, "test.yaml", LoadOptions{}, diag);
  if (diag_out) *diag_out = diag;
  return set;
}

inline std::shared_ptr<const PolicyEngine> MustEngine(const std::string& yaml, PolicyEngineOptions options = {},
                                                      const Clock& clock = SystemClock::Instance()) {
  auto set = Parse(yaml);
  EXPECT_TRUE(set.ok()) << set.status();
  if (!set.ok()) return nullptr;
  auto engine = PolicyEngine::Create(std::move(*set), clock, std::move(options));
  EXPECT_TRUE(engine.ok()) << engine.status();
  return engine.ok() ? *engine : nullptr;
}

// A request under construction. Defaults: HTTP GET / to b.ns.svc.cluster.local:80, plaintext.
struct Req {
  RequestInput in;

  Req& To(const std::string& service, uint32_t port = 80) {
    in.destination_service = service;
    in.destination_port = port;
    return *this;
  }
  Req& Port(uint32_t port) {
    in.destination_port = port;
    return *this;
  }
  Req& Ns(const std::string& ns) {
    in.destination_namespace = ns;
    return *this;
  }
  Req& Label(const std::string& k, const std::string& v) {
    in.destination_labels[k] = v;
    return *this;
  }
  // An mTLS peer with this identity (written without spiffe://).
  Req& From(const std::string& principal) {
    in.source_principal = "spiffe://" + principal;
    in.mtls = true;
    return *this;
  }
  Req& Mtls(bool on) {
    in.mtls = on;
    return *this;
  }
  Req& SrcIp(const std::string& ip) {
    in.source_ip = ip;
    return *this;
  }
  Req& DstIp(const std::string& ip) {
    in.destination_ip = ip;
    return *this;
  }
  Req& DstPrincipal(const std::string& p) {
    in.destination_principal = p;
    return *this;
  }
  Req& Sni(const std::string& s) {
    in.sni = s;
    return *this;
  }
  Req& Host(const std::string& h) {
    in.host = h;
    return *this;
  }
  Req& Header(const std::string& k, const std::string& v) {
    in.headers.emplace_back(k, v);
    return *this;
  }
  Req& Bearer(const std::string& token) { return Header("authorization", "Bearer " + token); }
};

inline Req Http(const std::string& method = "GET", const std::string& path = "/") {
  Req r;
  r.in.protocol = rbac::Protocol::kHttp;
  r.in.method = method;
  r.in.path = path;
  r.in.destination_service = "b.ns.svc.cluster.local";
  r.in.destination_port = 80;
  return r;
}

inline Req Tcp() {
  Req r;
  r.in.protocol = rbac::Protocol::kTcp;
  r.in.destination_service = "b.ns.svc.cluster.local";
  r.in.destination_port = 80;
  return r;
}

struct Want {
  bool allowed = false;
  int status = 403;
  std::string policy = "*";  // "*" = don't care
  std::string rule_prefix;   // "" = don't care
  std::string reason_part;   // "" = don't care
  bool error = false;        // expect an evaluation error (fail closed)
};

inline Want Allow(std::string policy = "*", std::string rule_prefix = "") {
  return Want{true, 200, std::move(policy), std::move(rule_prefix), "", false};
}
inline Want Deny(std::string policy = "*", std::string rule_prefix = "") {
  return Want{false, 403, std::move(policy), std::move(rule_prefix), "", false};
}
inline Want Unauthenticated(std::string reason_part = "") {
  return Want{false, 401, "*", "", std::move(reason_part), false};
}
inline Want Error() { return Want{false, 403, "*", "", "", true}; }
inline Want WithReason(Want w, std::string part) {
  w.reason_part = std::move(part);
  return w;
}

struct Case {
  std::string name;
  Req req;
  Want want;
};

inline void Expect(const PolicyEngine& engine, const Case& c) {
  SCOPED_TRACE(c.name);
  auto d = engine.Check(c.req.in);
  if (c.want.error) {
    EXPECT_FALSE(d.ok()) << c.name << ": expected an evaluation error";
    return;
  }
  ASSERT_TRUE(d.ok()) << c.name << ": " << d.status();
  EXPECT_EQ(d->allowed, c.want.allowed) << c.name << ": " << d->reason;
  EXPECT_EQ(d->status, c.want.status) << c.name << ": " << d->reason;
  if (c.want.policy != "*") {
    EXPECT_EQ(d->policy, c.want.policy) << c.name << ": " << d->reason;
  }
  if (!c.want.rule_prefix.empty()) {
    EXPECT_TRUE(absl::StartsWith(d->rule, c.want.rule_prefix)) << c.name << ": rule " << d->rule;
  }
  if (!c.want.reason_part.empty()) {
    EXPECT_TRUE(absl::StrContains(d->reason, c.want.reason_part)) << c.name << ": reason " << d->reason;
  }
}

inline void RunCases(const std::shared_ptr<const PolicyEngine>& engine, const std::vector<Case>& cases) {
  ASSERT_NE(engine, nullptr);
  for (const auto& c : cases) Expect(*engine, c);
}

}  // namespace meshid::authz::testing
