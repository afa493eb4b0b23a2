// A bad field of a request travels as data: the status's message reads "field: why" for people and logs,
// and a payload holds the field's name, so that each front door names the field as its own wire does
// ("decoding.top_k", "pad.top_k") and hands it to clients as a field (google.rpc.BadRequest, OpenAI's
// `param`) without parsing text back.
#ifndef PAD_FIELD_ERROR_H_
#define PAD_FIELD_ERROR_H_

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "pad/utf8.h"

namespace pad {

// The payload's type URL; its value is the field's path ("principles[2]", "messages[0].role").
inline constexpr absl::string_view kFieldPayloadUrl = "type.pad.dev/pad.ErrorField";

// `code` (INVALID_ARGUMENT unless said) with the message "field: why" and the field as a payload.
inline absl::Status FieldError(absl::string_view field, absl::string_view why,
                               absl::StatusCode code = absl::StatusCode::kInvalidArgument) {
  absl::Status status(code, absl::StrCat(field, ": ", why));
  status.SetPayload(kFieldPayloadUrl, absl::Cord(field));
  return status;
}

// The field a FieldError names; nullopt for any other status.
inline std::optional<std::string> ErrorField(const absl::Status& status) {
  auto field = status.GetPayload(kFieldPayloadUrl);  // absl::optional, which Debian's abseil keeps its own
  if (!field.has_value()) return std::nullopt;
  return std::string(*field);
}

// A FieldError's "why"; the whole message for any other status.
inline absl::string_view ErrorReason(const absl::Status& status) {
  const std::optional<std::string> field = ErrorField(status);
  absl::string_view message = status.message();
  if (field.has_value() && message.size() >= field->size() + 2) message.remove_prefix(field->size() + 2);
  return message;
}

// A client's string as an error message quotes it: JSON-quoted (ill-formed UTF-8 as U+FFFD), at most 64 bytes
// of it (cut at a character boundary) and then its length, so that no error echoes a megabyte back.
inline constexpr size_t kMaxQuotedBytes = 64;
inline std::string QuotedForError(absl::string_view text) {
  size_t end = text.size();
  if (end > kMaxQuotedBytes) {
    end = kMaxQuotedBytes;
    while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  }
  std::string out = "\"";
  for (size_t i = 0; i < end;) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0x80) {
      const utf8::SequenceInfo sequence = utf8::Inspect(std::string_view(text.data(), end), i);
      out += sequence.complete ? std::string(text.substr(i, sequence.consumed))
                               : std::string(utf8::kReplacement);
      i += sequence.consumed;
      continue;
    }
    static constexpr char kHex[] = "0123456789abcdef";
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 15];
        } else {
          out += static_cast<char>(c);
        }
    }
    ++i;
  }
  out += '"';
  if (end < text.size()) absl::StrAppend(&out, "... (", text.size(), " bytes)");
  return out;
}

}  // namespace pad

#endif  // PAD_FIELD_ERROR_H_
