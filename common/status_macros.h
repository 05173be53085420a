// Propagation helpers for absl::Status / absl::StatusOr (the Abseil release in Debian 12 does
// not ship its own status macros).
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define MESHID_STATUS_CONCAT_INNER_(a, b) a##b
#define MESHID_STATUS_CONCAT_(a, b) MESHID_STATUS_CONCAT_INNER_(a, b)

// Returns from the current function if `expr` yields a non-OK absl::Status.
#define MESHID_RETURN_IF_ERROR(expr)                 \
  do {                                               \
    ::absl::Status meshid_status_ = (expr);          \
    if (!meshid_status_.ok()) return meshid_status_; \
  } while (0)

// Evaluates `rexpr` (a StatusOr); on error returns its status, otherwise moves the value into
// `lhs` (which may be a declaration such as `auto x`).
#define MESHID_ASSIGN_OR_RETURN(lhs, rexpr) \
  MESHID_ASSIGN_OR_RETURN_IMPL_(MESHID_STATUS_CONCAT_(meshid_statusor_, __LINE__), lhs, rexpr)

#define MESHID_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                  \
  if (!statusor.ok()) return std::move(statusor).status();  \
  lhs = std::move(statusor).value()
