// A POST /v1/chat/completions body, as any HTTP client can send it: parsed into libpad's request or refused
// as INVALID_ARGUMENT / NOT_FOUND naming the field, with the error rendered as OpenAI's JSON; never a crash
// or an exception (nlohmann throws on mistyped access), and never a message that echoes more than a short
// prefix of the client's values (whose body may be megabytes).
#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/match.h"
#include "pad/field_error.h"
#include "server/openai_request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto request = pad::server::ParseChatCompletionRequest(
      absl::string_view(reinterpret_cast<const char*>(data), size), "SmolLM2-135M-Instruct");
  if (request.ok()) {
    (void)pad::server::ToOpenAiStatus(pad::FieldError("top_k", "0 is not in [1, 1024]"), *request);
    return 0;
  }
  const absl::StatusCode code = request.status().code();
  if (code != absl::StatusCode::kInvalidArgument && code != absl::StatusCode::kNotFound) __builtin_trap();
  if (pad::server::ToOpenAiError(request.status()).body.empty()) __builtin_trap();
  if (request.status().message().size() > 1024) __builtin_trap();
  // A field error's field is data, and its message begins with it.
  const std::optional<std::string> field = pad::ErrorField(request.status());
  if (field.has_value() && !absl::StartsWith(request.status().message(), *field + ": ")) __builtin_trap();
  return 0;
}
