#include "io/json_file.h"

#include <sys/stat.h>

#include "absl/strings/str_cat.h"
#include "pad/read_file.h"
#include "pad/status_macros.h"

namespace pad {

absl::StatusOr<nlohmann::json> ReadJsonFile(const std::string& path) {
  PAD_ASSIGN_OR_RETURN(const std::string text, ReadFile(path));
  nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(path, ": not valid JSON"));
  if (!json.is_object()) return absl::InvalidArgumentError(absl::StrCat(path, ": must hold a JSON object"));
  return json;
}

absl::StatusOr<bool> OptionalBool(const nlohmann::json& object, const std::string& path, const char* field,
                                  bool fallback) {
  if (!object.contains(field) || object[field].is_null()) return fallback;
  if (!object[field].is_boolean()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", field, " must be true or false"));
  }
  return object[field].get<bool>();
}

absl::StatusOr<std::string> OptionalString(const nlohmann::json& object, const std::string& path,
                                           const char* field, const std::string& fallback) {
  if (!object.contains(field) || object[field].is_null()) return fallback;
  if (!object[field].is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", field, " must be a string"));
  }
  return object[field].get<std::string>();
}

bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace pad
