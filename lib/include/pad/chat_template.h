// The chat formats of the model families we serve, recognised from tokenizer_config.json.
#ifndef PAD_CHAT_TEMPLATE_H_
#define PAD_CHAT_TEMPLATE_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace pad {

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

// INVALID_ARGUMENT "messages[i].role: unknown role ..." for the first role other than system, user or
// assistant.
absl::Status CheckMessageRoles(absl::Span<const ChatMessage> messages);

// Renders messages as a model's Jinja chat template would, for the families we know: ChatML (SmolLM2,
// Qwen-style `<|im_start|>`, including a default system prompt the template inserts) and Llama-3
// (`<|start_header_id|>`). We recognise the template text rather than run Jinja; an unknown template is
// an error at load time, never a silently different prompt. Immutable; safe from any thread.
class ChatTemplate {
 public:
  enum class Family { kChatMl, kLlama3 };

  // Reads `chat_template` (and `bos_token`) from <model_dir>/tokenizer_config.json, or
  // <model_dir>/chat_template.jinja when the config has none.
  static absl::StatusOr<ChatTemplate> FromModelDir(const std::string& model_dir);
  // `bos_token` is the text the template writes for `bos_token` (Llama-3: "<|begin_of_text|>").
  static absl::StatusOr<ChatTemplate> FromTemplate(std::string_view jinja, std::string bos_token);

  // The prompt text; INVALID_ARGUMENT naming `messages[i].role` for an unknown role, or `messages` when
  // empty. With `add_generation_prompt` the text ends where the assistant's answer begins.
  absl::StatusOr<std::string> Apply(absl::Span<const ChatMessage> messages, bool add_generation_prompt) const;

  Family family() const { return family_; }

 private:
  ChatTemplate(Family family, std::string bos_token, std::string default_system_prompt)
      : family_(family),
        bos_token_(std::move(bos_token)),
        default_system_prompt_(std::move(default_system_prompt)) {}

  Family family_;
  std::string bos_token_;
  std::string default_system_prompt_;  // ChatML only; empty when the template inserts none
};

}  // namespace pad

#endif  // PAD_CHAT_TEMPLATE_H_
