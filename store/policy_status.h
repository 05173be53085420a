// Where the policy server puts what agents report about themselves and their proxies (read back
// by `meshid status`).
//
// Thread-safe; blocks until the store answered. Errors: Unavailable when the store cannot be
// reached, InvalidArgument naming the field (ValidatePolicyStatusRow).
#pragma once

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "store/records.h"

namespace meshid {

class PolicyStatusSink {
 public:
  virtual ~PolicyStatusSink() = default;
  // Replaces every status row of `agent_id` by `rows` (each must carry that agent_id), in one
  // transaction.
  virtual absl::Status ReplacePolicyStatus(absl::string_view agent_id, absl::Span<const PolicyStatusRow> rows) = 0;
};

}  // namespace meshid
