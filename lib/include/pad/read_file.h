// A whole file as bytes: the one way this project reads a small file (configs, templates, certificates).
// Header-only, so programs that do not link libpad (the client) use it too.
#ifndef PAD_READ_FILE_H_
#define PAD_READ_FILE_H_

#include <fstream>
#include <sstream>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace pad {

// NOT_FOUND "<path>: cannot open" when it cannot be opened.
inline absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

}  // namespace pad

#endif  // PAD_READ_FILE_H_
