// Reading small JSON files (configs, indexes) with errors as Status.
#ifndef PAD_IO_JSON_FILE_H_
#define PAD_IO_JSON_FILE_H_

#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace pad {

// NOT_FOUND when the file cannot be opened, INVALID_ARGUMENT naming the file when it is not JSON.
absl::StatusOr<nlohmann::json> ReadJsonFile(const std::string& path);

bool FileExists(const std::string& path);

}  // namespace pad

#endif  // PAD_IO_JSON_FILE_H_
