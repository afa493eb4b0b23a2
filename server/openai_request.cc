#include "server/openai_request.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "pad/field_error.h"
#include "pad/status_macros.h"
#include "server/field_names.h"

namespace pad::server {
namespace {

using json = nlohmann::json;

absl::Status Invalid(absl::string_view field, absl::string_view why) { return FieldError(field, why); }

// Text for JSON output; strings here are valid UTF-8, but a bad byte must not throw.
std::string Dump(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

// Deeper documents are refused while they are read. nlohmann parses and destroys iteratively, but dumping
// or comparing a value recurses, so a client's 200,000-deep array would overflow a worker's stack; no
// request of OpenAI's API nests deeper than about 6.
constexpr int kMaxJsonDepth = 64;

// A client's value of any type for an error message: its type's name, or a short quote of a scalar.
std::string Described(const json& value) {
  if (value.is_string()) return QuotedForError(value.get_ref<const std::string&>());
  if (value.is_object() || value.is_array()) return absl::StrCat("an ", value.type_name());
  return QuotedForError(Dump(value));
}

// A client's object key as a field name in an error: as it is when it looks like a name, else quoted.
std::string KeyName(absl::string_view key) {
  const bool plain =
      !key.empty() && key.size() <= kMaxQuotedBytes && std::all_of(key.begin(), key.end(), [](char c) {
        return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
      });
  return plain ? std::string(key) : QuotedForError(key);
}

struct TooDeep {};

absl::StatusOr<json> ParseBounded(absl::string_view body) {
  const json::parser_callback_t bounded = [](int depth, json::parse_event_t, json&) {
    if (depth > kMaxJsonDepth) throw TooDeep();
    return true;
  };
  try {
    return json::parse(body.begin(), body.end(), bounded);
  } catch (const TooDeep&) {
    return absl::InvalidArgumentError(
        absl::StrCat("the request body is not valid JSON: it nests deeper than ", kMaxJsonDepth));
  } catch (const json::exception& e) {
    // nlohmann's messages quote what it read ("...; last read: '<token>'", "number overflow parsing
    // '<number>'"), which can be most of the body: keep the words before the quote.
    absl::string_view what = e.what();
    what = what.substr(0, what.find("; last read"));
    const size_t parsing = what.find("parsing '");
    if (parsing != absl::string_view::npos)
      what = what.substr(0, parsing + std::string_view("parsing").size());
    return absl::InvalidArgumentError(absl::StrCat("the request body is not valid JSON: ", what));
  }
}

absl::StatusOr<std::string> GetString(const json& value, absl::string_view field) {
  if (!value.is_string()) return Invalid(field, "must be a string");
  return value.get<std::string>();
}

absl::StatusOr<bool> GetBool(const json& value, absl::string_view field) {
  if (!value.is_boolean()) return Invalid(field, "must be true or false");
  return value.get<bool>();
}

absl::StatusOr<double> GetNumber(const json& value, absl::string_view field) {
  if (!value.is_number()) return Invalid(field, "must be a number");
  return value.get<double>();
}

absl::StatusOr<int64_t> GetInteger(const json& value, absl::string_view field, int64_t min, int64_t max) {
  if (!value.is_number_integer()) return Invalid(field, "must be an integer");
  if (value.is_number_unsigned() && value.get<uint64_t>() > static_cast<uint64_t>(max)) {
    return Invalid(field, absl::StrCat(value.get<uint64_t>(), " is more than ", max));
  }
  const int64_t n = value.get<int64_t>();
  if (n < min || n > max) return Invalid(field, absl::StrCat(n, " is not in [", min, ", ", max, "]"));
  return n;
}

constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();

// One message's content: a string, or a list of text parts (what the SDKs send for multi-part content).
absl::StatusOr<std::string> MessageContent(const json& content, const std::string& field) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) return Invalid(field, "must be a string or a list of text parts");
  std::string text;
  for (size_t j = 0; j < content.size(); ++j) {
    const json& part = content[j];
    const std::string part_field = absl::StrCat(field, "[", j, "]");
    if (!part.is_object() || !part.contains("type"))
      return Invalid(part_field, "must be {\"type\": \"text\", ...}");
    if (part["type"] != "text") {
      return Invalid(part_field + ".type",
                     absl::StrCat(Described(part["type"]), " is not supported; only text is"));
    }
    if (!part.contains("text")) return Invalid(part_field + ".text", "is missing");
    PAD_ASSIGN_OR_RETURN(std::string piece, GetString(part["text"], part_field + ".text"));
    text += piece;
  }
  return text;
}

absl::StatusOr<std::vector<ChatMessage>> Messages(const json& messages) {
  if (!messages.is_array()) return Invalid("messages", "must be a list of messages");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string field = absl::StrCat("messages[", i, "]");
    const json& m = messages[i];
    if (!m.is_object()) return Invalid(field, "must be an object with a role and content");
    ChatMessage message;
    for (const auto& [key, value] : m.items()) {
      if (key == "role") {
        PAD_ASSIGN_OR_RETURN(message.role, GetString(value, field + ".role"));
        if (message.role == "developer") message.role = "system";  // OpenAI's newer name for it
      } else if (key == "content") {
        if (value.is_null())
          return Invalid(field + ".content", "must not be null (tool calls are not supported)");
        PAD_ASSIGN_OR_RETURN(message.content, MessageContent(value, field + ".content"));
      } else if (key == "name") {
        // A participant's name: accepted (SDKs send it) and not rendered, as chat templates have no place for
        // it.
        PAD_RETURN_IF_ERROR(GetString(value, field + ".name").status());
      } else if (!value.is_null()) {
        return Invalid(absl::StrCat(field, ".", KeyName(key)), "is not supported");
      }
    }
    if (!m.contains("role")) return Invalid(field + ".role", "is missing");
    if (!m.contains("content")) return Invalid(field + ".content", "is missing");
    out.push_back(std::move(message));
  }
  return out;
}

// The "pad" object: PAD's parameters, one-to-one with pad.v1's Preference and DecodingParams.
absl::Status PadParameters(const json& pad, AlignmentRequest* request, bool* mode_given) {
  if (!pad.is_object()) return Invalid("pad", "must be an object");
  for (const auto& [key, value] : pad.items()) {
    if (value.is_null()) continue;
    const std::string field = "pad." + KeyName(key);
    if (key == "principles") {
      if (!value.is_array()) return Invalid(field, "must be a list of strings");
      for (size_t i = 0; i < value.size(); ++i) {
        PAD_ASSIGN_OR_RETURN(std::string text, GetString(value[i], absl::StrCat(field, "[", i, "]")));
        request->principles.push_back(std::move(text));
      }
    } else if (key == "weights") {
      if (!value.is_array()) return Invalid(field, "must be a list of numbers");
      for (size_t i = 0; i < value.size(); ++i) {
        PAD_ASSIGN_OR_RETURN(double weight, GetNumber(value[i], absl::StrCat(field, "[", i, "]")));
        request->weights.push_back(weight);
      }
    } else if (key == "composition") {
      PAD_ASSIGN_OR_RETURN(std::string composition, GetString(value, field));
      if (composition == "prompt") {
        request->composition = Composition::kPrompt;
      } else if (composition == "weighted") {
        request->composition = Composition::kWeighted;
      } else {
        return Invalid(field,
                       absl::StrCat(QuotedForError(composition), " is not \"prompt\" or \"weighted\""));
      }
    } else if (key == "mode") {
      PAD_ASSIGN_OR_RETURN(std::string mode, GetString(value, field));
      absl::StatusOr<DecodingMode> parsed = ParseDecodingMode(mode);
      if (!parsed.ok()) return Invalid(field, parsed.status().message());
      request->mode = *parsed;
      *mode_given = true;
    } else if (key == "beta") {
      PAD_ASSIGN_OR_RETURN(request->beta, GetNumber(value, field));
    } else if (key == "top_k") {
      // libpad checks the range against the server's limit.
      PAD_ASSIGN_OR_RETURN(int64_t top_k, GetInteger(value, field, -kInt32Max, kInt32Max));
      request->top_k = static_cast<int>(top_k);
    } else if (key == "reward_model") {
      PAD_ASSIGN_OR_RETURN(request->reward_model, GetString(value, field));
    } else if (key == "policy_sees_guideline") {
      PAD_ASSIGN_OR_RETURN(request->policy_sees_guideline, GetBool(value, field));
    } else if (key == "ignore_eos") {
      PAD_ASSIGN_OR_RETURN(request->ignore_eos, GetBool(value, field));
    } else if (key == "diagnostics") {
      PAD_ASSIGN_OR_RETURN(request->diagnostics, GetBool(value, field));
    } else {
      return Invalid(field, "unrecognized PAD parameter");
    }
  }
  if (!request->weights.empty() && request->weights.size() != request->principles.size()) {
    return Invalid("pad.weights", absl::StrCat(request->weights.size(), " weights for ",
                                               request->principles.size(), " principles"));
  }
  return absl::OkStatus();
}

// OpenAI parameters this server does not implement. Sent with a value other than their default, they are
// an error rather than silently ignored.
absl::Status Unsupported(const std::string& name, const json& value) {
  const std::string key = KeyName(name);
  const auto only = [&](const json& neutral, absl::string_view why) -> absl::Status {
    if (value == neutral) return absl::OkStatus();
    return Invalid(key, why);
  };
  if (key == "n") return only(1, "only 1 is supported");
  if (key == "top_p") return only(1, "only 1 is supported (candidates are the top k: see pad.top_k)");
  if (key == "logprobs") {
    return only(false, "is not supported (pad.diagnostics gives each token's candidates and scores)");
  }
  static const auto* unsupported = new std::set<std::string>{"audio",
                                                             "function_call",
                                                             "functions",
                                                             "logit_bias",
                                                             "modalities",
                                                             "parallel_tool_calls",
                                                             "prediction",
                                                             "reasoning_effort",
                                                             "response_format",
                                                             "service_tier",
                                                             "store",
                                                             "tool_choice",
                                                             "tools",
                                                             "top_logprobs",
                                                             "metadata",
                                                             "web_search_options",
                                                             "verbosity",
                                                             "prompt_cache_key",
                                                             "safety_identifier"};
  if (unsupported->count(key) != 0) return Invalid(key, "is not supported by this server");
  return Invalid(key, "unrecognized request argument");
}

const FieldPaths& OpenAiPaths() {
  static const auto* paths = new FieldPaths{
      {"prompt", {"messages", ""}},
      {"messages", {"messages", ""}},
      {"principles", {"pad.principles", ""}},
      {"weights", {"pad.weights", ""}},
      {"composition", {"pad.composition", ""}},
      {"reward_model", {"pad.reward_model", ""}},
      {"mode", {"pad.mode", ""}},
      {"top_k", {"pad.top_k", ""}},
      {"beta", {"pad.beta", ""}},
      {"temperature", {"temperature", ""}},
      {"presence_penalty", {"presence_penalty", ""}},
      {"frequency_penalty", {"frequency_penalty", ""}},
      {"stop", {"stop", ""}},
  };
  return *paths;
}

}  // namespace

std::string OpenAiErrorBody(absl::string_view message, absl::string_view type, absl::string_view param,
                            absl::string_view code) {
  const auto or_null = [](absl::string_view text) {
    return text.empty() ? json(nullptr) : json(std::string(text));
  };
  return Dump({{"error",
                {{"message", std::string(message)},
                 {"type", std::string(type)},
                 {"param", or_null(param)},
                 {"code", or_null(code)}}}});
}

absl::StatusOr<ChatCompletionRequest> ParseChatCompletionRequest(absl::string_view body,
                                                                 absl::string_view served_model) {
  PAD_ASSIGN_OR_RETURN(json root, ParseBounded(body));
  if (!root.is_object()) return absl::InvalidArgumentError("the request body is not a JSON object");

  ChatCompletionRequest out;
  AlignmentRequest& request = out.request;
  request.mode = DecodingMode::kVanilla;  // without principles, a plain chat
  request.temperature = 1.0;              // OpenAI's default
  bool mode_given = false;
  bool max_tokens = false;
  bool max_completion_tokens = false;
  const json* stream_options = nullptr;
  for (const auto& [key, value] : root.items()) {
    if (key == "model" || key == "messages") continue;  // required: checked below
    if (value.is_null()) continue;                      // null is unset, as in OpenAI's API
    if (key == "stream") {
      PAD_ASSIGN_OR_RETURN(out.stream, GetBool(value, key));
    } else if (key == "stream_options") {
      stream_options = &value;
    } else if (key == "max_tokens" || key == "max_completion_tokens") {
      PAD_ASSIGN_OR_RETURN(int64_t limit, GetInteger(value, key, 1, kInt32Max));
      request.max_new_tokens = static_cast<int>(limit);
      (key == "max_tokens" ? max_tokens : max_completion_tokens) = true;
      out.max_tokens_field = key;
    } else if (key == "temperature") {
      PAD_ASSIGN_OR_RETURN(request.temperature, GetNumber(value, key));
      if (!(request.temperature >= 0 && request.temperature <= 2)) {
        return Invalid(key, absl::StrCat(request.temperature, " is not in [0, 2]"));
      }
    } else if (key == "presence_penalty") {
      PAD_ASSIGN_OR_RETURN(request.presence_penalty, GetNumber(value, key));
    } else if (key == "frequency_penalty") {
      PAD_ASSIGN_OR_RETURN(request.frequency_penalty, GetNumber(value, key));
    } else if (key == "seed") {
      PAD_ASSIGN_OR_RETURN(int64_t seed, GetInteger(value, key, std::numeric_limits<int64_t>::min(),
                                                    std::numeric_limits<int64_t>::max()));
      request.seed = static_cast<uint64_t>(seed);
      out.seeded = true;
    } else if (key == "stop") {
      if (value.is_string()) {
        request.stop.push_back(value.get<std::string>());
      } else if (value.is_array()) {
        for (size_t i = 0; i < value.size(); ++i) {
          PAD_ASSIGN_OR_RETURN(std::string stop, GetString(value[i], absl::StrCat("stop[", i, "]")));
          request.stop.push_back(std::move(stop));
        }
      } else {
        return Invalid(key, "must be a string or a list of strings");
      }
    } else if (key == "user") {
      // An end-user id for OpenAI's abuse monitoring: accepted, and not used.
      PAD_RETURN_IF_ERROR(GetString(value, key).status());
    } else if (key == "pad") {
      PAD_RETURN_IF_ERROR(PadParameters(value, &request, &mode_given));
    } else {
      PAD_RETURN_IF_ERROR(Unsupported(key, value));
    }
  }
  if (max_tokens && max_completion_tokens) {
    return Invalid("max_tokens", "give max_tokens or max_completion_tokens, not both");
  }
  if (stream_options != nullptr) {
    if (!out.stream) return Invalid("stream_options", "is only allowed when stream is true");
    if (!stream_options->is_object()) return Invalid("stream_options", "must be an object");
    for (const auto& [key, value] : stream_options->items()) {
      if (key == "include_usage") {
        if (value.is_null()) continue;
        PAD_ASSIGN_OR_RETURN(out.include_usage, GetBool(value, "stream_options.include_usage"));
      } else if (!value.is_null()) {
        return Invalid("stream_options." + KeyName(key), "is not supported");
      }
    }
  }
  if (!mode_given && !request.principles.empty()) request.mode = DecodingMode::kPad;

  if (!root.contains("model") || root["model"].is_null()) return Invalid("model", "is missing");
  PAD_ASSIGN_OR_RETURN(std::string model, GetString(root["model"], "model"));
  if (model != served_model) {
    return FieldError("model",
                      absl::StrCat(QuotedForError(model), " is not served here; GET /v1/models lists \"",
                                   served_model, "\""),
                      absl::StatusCode::kNotFound);
  }
  if (!root.contains("messages") || root["messages"].is_null()) return Invalid("messages", "is missing");
  PAD_ASSIGN_OR_RETURN(request.messages, Messages(root["messages"]));
  return out;
}

absl::Status ToOpenAiStatus(const absl::Status& status, const ChatCompletionRequest& request) {
  FieldPaths paths = OpenAiPaths();
  paths["max_new_tokens"] = {request.max_tokens_field, ""};
  return RenameField(status, paths);
}

OpenAiError ToOpenAiError(const absl::Status& status) {
  struct Kind {
    absl::StatusCode code;
    int http_status;
    const char* type;
    const char* error_code;  // null: none
  };
  static constexpr Kind kKinds[] = {
      {absl::StatusCode::kInvalidArgument, 400, "invalid_request_error", nullptr},
      {absl::StatusCode::kNotFound, 404, "invalid_request_error", "model_not_found"},
      {absl::StatusCode::kUnauthenticated, 401, "authentication_error", "invalid_api_key"},
      {absl::StatusCode::kResourceExhausted, 429, "rate_limit_error", "queue_full"},
      {absl::StatusCode::kUnavailable, 503, "server_error", "unavailable"},
  };
  Kind kind{status.code(), 500, "server_error", nullptr};
  for (const Kind& k : kKinds) {
    if (k.code == status.code()) kind = k;
  }
  const std::string field = ErrorField(status).value_or("");
  const bool retry_later = kind.http_status == 429 || kind.http_status == 503;
  return {kind.http_status,
          OpenAiErrorBody(status.message(), kind.type, kind.http_status < 500 ? field : "",
                          kind.error_code ? kind.error_code : ""),
          retry_later ? kRetryAfterSeconds : 0};
}

}  // namespace pad::server
