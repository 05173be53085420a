// Versioned policy as `meshid apply` writes it and the policy server reads it: every version is
// the whole policy set.
//
// Every method is thread-safe and blocks until the store answered. Errors: Unavailable when the
// store cannot be reached, InvalidArgument naming the field (ValidatePolicyDocument), as each
// method says otherwise. Nothing is half-written.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "store/records.h"

namespace meshid {

class PolicyRepository {
 public:
  virtual ~PolicyRepository() = default;

  // The newest version number, 0 when none was ever committed. One indexed read: servers poll it.
  virtual absl::StatusOr<int64_t> PolicyHeadVersion() = 0;
  // Version `version` with all its documents; NotFound if there is no such version.
  virtual absl::StatusOr<PolicyVersion> GetPolicyVersion(int64_t version) = 0;
  // Up to `limit` versions, newest first (0: all).
  virtual absl::StatusOr<std::vector<PolicyVersionInfo>> ListPolicyVersions(size_t limit) = 0;
  // Commits `documents` as the complete policy set of version base_version + 1 (info.version is
  // ignored and the new number returned): objects absent from `documents` are deleted in the
  // new version, objects whose yaml changed get a new row, unchanged ones are kept. Aborted when
  // the newest version is no longer `base_version` (another apply committed first: re-read,
  // re-validate, retry); InvalidArgument naming the field for a document with an empty or
  // invalid kind/name/yaml, or an object listed twice. Nothing is written on any error.
  virtual absl::StatusOr<int64_t> CommitPolicyVersion(int64_t base_version, const PolicyVersionInfo& info,
                                                      absl::Span<const StoredPolicyDocument> documents) = 0;
};

}  // namespace meshid
