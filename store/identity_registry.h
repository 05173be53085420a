// The identity registry and deny list: which identities the CA may issue for (with
// --require-registration, only registered ones), on which terms, and which it must refuse.
//
// Every method is thread-safe and blocks until the store answered. Errors: Unavailable when the
// store cannot be reached, InvalidArgument naming the field (ValidateRegistryEntry), NotFound /
// AlreadyExists as each method says. Every change is one transaction that also moves the
// registry generation (IdentityStatus::registry_generation), nothing else moves it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "store/records.h"

namespace meshid {

class IdentityRegistry {
 public:
  virtual ~IdentityRegistry() = default;

  // AlreadyExists if an entry of the same (spiffe_id, parent_id) is present.
  virtual absl::Status CreateEntry(const RegistryEntry& entry) = 0;
  // Every entry, by (spiffe_id, parent_id); with `parent_id` set, only that parent's ("": the
  // direct entries).
  virtual absl::StatusOr<std::vector<RegistryEntry>> ListEntries(const std::optional<std::string>& parent_id) = 0;
  // NotFound if absent. parent_id "" names the direct entry.
  virtual absl::Status DeleteEntry(absl::string_view spiffe_id, absl::string_view parent_id) = 0;
  // The registry generation now (one small read): pollers re-list when it moved.
  virtual absl::StatusOr<int64_t> GetRegistryGeneration() = 0;

  virtual absl::Status Block(absl::string_view spiffe_id, absl::string_view reason, absl::Time at) = 0;
  virtual absl::Status Unblock(absl::string_view spiffe_id) = 0;  // NotFound if not blocked
  virtual absl::StatusOr<std::vector<BlockedIdentity>> ListBlocked() = 0;

  // The registry entries of one identity (its direct entry and those with a parent), its block
  // and the registry generation, read in one query.
  virtual absl::StatusOr<IdentityStatus> GetIdentityStatus(absl::string_view spiffe_id) = 0;
};

}  // namespace meshid
