#include "pad/lora.h"

#include <ATen/ATen.h>

#include <cmath>
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "io/json_file.h"
#include "pad/safetensors.h"
#include "pad/status_macros.h"

namespace pad {
namespace {

using Json = nlohmann::json;

constexpr const char* kModules[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                    "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                    "mlp.down_proj"};

std::string ModuleKey(int64_t layer, const char* module) {
  return absl::StrCat("model.layers.", layer, ".", module);
}

// peft's rule: a target names a module by its full key or by a dotted suffix of it.
bool Targets(const std::string& target, const std::string& key) {
  return key == target || absl::EndsWith(key, absl::StrCat(".", target));
}

absl::Status ConfigError(const std::string& path, absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", field, " ", why));
}

// Checks the adapter_config.json fields we honour or refuse and returns the scale. Which projections are
// adapted is read from the weights file; the targets named here must each name one of them.
absl::Status ReadConfig(const std::string& path, const LlamaConfig& config, double* scale) {
  std::vector<std::string> targets;
  PAD_ASSIGN_OR_RETURN(Json json, ReadJsonFile(path));
  PAD_ASSIGN_OR_RETURN(const std::string peft_type, OptionalString(json, path, "peft_type", ""));
  if (peft_type != "LORA") return ConfigError(path, "peft_type", "must be \"LORA\"");
  if (!json.contains("r") || !json["r"].is_number_integer() || json["r"].get<int64_t>() < 1) {
    return ConfigError(path, "r", "must be a positive integer");
  }
  if (!json.contains("lora_alpha") || !json["lora_alpha"].is_number()) {
    return ConfigError(path, "lora_alpha", "must be a number");
  }
  const double r = json["r"].get<double>(), alpha = json["lora_alpha"].get<double>();
  PAD_ASSIGN_OR_RETURN(const bool rslora, OptionalBool(json, path, "use_rslora", false));
  *scale = rslora ? alpha / std::sqrt(r) : alpha / r;
  for (const char* field : {"use_dora", "lora_bias", "fan_in_fan_out"}) {
    PAD_ASSIGN_OR_RETURN(const bool on, OptionalBool(json, path, field, false));
    if (on) return ConfigError(path, field, "is not supported");
  }
  PAD_ASSIGN_OR_RETURN(const std::string bias, OptionalString(json, path, "bias", "none"));
  if (bias != "none") return ConfigError(path, "bias", "must be \"none\"");
  for (const char* field : {"rank_pattern", "alpha_pattern"}) {
    if (json.contains(field) && !json[field].is_null() && !json[field].empty()) {
      return ConfigError(path, field, "is not supported (one r and lora_alpha for every module)");
    }
  }
  if (json.contains("modules_to_save") && !json["modules_to_save"].is_null() &&
      !json["modules_to_save"].empty()) {
    return ConfigError(path, "modules_to_save", "is not supported");
  }
  const Json target_modules = json.contains("target_modules") ? json["target_modules"] : Json();
  std::vector<std::string> all_keys;
  for (int64_t layer = 0; layer < config.num_hidden_layers; ++layer) {
    for (const char* module : kModules) all_keys.push_back(ModuleKey(layer, module));
  }
  if (target_modules.is_string() && target_modules.get<std::string>() == "all-linear") {
    targets = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  } else if (target_modules.is_array()) {
    for (const Json& target : target_modules) {
      if (!target.is_string()) return ConfigError(path, "target_modules", "must hold module names");
      targets.push_back(target.get<std::string>());
    }
  } else {
    return ConfigError(path, "target_modules", "must be a list of module names or \"all-linear\"");
  }
  for (const std::string& target : targets) {
    bool matched = false;
    for (const std::string& key : all_keys) matched = matched || Targets(target, key);
    if (!matched) {
      return ConfigError(
          path, "target_modules",
          absl::StrCat("\"", target, "\" names no q/k/v/o/gate/up/down projection of this model"));
    }
  }
  return absl::OkStatus();
}

// Fuses the updates of `modules`, whose outputs the backbone stacks in this order with `rows[i]` rows
// each, into one. Modules the adapter leaves alone contribute zero rows of B.
absl::StatusOr<LoraUpdate> FuseGroup(const TensorSource& weights, int64_t layer,
                                     const std::vector<const char*>& modules,
                                     const std::vector<int64_t>& rows, int64_t in, double scale,
                                     const ModelOptions& options, std::set<std::string>* used) {
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  std::vector<at::Tensor> as;
  std::vector<std::pair<int64_t, at::Tensor>> bs;  // (first output row, B [rows, rank])
  int64_t out = 0, rank_total = 0;
  for (size_t i = 0; i < modules.size(); ++i) {
    const std::string prefix = absl::StrCat("base_model.model.", ModuleKey(layer, modules[i]));
    const std::string a_name = prefix + ".lora_A.weight", b_name = prefix + ".lora_B.weight";
    if (weights.Contains(a_name) || weights.Contains(b_name)) {
      PAD_ASSIGN_OR_RETURN(std::vector<int64_t> a_shape, weights.Shape(a_name));
      const int64_t rank = a_shape.empty() ? 0 : a_shape[0];
      PAD_ASSIGN_OR_RETURN(at::Tensor a, weights.Load(a_name, {rank, in}, f32));       // [rank, in]
      PAD_ASSIGN_OR_RETURN(at::Tensor b, weights.Load(b_name, {rows[i], rank}, f32));  // [rows, rank]
      as.push_back(a);
      bs.emplace_back(out, b * scale);
      rank_total += rank;
      used->insert(a_name);
      used->insert(b_name);
    }
    out += rows[i];
  }
  LoraUpdate update;
  if (as.empty()) return update;
  update.a = at::cat(as, 0);
  update.b = at::zeros({out, rank_total}, f32);
  int64_t rank_offset = 0;
  for (const auto& [row, b] : bs) {
    update.b.narrow(0, row, b.size(0)).narrow(1, rank_offset, b.size(1)).copy_(b);
    rank_offset += b.size(1);
  }
  const auto to = at::TensorOptions().dtype(options.dtype).device(options.device);
  update.a = update.a.to(to);
  update.b = update.b.to(to);
  return update;
}

}  // namespace

absl::StatusOr<std::unique_ptr<LoraAdapter>> LoraAdapter::Load(const std::string& adapter_dir,
                                                               const LlamaConfig& config,
                                                               const ModelOptions& options) {
  const std::string config_path = adapter_dir + "/adapter_config.json";
  double scale = 1.0;
  PAD_RETURN_IF_ERROR(ReadConfig(config_path, config, &scale));
  const std::string weights_path = adapter_dir + "/adapter_model.safetensors";
  PAD_ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> weights, Checkpoint::OpenFile(weights_path));
  PAD_ASSIGN_OR_RETURN(std::unique_ptr<LoraAdapter> adapter,
                       FromTensors(*weights, scale, config, options, weights_path));
  adapter->dir_ = adapter_dir;
  return adapter;
}

absl::StatusOr<std::unique_ptr<LoraAdapter>> LoraAdapter::FromTensors(const TensorSource& weights,
                                                                      double scale, const LlamaConfig& config,
                                                                      const ModelOptions& options,
                                                                      const std::string& weights_path) {
  std::unique_ptr<LoraAdapter> adapter(new LoraAdapter());
  const int64_t hidden = config.hidden_size, inter = config.intermediate_size;
  const int64_t q_rows = config.num_attention_heads * config.head_dim;
  const int64_t kv_rows = config.num_key_value_heads * config.head_dim;
  std::set<std::string> used;
  try {
    for (int64_t l = 0; l < config.num_hidden_layers; ++l) {
      LoraLayer layer;
      PAD_ASSIGN_OR_RETURN(layer.qkv, FuseGroup(weights, l, {kModules[0], kModules[1], kModules[2]},
                                                {q_rows, kv_rows, kv_rows}, hidden, scale, options, &used));
      PAD_ASSIGN_OR_RETURN(layer.o,
                           FuseGroup(weights, l, {kModules[3]}, {hidden}, q_rows, scale, options, &used));
      PAD_ASSIGN_OR_RETURN(layer.gate_up, FuseGroup(weights, l, {kModules[4], kModules[5]}, {inter, inter},
                                                    hidden, scale, options, &used));
      PAD_ASSIGN_OR_RETURN(layer.down,
                           FuseGroup(weights, l, {kModules[6]}, {hidden}, inter, scale, options, &used));
      adapter->layers_.push_back(std::move(layer));
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat(weights_path, ": ", e.what_without_backtrace()));
  }
  // Anything else in the file (lm_head, embeddings, layers the backbone lacks) would be silently ignored.
  for (const std::string& name : weights.Names()) {
    if (!used.count(name)) {
      return absl::InvalidArgumentError(
          absl::StrCat(weights_path, ": tensor ", name,
                       " is not a LoRA update of a q/k/v/o/gate/up/down projection "
                       "of this ",
                       config.num_hidden_layers, "-layer model"));
    }
  }
  if (used.empty()) return absl::InvalidArgumentError(absl::StrCat(weights_path, ": holds no LoRA weights"));
  return adapter;
}

int64_t LoraAdapter::parameter_bytes() const {
  int64_t total = 0;
  for (const LoraLayer& layer : layers_) {
    for (const LoraUpdate* update : {&layer.qkv, &layer.o, &layer.gate_up, &layer.down}) {
      if (update->defined()) total += update->a.nbytes() + update->b.nbytes();
    }
  }
  return total;
}

}  // namespace pad
