// For command-line programs: the value of an absl::StatusOr, or exit(1) with "<program>: <status>".
#ifndef PAD_OR_DIE_H_
#define PAD_OR_DIE_H_

#include <errno.h>  // program_invocation_short_name (glibc)

#include <cstdlib>
#include <iostream>
#include <utility>

#include "absl/status/statusor.h"

namespace pad {

template <typename T>
T OrDie(absl::StatusOr<T> value) {
  if (!value.ok()) {
    std::cerr << program_invocation_short_name << ": " << value.status() << std::endl;
    std::exit(1);
  }
  return std::move(value).value();
}

}  // namespace pad

#endif  // PAD_OR_DIE_H_
