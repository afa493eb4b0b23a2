#include "pad/chat_template.h"

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "pad/field_error.h"

namespace pad {
namespace {

// SmolLM2-135M-Instruct's template, as its tokenizer_config.json has it.
constexpr char kSmolLm2[] =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
    "'<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

// Meta-Llama-3-8B-Instruct's.
constexpr char kLlama3[] =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% "
    "endif %}";

// Expected prompts are what transformers' apply_chat_template(tokenize=False) renders.
TEST(ChatTemplate, ChatMlInsertsDefaultSystemPrompt) {
  absl::StatusOr<ChatTemplate> chat = ChatTemplate::FromTemplate(kSmolLm2, "<|im_start|>");
  ASSERT_TRUE(chat.ok()) << chat.status();
  EXPECT_EQ(chat->family(), ChatTemplate::Family::kChatMl);
  const std::vector<ChatMessage> messages = {{"user", "Hi"}, {"assistant", "Hello!"}, {"user", " Bye "}};
  absl::StatusOr<std::string> prompt = chat->Apply(messages, true);
  ASSERT_TRUE(prompt.ok()) << prompt.status();
  EXPECT_EQ(
      *prompt,
      "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
      "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
      "<|im_start|>user\n Bye <|im_end|>\n<|im_start|>assistant\n");
  prompt = chat->Apply({{"system", "Be brief."}, {"user", "Hi"}}, false);
  ASSERT_TRUE(prompt.ok()) << prompt.status();
  EXPECT_EQ(*prompt, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
}

TEST(ChatTemplate, ChatMlWithoutDefaultAndWithOtherSpelling) {
  // Same meaning as the plain ChatML template, written with different whitespace, quotes and access.
  absl::StatusOr<ChatTemplate> chat = ChatTemplate::FromTemplate(
      "{%- for message in messages -%}\n  {{- \"<|im_start|>\" + message.role + \"\\n\" + message.content + "
      "\"<|im_end|>\\n\" -}}\n{%- endfor -%}\n{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' "
      "-}}"
      "{%- endif -%}",
      "");
  ASSERT_TRUE(chat.ok()) << chat.status();
  absl::StatusOr<std::string> prompt = chat->Apply({{"user", "Hi"}}, true);
  ASSERT_TRUE(prompt.ok()) << prompt.status();
  EXPECT_EQ(*prompt, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplate, Llama3TrimsContentAndStartsWithBos) {
  absl::StatusOr<ChatTemplate> chat = ChatTemplate::FromTemplate(kLlama3, "<|begin_of_text|>");
  ASSERT_TRUE(chat.ok()) << chat.status();
  EXPECT_EQ(chat->family(), ChatTemplate::Family::kLlama3);
  absl::StatusOr<std::string> prompt = chat->Apply(
      {{"system", "\n Be brief.\t"}, {"user", "Hi\u3000\u0085"}, {"assistant", "\u200BHello"}}, true);
  ASSERT_TRUE(prompt.ok()) << prompt.status();
  // Python's str.strip() removes U+3000 and U+0085 but not U+200B.
  EXPECT_EQ(*prompt,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n\u200BHello<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplate, UnknownTemplateIsAnErrorAtLoad) {
  const absl::Status expected = absl::UnimplementedError(
      "chat template: not one we recognise (ChatML or Meta-Llama-3-Instruct); we do not run arbitrary Jinja");
  EXPECT_EQ(ChatTemplate::FromTemplate("{{ messages }}", "").status(), expected);
  // Literal text outside the tags is output, so it makes a different template.
  EXPECT_EQ(ChatTemplate::FromTemplate(std::string(kSmolLm2) + "\nDone.", "").status(), expected);
  EXPECT_EQ(ChatTemplate::FromTemplate("{{ 'unterminated }}", "").status(),
            absl::InvalidArgumentError("chat template: unterminated tag at byte 0"));
}

TEST(ChatTemplate, BadRoleAndEmptyMessages) {
  absl::StatusOr<ChatTemplate> chat = ChatTemplate::FromTemplate(kLlama3, "<|begin_of_text|>");
  ASSERT_TRUE(chat.ok()) << chat.status();
  // The field is data (a payload) as well as the message's first words.
  const absl::Status bad_role = chat->Apply({{"user", "Hi"}, {"tool", "42"}}, false).status();
  EXPECT_EQ(bad_role,
            FieldError("messages[1].role", "unknown role \"tool\" (expected system, user or assistant)"));
  EXPECT_EQ(ErrorField(bad_role), "messages[1].role");
  EXPECT_EQ(ErrorReason(bad_role), "unknown role \"tool\" (expected system, user or assistant)");
  EXPECT_EQ(chat->Apply({}, true).status(), FieldError("messages", "must not be empty"));
  // A client's megabyte role is quoted short, escaped, cut at a character boundary.
  const std::string huge = "\"\n" + std::string(61, 'x') + "\xC3\xA9" + std::string(1 << 20, 'y');
  EXPECT_EQ(ErrorReason(chat->Apply({{huge, "Hi"}}, false).status()),
            "unknown role \"\\\"\\n" + std::string(61, 'x') +
                "\"... (1048641 bytes) (expected system, user or "
                "assistant)");
  EXPECT_EQ(QuotedForError("a\x01\xFF\xC3\xA9"), "\"a\\u0001\xEF\xBF\xBD\xC3\xA9\"");
}

// A named template whose "name" is not a string is skipped, not thrown on (that ended the server at load).
TEST(ChatTemplate, MistypedTemplateNameIsAnError) {
  const std::string dir = ::testing::TempDir() + "/mistyped_template_name";
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/tokenizer_config.json")
      << R"({"chat_template": [{"name": 5, "template": "x"}, {"name": ["default"], "template": "y"}]})";
  EXPECT_EQ(
      ChatTemplate::FromModelDir(dir).status(),
      absl::InvalidArgumentError(dir + "/tokenizer_config.json: chat_template has no \"default\" entry"));
}

TEST(ChatTemplate, FromModelDir) {
  EXPECT_EQ(ChatTemplate::FromModelDir("/nonexistent").status(),
            absl::NotFoundError(
                "/nonexistent: no chat_template in tokenizer_config.json and no chat_template.jinja"));
  const std::string dir = "models/SmolLM2-135M-Instruct";
  if (!std::ifstream(dir + "/tokenizer_config.json")) GTEST_SKIP() << dir << " missing";
  absl::StatusOr<ChatTemplate> chat = ChatTemplate::FromModelDir(dir);
  ASSERT_TRUE(chat.ok()) << chat.status();
  EXPECT_EQ(chat->family(), ChatTemplate::Family::kChatMl);
}

}  // namespace
}  // namespace pad
