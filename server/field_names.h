// libpad names a bad field by its own name ("top_k: ..."); each front door names it as its clients wrote
// it ("decoding.top_k" in pad.v1, "pad.top_k" in the OpenAI API).
#ifndef PAD_SERVER_FIELD_NAMES_H_
#define PAD_SERVER_FIELD_NAMES_H_

#include <map>
#include <string>

#include "absl/strings/string_view.h"

namespace pad::server {

// Where a libpad field lives on one wire. An indexed field ("principles[2]") keeps its index and gets
// `indexed_suffix` after it when the message names no member ("preference.principles[2].text").
struct FieldPath {
  std::string path;
  std::string indexed_suffix;
};
using FieldPaths = std::map<std::string, FieldPath>;  // by libpad's field name

// `message` ("field: why") with its field renamed by `paths`; unchanged when it names no field in them.
std::string RenameField(absl::string_view message, const FieldPaths& paths);

// The text before the first ": ", the field `RenameField` put there ("" when there is none).
std::string FieldOf(absl::string_view message);

}  // namespace pad::server

#endif  // PAD_SERVER_FIELD_NAMES_H_
