// Reading small JSON files (configs, indexes) with errors as Status.
#ifndef PAD_IO_JSON_FILE_H_
#define PAD_IO_JSON_FILE_H_

#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace pad {

// A file holding one JSON object (every config and index we read is one). NOT_FOUND when the file cannot be
// opened, INVALID_ARGUMENT naming the file when it is not JSON or not an object.
absl::StatusOr<nlohmann::json> ReadJsonFile(const std::string& path);

// An optional field of `object` (read from `path`): `fallback` when absent or null, INVALID_ARGUMENT
// "PATH: FIELD must be ..." when of another type. nlohmann's value() would throw instead.
absl::StatusOr<bool> OptionalBool(const nlohmann::json& object, const std::string& path, const char* field,
                                  bool fallback);
absl::StatusOr<std::string> OptionalString(const nlohmann::json& object, const std::string& path,
                                           const char* field, const std::string& fallback);

bool FileExists(const std::string& path);

}  // namespace pad

#endif  // PAD_IO_JSON_FILE_H_
