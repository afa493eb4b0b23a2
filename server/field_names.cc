#include "server/field_names.h"

#include "absl/strings/str_cat.h"

namespace pad::server {

std::string RenameField(absl::string_view message, const FieldPaths& paths) {
  const size_t colon = message.find(": ");
  if (colon == absl::string_view::npos) return std::string(message);
  const absl::string_view field = message.substr(0, colon);
  const size_t bracket = field.find('[');
  auto it = paths.find(std::string(field.substr(0, bracket)));
  if (it == paths.end()) return std::string(message);  // already the wire's name (messages[0].role)
  std::string path = it->second.path;
  if (bracket != absl::string_view::npos) {
    const absl::string_view index = field.substr(bracket);  // "[2]" or "[2].role"
    const size_t close = index.find(']');
    absl::StrAppend(
        &path, index.substr(0, close + 1),
        close + 1 < index.size() ? index.substr(close + 1) : absl::string_view(it->second.indexed_suffix));
  }
  return absl::StrCat(path, message.substr(colon));
}

std::string FieldOf(absl::string_view message) {
  const size_t colon = message.find(": ");
  if (colon == absl::string_view::npos) return "";
  const absl::string_view field = message.substr(0, colon);
  // A field name has no spaces; "the models failed to load: ..." names none.
  if (field.find(' ') != absl::string_view::npos) return "";
  return std::string(field);
}

}  // namespace pad::server
