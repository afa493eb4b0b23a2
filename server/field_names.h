// What both front doors' errors share. libpad names a bad field by its own name ("top_k"); each front door
// names it as its clients wrote it ("decoding.top_k" in pad.v1, "pad.top_k" in the OpenAI API). The field
// travels as data (pad/field_error.h).
#ifndef PAD_SERVER_FIELD_NAMES_H_
#define PAD_SERVER_FIELD_NAMES_H_

#include <map>
#include <string>

#include "absl/status/status.h"

namespace pad::server {

// How long a full server asks clients to wait before they retry (gRPC's RetryInfo, HTTP's Retry-After).
inline constexpr int kRetryAfterSeconds = 1;

// Where a libpad field lives on one wire. An indexed field ("principles[2]") keeps its index and gets
// `indexed_suffix` after it when libpad names no member ("preference.principles[2].text").
struct FieldPath {
  std::string path;
  std::string indexed_suffix;
};
using FieldPaths = std::map<std::string, FieldPath>;  // by libpad's field name

// `status` with the field it names renamed by `paths`, in its message and its payload alike; unchanged when
// it names no field, or one `paths` does not know (already the wire's name: "messages[0].role").
absl::Status RenameField(const absl::Status& status, const FieldPaths& paths);

}  // namespace pad::server

#endif  // PAD_SERVER_FIELD_NAMES_H_
