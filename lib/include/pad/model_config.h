// The architecture hyper-parameters of a causal LM, read from a Hugging Face config.json.
#ifndef PAD_MODEL_CONFIG_H_
#define PAD_MODEL_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pad {

// Rotary embedding frequencies: "default" (plain theta) or "llama3" (Llama-3.1's frequency-dependent
// scaling). Other rope types are rejected at load.
struct RopeConfig {
  std::string type = "default";
  double theta = 10000.0;
  // llama3 only.
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

// LlamaForCausalLM (Llama-2, Llama-3/3.1, SmolLM2) and MistralForCausalLM without a sliding window.
struct LlamaConfig {
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;  // hidden_size / num_attention_heads unless config.json says otherwise
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  RopeConfig rope;
  bool tie_word_embeddings = false;
  bool attention_bias = false;
  bool mlp_bias = false;
  // generation_config.json's eos_token_id (else config.json's): generation stops at any of them.
  std::vector<int32_t> eos_token_ids;

  // Parses config.json text; errors name the field.
  static absl::StatusOr<LlamaConfig> FromJson(absl::string_view config_json);
  // Reads <dir>/config.json and, when present, <dir>/generation_config.json.
  static absl::StatusOr<LlamaConfig> FromModelDir(const std::string& dir);
};

}  // namespace pad

#endif  // PAD_MODEL_CONFIG_H_
