// Policy YAML comes from users and from the policy stream: fuzz loading, validation,
// compilation and evaluation of whatever loads.
#include <cstddef>
#include <cstdint>
#include <string>

#include "authz/policy_engine.h"
#include "authz/policy_set.h"

namespace {
class NoNetwork : public meshid::authz::JwksFetcher {
 public:
  absl::StatusOr<std::string> Fetch(const std::string&) const override {
    return absl::UnavailableError("fuzzing: no network");
  }
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 64 * 1024) return 0;
  std::string text(reinterpret_cast<const char*>(data), size);
  meshid::rbac::Diagnostics diag;
  auto set = meshid::authz::ParsePolicySet(text, "fuzz.yaml", {}, diag);
  for (const auto& d : diag.items()) (void)d.ToString();
  if (!set.ok()) return 0;
  meshid::authz::PolicyEngineOptions options;
  options.jwks_fetcher = std::make_shared<NoNetwork>();
  auto engine = meshid::authz::PolicyEngine::Create(std::move(*set), meshid::SystemClock::Instance(), options);
  if (!engine.ok()) return 0;
  meshid::authz::RequestInput in;
  in.destination_service = "b.ns.svc.cluster.local";
  in.destination_port = 80;
  in.destination_labels = {{"app", "b"}};
  in.method = "GET";
  in.path = "/a/../b?access_token=x";
  in.headers = {{"authorization", "Bearer a.b.c"}};
  (void)(*engine)->Check(in);
  in.source_principal = "spiffe://cluster.local/ns/a/sa/a";
  (void)(*engine)->Check(in);
  in.protocol = meshid::rbac::Protocol::kTcp;
  in.method.clear();
  in.path.clear();
  in.headers.clear();
  (void)(*engine)->Check(in);
  return 0;
}
