#include <ATen/ATen.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "pad/tensor_source.h"

namespace pad {
namespace {

std::string LayerName(int64_t layer, const char* rest) {
  return absl::StrCat("model.layers.", layer, ".", rest);
}

struct Projection {
  const char* name;  // under model.layers.N.
  int64_t out, in;
};

std::vector<Projection> Projections(const LlamaConfig& config) {
  const int64_t hidden = config.hidden_size, inter = config.intermediate_size;
  const int64_t q_rows = config.num_attention_heads * config.head_dim;
  const int64_t kv_rows = config.num_key_value_heads * config.head_dim;
  return {{"self_attn.q_proj", q_rows, hidden},  {"self_attn.k_proj", kv_rows, hidden},
          {"self_attn.v_proj", kv_rows, hidden}, {"self_attn.o_proj", hidden, q_rows},
          {"mlp.gate_proj", inter, hidden},      {"mlp.up_proj", inter, hidden},
          {"mlp.down_proj", hidden, inter}};
}

}  // namespace

std::unique_ptr<RandomTensors> RandomTensors::ForLlama(const LlamaConfig& config) {
  std::unique_ptr<RandomTensors> source(new RandomTensors());
  auto& shapes = source->shapes_;
  const int64_t hidden = config.hidden_size;
  shapes["model.embed_tokens.weight"] = {config.vocab_size, hidden};
  shapes["model.norm.weight"] = {hidden};
  if (!config.tie_word_embeddings) shapes["lm_head.weight"] = {config.vocab_size, hidden};
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    shapes[LayerName(i, "input_layernorm.weight")] = {hidden};
    shapes[LayerName(i, "post_attention_layernorm.weight")] = {hidden};
    for (const Projection& p : Projections(config)) {
      shapes[LayerName(i, p.name) + ".weight"] = {p.out, p.in};
      const bool attention = absl::StartsWith(p.name, "self_attn.");
      if (attention ? config.attention_bias : config.mlp_bias)
        shapes[LayerName(i, p.name) + ".bias"] = {p.out};
    }
  }
  return source;
}

std::unique_ptr<RandomTensors> RandomTensors::ForLora(const LlamaConfig& config, int64_t rank) {
  std::unique_ptr<RandomTensors> source(new RandomTensors());
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    for (const Projection& p : Projections(config)) {
      const std::string prefix = absl::StrCat("base_model.model.", LayerName(i, p.name));
      source->shapes_[prefix + ".lora_A.weight"] = {rank, p.in};
      source->shapes_[prefix + ".lora_B.weight"] = {p.out, rank};
    }
  }
  return source;
}

std::unique_ptr<RandomTensors> RandomTensors::ForValueHead(const LlamaConfig& config) {
  std::unique_ptr<RandomTensors> source(new RandomTensors());
  source->shapes_["v_head.summary.weight"] = {config.hidden_size, config.hidden_size};
  source->shapes_["v_head.summary.bias"] = {config.hidden_size};
  return source;
}

std::vector<std::string> RandomTensors::Names() const {
  std::vector<std::string> names;
  for (const auto& [name, shape] : shapes_) names.push_back(name);
  return names;
}

absl::StatusOr<std::vector<int64_t>> RandomTensors::Shape(const std::string& name) const {
  auto it = shapes_.find(name);
  if (it == shapes_.end()) return absl::NotFoundError(absl::StrCat("random weights: no tensor ", name));
  return it->second;
}

absl::StatusOr<at::Tensor> RandomTensors::Load(const std::string& name,
                                               absl::Span<const int64_t> expected_shape,
                                               const at::TensorOptions& options) const {
  auto it = shapes_.find(name);
  if (it == shapes_.end()) return absl::NotFoundError(absl::StrCat("random weights: no tensor ", name));
  const std::vector<int64_t>& shape = it->second;
  if (!std::equal(shape.begin(), shape.end(), expected_shape.begin(), expected_shape.end())) {
    return absl::InvalidArgumentError(absl::StrCat("random weights: tensor ", name, ": shape [",
                                                   absl::StrJoin(shape, ", "), "], expected [",
                                                   absl::StrJoin(expected_shape, ", "), "]"));
  }
  try {
    if (shape.size() > 1) return at::randn(shape, options).mul_(0.02);
    return absl::StrContains(name, "norm") ? at::ones(shape, options) : at::zeros(shape, options);
  } catch (const c10::Error& e) {
    return absl::ResourceExhaustedError(
        absl::StrCat("random weights: tensor ", name, ": ", e.what_without_backtrace()));
  }
}

}  // namespace pad
