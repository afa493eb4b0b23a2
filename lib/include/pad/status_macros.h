// Early-return helpers for absl::Status and absl::StatusOr, which Debian's abseil (20220623) lacks.
#ifndef PAD_STATUS_MACROS_H_
#define PAD_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define PAD_RETURN_IF_ERROR(expr)              \
  do {                                         \
    ::absl::Status pad_status_ = (expr);       \
    if (!pad_status_.ok()) return pad_status_; \
  } while (0)

#define PAD_STATUS_CONCAT_INNER_(a, b) a##b
#define PAD_STATUS_CONCAT_(a, b) PAD_STATUS_CONCAT_INNER_(a, b)

// Evaluates `rexpr` (an absl::StatusOr<T>); on error returns its status, else moves the value into `lhs`,
// which may be a declaration (`auto x`) or an existing variable.
#define PAD_ASSIGN_OR_RETURN(lhs, rexpr) \
  PAD_ASSIGN_OR_RETURN_IMPL_(PAD_STATUS_CONCAT_(pad_statusor_, __LINE__), lhs, rexpr)

#define PAD_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr)   \
  auto statusor = (rexpr);                                 \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // PAD_STATUS_MACROS_H_
