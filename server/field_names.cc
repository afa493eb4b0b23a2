#include "server/field_names.h"

#include <optional>

#include "absl/strings/str_cat.h"
#include "pad/field_error.h"

namespace pad::server {

absl::Status RenameField(const absl::Status& status, const FieldPaths& paths) {
  const std::optional<std::string> field = ErrorField(status);
  if (!field.has_value()) return status;
  const size_t bracket = field->find('[');
  auto it = paths.find(field->substr(0, bracket));
  if (it == paths.end()) return status;
  std::string path = it->second.path;
  if (bracket != std::string::npos) {
    const absl::string_view index = absl::string_view(*field).substr(bracket);  // "[2]" or "[2].role"
    const size_t close = index.find(']');
    absl::StrAppend(
        &path, index.substr(0, close + 1),
        close + 1 < index.size() ? index.substr(close + 1) : absl::string_view(it->second.indexed_suffix));
  }
  return FieldError(path, ErrorReason(status), status.code());
}

}  // namespace pad::server
