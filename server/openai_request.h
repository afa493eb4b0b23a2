// OpenAI's Chat Completions request and error formats, as the HTTP API (server/openai_api.h) reads and
// writes them: no engine and no HTTP here, so the parser is fuzzed on its own (tests/fuzz).
#ifndef PAD_SERVER_OPENAI_REQUEST_H_
#define PAD_SERVER_OPENAI_REQUEST_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "pad/alignment_request.h"

namespace pad::server {

// A checked POST /v1/chat/completions body.
struct ChatCompletionRequest {
  AlignmentRequest request;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage: a last chunk with the token counts
  // Which field the client limited the answer with, to name it in errors: "max_tokens" or
  // "max_completion_tokens".
  std::string max_tokens_field = "max_tokens";
  bool seeded = false;  // `seed` was given; otherwise the server draws one
};

// Parses and checks a request body. INVALID_ARGUMENT names the field as the client wrote it ("pad.top_k",
// "messages[1].content", "n"); NOT_FOUND when `model` is not `served_model`. Unsupported OpenAI features
// (tools, logprobs, n > 1, top_p < 1, penalties) and unknown fields are errors, never ignored. libpad's
// own checks run at submission; their fields are renamed by ToOpenAiStatus.
absl::StatusOr<ChatCompletionRequest> ParseChatCompletionRequest(absl::string_view body,
                                                                 absl::string_view served_model);

// A libpad status with libpad's field renamed to the OpenAI request's ("top_k: ..." becomes
// "pad.top_k: ...").
absl::Status ToOpenAiStatus(const absl::Status& status, const ChatCompletionRequest& request);

// An error as OpenAI's clients read it: the HTTP status and {"error": {"message", "type", "param",
// "code"}}. `param` is the field the status names (pad/field_error.h), if any.
struct OpenAiError {
  int http_status = 500;
  std::string body;
  int retry_after_seconds = 0;  // a Retry-After header's value on 429 and 503; 0: none
};
OpenAiError ToOpenAiError(const absl::Status& status);

// {"error": {"message", "type", "param", "code"}}; an empty `param` or `code` is null.
std::string OpenAiErrorBody(absl::string_view message, absl::string_view type, absl::string_view param,
                            absl::string_view code);

}  // namespace pad::server

#endif  // PAD_SERVER_OPENAI_REQUEST_H_
