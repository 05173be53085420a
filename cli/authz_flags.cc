#include "cli/authz_flags.h"

#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "authz/ext_authz_client.h"

namespace meshid::cli {

absl::StatusOr<authz::PolicySet> LoadPolicies(const PolicyFlags& flags) {
  rbac::Diagnostics diag;
  auto set = authz::LoadPolicySet(flags.config, flags.Load(), diag);
  for (const auto& d : diag.items()) std::cerr << d.ToString() << "\n";
  if (!set.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("the policy configuration has ", diag.error_count(),
                                                   diag.error_count() == 1 ? " error" : " errors"));
  }
  return set;
}

namespace {
class FixedClock final : public Clock {
 public:
  explicit FixedClock(absl::Time t) : t_(t) {}
  absl::Time Now() const override { return t_; }

 private:
  absl::Time t_;
};

class WallClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
};
}  // namespace

absl::StatusOr<std::unique_ptr<Clock>> ClockFor(const std::string& now) {
  if (now.empty()) return std::unique_ptr<Clock>(new WallClock());
  int64_t secs = 0;
  if (absl::SimpleAtoi(now, &secs)) return std::unique_ptr<Clock>(new FixedClock(absl::FromUnixSeconds(secs)));
  absl::Time t;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, now, &t, &err)) {
    return absl::InvalidArgumentError(absl::StrCat("--now \"", now, "\" is neither RFC 3339 nor Unix seconds"));
  }
  return std::unique_ptr<Clock>(new FixedClock(t));
}

absl::StatusOr<std::shared_ptr<const rbac::CustomAuthorizer>> CustomProviders(const PolicyFlags& flags) {
  if (flags.ext_authz_providers.empty()) return std::shared_ptr<const rbac::CustomAuthorizer>();
  std::map<std::string, std::string> providers;
  for (const auto& p : flags.ext_authz_providers) {
    std::pair<std::string, std::string> kv = absl::StrSplit(p, absl::MaxSplits('=', 1));
    if (kv.first.empty() || kv.second.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("--ext-authz-provider \"", p, "\" is not NAME=TARGET"));
    }
    providers[kv.first] = kv.second;
  }
  auto provider = authz::GrpcExtAuthzProvider::Create(providers);
  if (!provider.ok()) return provider.status();
  return std::shared_ptr<const rbac::CustomAuthorizer>(*provider);
}

absl::StatusOr<std::shared_ptr<const authz::PolicyEngine>> BuildEngine(authz::PolicySet set, const PolicyFlags& flags,
                                                                       const Clock& clock) {
  authz::PolicyEngineOptions options;
  auto custom = CustomProviders(flags);
  if (!custom.ok()) return custom.status();
  options.custom = *custom;
  options.root_namespace = flags.root_namespace;
  options.trust_domain = flags.trust_domain;
  auto engine = authz::PolicyEngine::Create(std::move(set), clock, options);
  if (!engine.ok()) return engine.status();
  for (const auto& w : (*engine)->warnings()) std::cerr << "warning: " << w << "\n";
  return engine;
}

}  // namespace meshid::cli
