// We recognise a template by comparing a canonical form of its Jinja with the canonical forms of the
// templates we know. The canonical form keeps what decides the output and drops what does not:
// whitespace inside tags, quoting style, `a['b']` versus `a.b`, literal text versus `{{ 'text' }}`,
// and 'a' + 'b' versus 'ab'. Whitespace outside tags is handled as transformers' Jinja environment
// does (trim_blocks, lstrip_blocks and the `-` markers), because there it is output.
#include "pad/chat_template.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "pad/field_error.h"
#include "pad/read_file.h"
#include "pad/status_macros.h"
#include "pad/utf8.h"

namespace pad {
namespace {

constexpr std::string_view kPromptPlaceholder = "@@DEFAULT_SYSTEM_PROMPT@@";

// SmolLM2's template; kPromptPlaceholder stands for the default system prompt it inserts.
constexpr std::string_view kChatMlWithDefaultSystem =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\n@@DEFAULT_SYSTEM_PROMPT@@<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

// The ChatML template transformers documents, without a default system prompt.
constexpr std::string_view kChatMl =
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

// Meta-Llama-3-8B-Instruct's template.
constexpr std::string_view kLlama3 =
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ "
    "message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

struct Token {
  bool literal;
  std::string text;  // a literal's value, or the token itself
};

bool IsIdentChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

bool IsIdentifier(const std::string& s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s) {
    if (!IsIdentChar(c)) return false;
  }
  return true;
}

// Splits the code inside one tag into tokens, decoding string literals as Jinja (Python) does.
absl::StatusOr<std::vector<Token>> Lex(std::string_view code) {
  std::vector<Token> tokens;
  size_t i = 0;
  while (i < code.size()) {
    const char c = code[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
    } else if (c == '\'' || c == '"') {
      std::string value;
      size_t j = i + 1;
      for (; j < code.size() && code[j] != c; ++j) {
        if (code[j] != '\\' || j + 1 == code.size()) {
          value.push_back(code[j]);
          continue;
        }
        const char e = code[++j];
        switch (e) {
          case 'n':
            value.push_back('\n');
            break;
          case 't':
            value.push_back('\t');
            break;
          case 'r':
            value.push_back('\r');
            break;
          case '\\':
          case '\'':
          case '"':
            value.push_back(e);
            break;
          default:
            value.push_back('\\');
            value.push_back(e);
        }
      }
      if (j >= code.size()) return absl::InvalidArgumentError("unterminated string literal");
      tokens.push_back({true, std::move(value)});
      i = j + 1;
    } else if (IsIdentChar(c)) {
      size_t j = i;
      while (j < code.size() && IsIdentChar(code[j])) ++j;
      tokens.push_back({false, std::string(code.substr(i, j - i))});
      i = j;
    } else {
      const std::string_view two = code.substr(i, 2);
      const bool pair =
          two == "==" || two == "!=" || two == "<=" || two == ">=" || two == "**" || two == "//";
      tokens.push_back({false, std::string(code.substr(i, pair ? 2 : 1))});
      i += pair ? 2 : 1;
    }
  }
  // x['name'] is x.name.
  for (size_t k = 0; k + 2 < tokens.size(); ++k) {
    if (k > 0 && !tokens[k - 1].literal &&
        (IsIdentifier(tokens[k - 1].text) || tokens[k - 1].text == "]" || tokens[k - 1].text == ")") &&
        tokens[k].text == "[" && !tokens[k].literal && tokens[k + 1].literal &&
        IsIdentifier(tokens[k + 1].text) && tokens[k + 2].text == "]" && !tokens[k + 2].literal) {
      tokens[k] = {false, "."};
      tokens[k + 1].literal = false;
      tokens.erase(tokens.begin() + k + 2);
    }
  }
  // 'a' + 'b' is 'ab' where nothing binds tighter than + to either side.
  auto is = [&tokens](size_t k, std::string_view text) {
    return k < tokens.size() && !tokens[k].literal && tokens[k].text == text;
  };
  for (size_t k = 0; k + 2 < tokens.size();) {
    const bool left_free = k == 0 || is(k - 1, "+") || is(k - 1, "(") || is(k - 1, ",") || is(k - 1, "=");
    const bool right_free = k + 3 == tokens.size() || is(k + 3, "+") || is(k + 3, ")") || is(k + 3, ",");
    if (tokens[k].literal && is(k + 1, "+") && tokens[k + 2].literal && left_free && right_free) {
      tokens[k].text += tokens[k + 2].text;
      tokens.erase(tokens.begin() + k + 1, tokens.begin() + k + 3);
    } else {
      ++k;
    }
  }
  return tokens;
}

void AppendLiteral(std::string_view value, std::string* out) {
  out->push_back('\'');
  for (char c : value) {
    if (c == '\\' || c == '\'') out->push_back('\\');
    out->push_back(c);
  }
  out->push_back('\'');
}

void AppendTokens(const std::vector<Token>& tokens, std::string* out) {
  for (size_t k = 0; k < tokens.size(); ++k) {
    if (k > 0) out->push_back(' ');
    if (tokens[k].literal) {
      AppendLiteral(tokens[k].text, out);
    } else {
      out->append(tokens[k].text);
    }
  }
}

// The canonical form of a Jinja template (see the top of this file).
absl::StatusOr<std::string> Canonicalize(std::string_view jinja) {
  std::string out;
  std::string text;  // literal text pending since the last tag
  bool strip_next = false, trim_newline = false;
  auto flush_text = [&]() {
    if (!text.empty()) {
      out.append("{{ ");
      AppendLiteral(text, &out);
      out.append(" }}");
    }
    text.clear();
  };
  size_t i = 0;
  while (i <= jinja.size()) {
    size_t open = jinja.find('{', i);
    while (open != std::string_view::npos && open + 1 < jinja.size() && jinja[open + 1] != '{' &&
           jinja[open + 1] != '%' && jinja[open + 1] != '#') {
      open = jinja.find('{', open + 1);
    }
    if (open + 1 >= jinja.size()) open = std::string_view::npos;
    std::string_view chunk =
        jinja.substr(i, open == std::string_view::npos ? std::string_view::npos : open - i);
    if (trim_newline && !chunk.empty() && chunk[0] == '\n') chunk.remove_prefix(1);
    if (strip_next) {
      while (!chunk.empty() && std::isspace(static_cast<unsigned char>(chunk[0]))) chunk.remove_prefix(1);
    }
    if (open == std::string_view::npos) {
      text.append(chunk);
      break;
    }

    const char kind = jinja[open + 1];
    const std::string_view close = kind == '{' ? "}}" : kind == '%' ? "%}" : "#}";
    size_t body = open + 2;
    const bool strip_before = body < jinja.size() && jinja[body] == '-';
    const bool keep_before = body < jinja.size() && jinja[body] == '+';
    if (strip_before || keep_before) ++body;
    // Find the end of the tag outside string literals.
    size_t end = body;
    char quote = 0;
    for (; end < jinja.size(); ++end) {
      if (quote != 0) {
        if (jinja[end] == '\\') {
          ++end;
        } else if (jinja[end] == quote) {
          quote = 0;
        }
      } else if (jinja[end] == '\'' || jinja[end] == '"') {
        if (kind != '#') quote = jinja[end];
      } else if (jinja.substr(end, 2) == close) {
        break;
      }
    }
    if (end >= jinja.size()) {
      return absl::InvalidArgumentError(absl::StrCat("unterminated tag at byte ", open));
    }
    size_t code_end = end;
    const bool strip_after = code_end > body && jinja[code_end - 1] == '-';
    const bool keep_after = code_end > body && jinja[code_end - 1] == '+';
    if (strip_after || keep_after) --code_end;

    // Whitespace control applies to the template's own text before the tag, never to output of tags.
    if (strip_before) {
      while (!chunk.empty() && std::isspace(static_cast<unsigned char>(chunk.back()))) chunk.remove_suffix(1);
    } else if (kind != '{' && !keep_before) {
      // lstrip_blocks: spaces and tabs between a line start and a block tag go.
      size_t k = open;
      while (k > i && (jinja[k - 1] == ' ' || jinja[k - 1] == '\t')) --k;
      if (k == 0 || jinja[k - 1] == '\n') chunk.remove_suffix(std::min(open - k, chunk.size()));
    }
    text.append(chunk);
    if (kind != '#') {
      PAD_ASSIGN_OR_RETURN(std::vector<Token> tokens, Lex(jinja.substr(body, code_end - body)));
      if (kind == '{' && tokens.size() == 1 && tokens[0].literal) {
        text.append(tokens[0].text);  // {{ 'x' }} is literal text
      } else {
        flush_text();
        out.append(kind == '{' ? "{{ " : "{% ");
        AppendTokens(tokens, &out);
        out.append(kind == '{' ? " }}" : " %}");
      }
    }
    strip_next = strip_after;
    trim_newline = kind != '{' && !keep_after;  // trim_blocks
    i = end + 2;
  }
  flush_text();
  return out;
}

// Undoes AppendLiteral's escaping of the text between two quotes; nullopt if it is not one literal.
std::optional<std::string> UnescapeLiteral(std::string_view escaped) {
  std::string value;
  for (size_t i = 0; i < escaped.size(); ++i) {
    if (escaped[i] == '\'') return std::nullopt;
    if (escaped[i] == '\\') {
      if (++i == escaped.size()) return std::nullopt;
    }
    value.push_back(escaped[i]);
  }
  return value;
}

// Python's str.strip(), which Jinja's trim filter calls.
std::string_view PythonStrip(std::string_view s) {
  auto is_space = [](std::string_view t, size_t i, size_t* len) {
    const char32_t c = utf8::DecodeAt(t, i, len);
    return utf8::IsWhiteSpace(c) || (c >= 0x1C && c <= 0x1F);
  };
  size_t len;
  while (!s.empty() && is_space(s, 0, &len)) s.remove_prefix(len);
  while (!s.empty()) {
    size_t start = s.size() - 1;
    while (start > 0 && (static_cast<uint8_t>(s[start]) & 0xC0) == 0x80) --start;
    if (!is_space(s, start, &len)) break;
    s.remove_suffix(s.size() - start);
  }
  return s;
}

}  // namespace

absl::StatusOr<ChatTemplate> ChatTemplate::FromTemplate(std::string_view jinja, std::string bos_token) {
  absl::StatusOr<std::string> canonical = Canonicalize(jinja);
  if (!canonical.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("chat template: ", canonical.status().message()));
  }
  for (auto [known, family] : {std::pair{kLlama3, Family::kLlama3}, std::pair{kChatMl, Family::kChatMl}}) {
    PAD_ASSIGN_OR_RETURN(std::string reference, Canonicalize(known));
    if (*canonical == reference) return ChatTemplate(family, std::move(bos_token), "");
  }
  PAD_ASSIGN_OR_RETURN(std::string reference, Canonicalize(kChatMlWithDefaultSystem));
  const size_t hole = reference.find(kPromptPlaceholder);
  const std::string_view before = std::string_view(reference).substr(0, hole);
  const std::string_view after = std::string_view(reference).substr(hole + kPromptPlaceholder.size());
  const std::string_view c = *canonical;
  if (c.size() >= before.size() + after.size() && c.substr(0, before.size()) == before &&
      c.substr(c.size() - after.size()) == after) {
    std::optional<std::string> prompt =
        UnescapeLiteral(c.substr(before.size(), c.size() - before.size() - after.size()));
    // An empty prompt would still insert an empty system turn, which default_system_prompt_ cannot say.
    if (prompt.has_value() && !prompt->empty()) {
      return ChatTemplate(Family::kChatMl, std::move(bos_token), std::move(*prompt));
    }
  }
  return absl::UnimplementedError(
      "chat template: not one we recognise (ChatML or Meta-Llama-3-Instruct); we do not run arbitrary Jinja");
}

absl::StatusOr<ChatTemplate> ChatTemplate::FromModelDir(const std::string& model_dir) {
  const std::string config_path = absl::StrCat(model_dir, "/tokenizer_config.json");
  std::string jinja, bos_token;
  bool have_template = false;
  if (absl::StatusOr<std::string> text = ReadFile(config_path); text.ok()) {
    nlohmann::json config = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
    if (config.is_discarded() || !config.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(config_path, ": not a JSON object"));
    }
    if (auto it = config.find("bos_token"); it != config.end()) {
      // Older configs write special tokens as AddedToken objects.
      if (it->is_string()) {
        bos_token = it->get<std::string>();
      } else if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
        bos_token = (*it)["content"].get<std::string>();
      }
    }
    if (auto it = config.find("chat_template"); it != config.end() && !it->is_null()) {
      if (it->is_string()) {
        jinja = it->get<std::string>();
      } else if (it->is_array()) {
        // Named templates: the one called "default" is what apply_chat_template uses.
        for (const auto& entry : *it) {
          // Each field's type checked before it is read: nlohmann's value() throws on a mistyped "name",
          // and at load, on the engine thread, that ended the process.
          if (entry.is_object() && entry.contains("name") && entry["name"] == "default" &&
              entry.contains("template") && entry["template"].is_string()) {
            jinja = entry["template"].get<std::string>();
            have_template = true;
          }
        }
        if (!have_template) {
          return absl::InvalidArgumentError(
              absl::StrCat(config_path, ": chat_template has no \"default\" entry"));
        }
      } else {
        return absl::InvalidArgumentError(absl::StrCat(config_path, ": chat_template: expected a string"));
      }
      have_template = true;
    }
  }
  if (!have_template) {
    absl::StatusOr<std::string> text = ReadFile(absl::StrCat(model_dir, "/chat_template.jinja"));
    if (!text.ok()) {
      return absl::NotFoundError(
          absl::StrCat(model_dir, ": no chat_template in tokenizer_config.json and no chat_template.jinja"));
    }
    jinja = *std::move(text);
  }
  absl::StatusOr<ChatTemplate> result = FromTemplate(jinja, std::move(bos_token));
  if (!result.ok()) {
    return absl::Status(result.status().code(), absl::StrCat(model_dir, ": ", result.status().message()));
  }
  return result;
}

absl::Status CheckMessageRoles(absl::Span<const ChatMessage> messages) {
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string& role = messages[i].role;
    if (role != "system" && role != "user" && role != "assistant") {
      return FieldError(
          absl::StrCat("messages[", i, "].role"),
          absl::StrCat("unknown role ", QuotedForError(role), " (expected system, user or assistant)"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ChatTemplate::Apply(absl::Span<const ChatMessage> messages,
                                                bool add_generation_prompt) const {
  if (messages.empty()) return FieldError("messages", "must not be empty");
  PAD_RETURN_IF_ERROR(CheckMessageRoles(messages));
  std::string out;
  if (family_ == Family::kChatMl) {
    if (!default_system_prompt_.empty() && messages[0].role != "system") {
      absl::StrAppend(&out, "<|im_start|>system\n", default_system_prompt_, "<|im_end|>\n");
    }
    for (const ChatMessage& m : messages) {
      absl::StrAppend(&out, "<|im_start|>", m.role, "\n", m.content, "<|im_end|>\n");
    }
    if (add_generation_prompt) out.append("<|im_start|>assistant\n");
    return out;
  }
  out = bos_token_;
  for (const ChatMessage& m : messages) {
    absl::StrAppend(&out, "<|start_header_id|>", m.role, "<|end_header_id|>\n\n",
                    utf8::AsAbsl(PythonStrip(m.content)), "<|eot_id|>");
  }
  if (add_generation_prompt) out.append("<|start_header_id|>assistant<|end_header_id|>\n\n");
  return out;
}

}  // namespace pad
