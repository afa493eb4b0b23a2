#include "pad/model_config.h"

#include <cstdint>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "io/json_file.h"
#include "nlohmann/json.hpp"
#include "pad/status_macros.h"

namespace pad {
namespace {

using Json = nlohmann::json;

absl::Status FieldError(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("config.json: ", field, " ", why));
}

// Far above any released model's (Llama-3.1-405B: hidden 16384, 126 layers; Gemma: vocabulary 262144),
// and low enough that products of them (a KV slot's bytes, a layer's weights) fit in int64.
constexpr int64_t kMaxDimension = int64_t{1} << 22;  // vocabulary, widths, positions
constexpr int64_t kMaxCount = 4096;                  // layers, heads, head_dim

// Reads an integer field in [1, max]; `required` fields must be present, others keep *out when absent or
// null.
absl::Status ReadInt(const Json& json, const char* field, bool required, int64_t max, int64_t* out) {
  if (!json.contains(field) || json[field].is_null()) {
    return required ? FieldError(field, "is missing") : absl::OkStatus();
  }
  const Json& value = json[field];
  if (!value.is_number_integer()) return FieldError(field, "must be an integer");
  if (value.is_number_unsigned() ? value.get<uint64_t>() > static_cast<uint64_t>(max)
                                 : value.get<int64_t>() > max) {
    return FieldError(field, absl::StrCat("must be at most ", max));
  }
  *out = value.get<int64_t>();
  if (*out <= 0) return FieldError(field, "must be positive");
  return absl::OkStatus();
}

absl::Status ReadDouble(const Json& json, const char* field, double* out) {
  if (!json.contains(field) || json[field].is_null()) return absl::OkStatus();
  if (!json[field].is_number()) return FieldError(field, "must be a number");
  *out = json[field].get<double>();
  return absl::OkStatus();
}

absl::Status ReadBool(const Json& json, const char* field, bool* out) {
  if (!json.contains(field) || json[field].is_null()) return absl::OkStatus();
  if (!json[field].is_boolean()) return FieldError(field, "must be true or false");
  *out = json[field].get<bool>();
  return absl::OkStatus();
}

// Llama-3.1's configs say rope_scaling {rope_type: llama3, ...} beside rope_theta; transformers 5 writes
// both into rope_parameters. Either way the same fields.
absl::Status ReadRope(const Json& json, RopeConfig* rope) {
  PAD_RETURN_IF_ERROR(ReadDouble(json, "rope_theta", &rope->theta));
  const char* scaling_field = nullptr;
  for (const char* field : {"rope_parameters", "rope_scaling"}) {
    if (json.contains(field) && !json[field].is_null()) scaling_field = field;
  }
  if (scaling_field == nullptr) return absl::OkStatus();
  const Json& scaling = json[scaling_field];
  if (!scaling.is_object()) return FieldError(scaling_field, "must be an object");
  PAD_RETURN_IF_ERROR(ReadDouble(scaling, "rope_theta", &rope->theta));
  std::string type = "default";
  for (const char* key : {"rope_type", "type"}) {
    if (scaling.contains(key) && scaling[key].is_string()) type = scaling[key].get<std::string>();
  }
  if (type == "default") return absl::OkStatus();
  if (type != "llama3") {
    return FieldError(absl::StrCat(scaling_field, ".rope_type"),
                      absl::StrCat("\"", type, "\" is not supported (default, llama3)"));
  }
  rope->type = type;
  PAD_RETURN_IF_ERROR(ReadDouble(scaling, "factor", &rope->factor));
  PAD_RETURN_IF_ERROR(ReadDouble(scaling, "low_freq_factor", &rope->low_freq_factor));
  PAD_RETURN_IF_ERROR(ReadDouble(scaling, "high_freq_factor", &rope->high_freq_factor));
  PAD_RETURN_IF_ERROR(ReadInt(scaling, "original_max_position_embeddings", /*required=*/true, kMaxDimension,
                              &rope->original_max_position_embeddings));
  if (rope->factor <= 0 || rope->high_freq_factor <= rope->low_freq_factor) {
    return FieldError(scaling_field, "needs factor > 0 and high_freq_factor > low_freq_factor");
  }
  return absl::OkStatus();
}

// eos_token_id is an integer or a list of integers.
absl::Status ReadEos(const Json& json, absl::string_view file, std::vector<int32_t>* eos) {
  if (!json.contains("eos_token_id") || json["eos_token_id"].is_null()) return absl::OkStatus();
  const Json& value = json["eos_token_id"];
  std::vector<int32_t> ids;
  // A token id, or nothing: get<int32_t> of a larger integer would wrap to another token.
  const auto token_id = [](const Json& id) -> std::optional<int32_t> {
    if (!id.is_number_integer()) return std::nullopt;
    if (id.is_number_unsigned() ? id.get<uint64_t>() > kMaxDimension
                                : id.get<int64_t>() < 0 || id.get<int64_t>() > kMaxDimension) {
      return std::nullopt;
    }
    return static_cast<int32_t>(id.get<int64_t>());
  };
  const auto refuse = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": eos_token_id must hold token ids, integers in [0, ", kMaxDimension, "]"));
  };
  if (value.is_number()) {
    const std::optional<int32_t> id = token_id(value);
    if (!id.has_value()) return refuse();
    ids.push_back(*id);
  } else if (value.is_array()) {
    for (const Json& entry : value) {
      const std::optional<int32_t> id = token_id(entry);
      if (!id.has_value()) return refuse();
      ids.push_back(*id);
    }
  } else {
    return absl::InvalidArgumentError(absl::StrCat(file, ": eos_token_id must be an integer or a list"));
  }
  *eos = std::move(ids);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<LlamaConfig> LlamaConfig::FromJson(absl::string_view config_json) {
  Json json = Json::parse(config_json, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return absl::InvalidArgumentError("config.json: not a JSON object");
  }
  std::string architecture;
  if (json.contains("architectures") && json["architectures"].is_array() && !json["architectures"].empty() &&
      json["architectures"][0].is_string()) {
    architecture = json["architectures"][0].get<std::string>();
  }
  if (architecture != "LlamaForCausalLM" && architecture != "MistralForCausalLM") {
    return FieldError(
        "architectures",
        absl::StrCat("\"", architecture, "\" is not supported (LlamaForCausalLM, MistralForCausalLM)"));
  }
  if (json.contains("sliding_window") && !json["sliding_window"].is_null()) {
    return FieldError("sliding_window", "is not supported");
  }
  if (json.contains("hidden_act") && json["hidden_act"] != "silu") {
    return FieldError("hidden_act", "must be \"silu\"");
  }

  LlamaConfig config;
  PAD_RETURN_IF_ERROR(ReadInt(json, "vocab_size", true, kMaxDimension, &config.vocab_size));
  PAD_RETURN_IF_ERROR(ReadInt(json, "hidden_size", true, kMaxDimension, &config.hidden_size));
  PAD_RETURN_IF_ERROR(ReadInt(json, "intermediate_size", true, kMaxDimension, &config.intermediate_size));
  PAD_RETURN_IF_ERROR(ReadInt(json, "num_hidden_layers", true, kMaxCount, &config.num_hidden_layers));
  PAD_RETURN_IF_ERROR(ReadInt(json, "num_attention_heads", true, kMaxCount, &config.num_attention_heads));
  config.num_key_value_heads = config.num_attention_heads;
  PAD_RETURN_IF_ERROR(ReadInt(json, "num_key_value_heads", false, kMaxCount, &config.num_key_value_heads));
  config.head_dim = config.hidden_size / config.num_attention_heads;
  PAD_RETURN_IF_ERROR(ReadInt(json, "head_dim", false, kMaxCount, &config.head_dim));
  if (config.head_dim == 0) {
    return FieldError("num_attention_heads", "must not exceed hidden_size (each head needs a width)");
  }
  PAD_RETURN_IF_ERROR(
      ReadInt(json, "max_position_embeddings", false, kMaxDimension, &config.max_position_embeddings));
  PAD_RETURN_IF_ERROR(ReadDouble(json, "rms_norm_eps", &config.rms_norm_eps));
  PAD_RETURN_IF_ERROR(ReadBool(json, "tie_word_embeddings", &config.tie_word_embeddings));
  PAD_RETURN_IF_ERROR(ReadBool(json, "attention_bias", &config.attention_bias));
  PAD_RETURN_IF_ERROR(ReadBool(json, "mlp_bias", &config.mlp_bias));
  PAD_RETURN_IF_ERROR(ReadRope(json, &config.rope));
  PAD_RETURN_IF_ERROR(ReadEos(json, "config.json", &config.eos_token_ids));

  if (config.num_attention_heads % config.num_key_value_heads != 0) {
    return FieldError("num_key_value_heads", "must divide num_attention_heads");
  }
  if (config.head_dim % 2 != 0) return FieldError("head_dim", "must be even for rotary embeddings");
  return config;
}

absl::StatusOr<LlamaConfig> LlamaConfig::FromModelDir(const std::string& dir) {
  PAD_ASSIGN_OR_RETURN(Json json, ReadJsonFile(dir + "/config.json"));
  auto config = FromJson(json.dump());
  if (!config.ok()) {
    return absl::Status(config.status().code(), absl::StrCat(dir, "/", config.status().message()));
  }
  const std::string generation_path = dir + "/generation_config.json";
  if (FileExists(generation_path)) {
    PAD_ASSIGN_OR_RETURN(Json generation, ReadJsonFile(generation_path));
    PAD_RETURN_IF_ERROR(ReadEos(generation, generation_path, &config->eos_token_ids));
  }
  return config;
}

}  // namespace pad
