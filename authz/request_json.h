// The machine interface of `meshid authz check`: one JSON request per line in, one JSON
// decision per line out.
//
// Request (unknown keys are errors, so a misspelt field never silently changes a decision):
//   {"protocol":"http"|"tcp",
//    "destination":{"service":"b.ns.svc.cluster.local","namespace":"ns","labels":{},
//                   "ip":"","port":80,"principal":"spiffe://..."},
//    "source":{"principal":"spiffe://... or empty","ip":""},
//    "connection":{"mtls":bool,"sni":""},
//    "request":{"method":"GET","path":"/","host":"","headers":{"name":"value" or ["v1","v2"]}}}
// Decision:
//   {"allowed":bool,"status":200|401|403,"policy":"ns/name","rule":"...","reason":"...",
//    "shadow":{"allowed":bool,"policy":"...","rule":"..."}}   (shadow only when shadow rules apply)
// A request that cannot be parsed or evaluated is denied: allowed false, status 403, and an
// "error" member with the cause.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "authz/policy_engine.h"

namespace meshid::authz {

inline constexpr size_t kMaxRequestLineBytes = 1 << 20;

// InvalidArgument naming the offending field for anything malformed.
absl::StatusOr<RequestInput> ParseRequestJson(absl::string_view line);

std::string DecisionToJson(const Decision& d);
// The fail-closed answer for a request that could not be parsed or evaluated.
std::string ErrorDecisionJson(const absl::Status& status);

}  // namespace meshid::authz
