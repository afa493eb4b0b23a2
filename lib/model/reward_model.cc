#include "pad/reward_model.h"

#include <ATen/ATen.h>
#include <limits.h>
#include <stdlib.h>

#include "absl/strings/str_cat.h"
#include "io/json_file.h"
#include "pad/safetensors.h"
#include "pad/status_macros.h"

namespace pad {
namespace {

std::string RealPath(const std::string& path) {
  char resolved[PATH_MAX];
  return ::realpath(path.c_str(), resolved) != nullptr ? std::string(resolved) : path;
}

// An adapter trained on another base model would load with the wrong shapes or none at all; say so first.
absl::Status CheckAdapterBase(const std::string& adapter_dir) {
  PAD_ASSIGN_OR_RETURN(nlohmann::json config, ReadJsonFile(adapter_dir + "/adapter_config.json"));
  const nlohmann::json mapping = config.contains("auto_mapping") ? config["auto_mapping"] : nlohmann::json();
  if (mapping.is_object() && mapping.contains("base_model_class") &&
      mapping["base_model_class"].is_string()) {
    const std::string base = mapping["base_model_class"].get<std::string>();
    if (base != "LlamaForCausalLM" && base != "MistralForCausalLM") {
      return absl::InvalidArgumentError(absl::StrCat(adapter_dir,
                                                     "/adapter_config.json: auto_mapping.base_model_class \"",
                                                     base, "\" is not a Llama-architecture model"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<RewardModel>> RewardModel::Load(const RewardModelSpec& spec,
                                                               const ModelOptions& options,
                                                               const LlamaModel* policy) {
  if (spec.backbone_dir.empty()) return absl::InvalidArgumentError("reward model: backbone_dir is empty");
  std::unique_ptr<LlamaModel> owned_backbone;
  const bool shared =
      policy != nullptr && !policy->dir().empty() && RealPath(policy->dir()) == RealPath(spec.backbone_dir);
  if (!shared) {
    PAD_ASSIGN_OR_RETURN(owned_backbone, LlamaModel::Load(spec.backbone_dir, options));
  }
  const LlamaConfig& config = shared ? policy->config() : owned_backbone->config();
  std::unique_ptr<LoraAdapter> adapter;
  if (!spec.adapter_dir.empty()) {
    PAD_RETURN_IF_ERROR(CheckAdapterBase(spec.adapter_dir));
    PAD_ASSIGN_OR_RETURN(adapter, LoraAdapter::Load(spec.adapter_dir, config, options));
  }
  std::string value_head_path = spec.value_head_path;
  if (value_head_path.empty()) {
    const std::string beside =
        (spec.adapter_dir.empty() ? spec.backbone_dir : spec.adapter_dir) + "/value_head.safetensors";
    if (FileExists(beside)) value_head_path = beside;
  }
  std::unique_ptr<Checkpoint> value_head;
  if (!value_head_path.empty()) {
    PAD_ASSIGN_OR_RETURN(value_head, Checkpoint::OpenFile(value_head_path));
  }
  return FromParts(spec.name, shared ? policy : nullptr, std::move(owned_backbone), std::move(adapter),
                   value_head.get());
}

absl::StatusOr<std::unique_ptr<RewardModel>> RewardModel::FromParts(
    std::string name, const LlamaModel* policy, std::unique_ptr<LlamaModel> owned_backbone,
    std::unique_ptr<LoraAdapter> adapter, const TensorSource* value_head) {
  if ((policy == nullptr) == (owned_backbone == nullptr)) {
    return absl::InvalidArgumentError(
        absl::StrCat("reward model ", name, ": needs either the policy's backbone or its own"));
  }
  std::unique_ptr<RewardModel> prm(new RewardModel());
  prm->name_ = std::move(name);
  prm->owned_backbone_ = std::move(owned_backbone);
  prm->backbone_ = policy != nullptr ? policy : prm->owned_backbone_.get();
  prm->adapter_ = std::move(adapter);
  if (value_head != nullptr) {
    const LlamaConfig& config = prm->backbone_->config();
    const ModelOptions& options = prm->backbone_->options();
    const auto to = at::TensorOptions().dtype(options.dtype).device(options.device);
    PAD_ASSIGN_OR_RETURN(prm->v_weight_, value_head->Load("v_head.summary.weight",
                                                          {config.hidden_size, config.hidden_size}, to));
    PAD_ASSIGN_OR_RETURN(prm->v_bias_, value_head->Load("v_head.summary.bias", {config.hidden_size}, to));
  }
  return prm;
}

int64_t RewardModel::parameter_bytes() const {
  int64_t total = owned_backbone_ ? owned_backbone_->parameter_bytes() : 0;
  if (adapter_) total += adapter_->parameter_bytes();
  if (v_weight_.defined()) total += v_weight_.nbytes() + v_bias_.nbytes();
  return total;
}

at::Tensor RewardModel::ValueHead(const at::Tensor& hidden) const {
  at::Tensor h = hidden.to(backbone_->options().dtype);
  return v_weight_.defined() ? at::linear(h, v_weight_, v_bias_) : h;
}

absl::StatusOr<at::Tensor> RewardModel::CandidateLogits(const at::Tensor& hidden,
                                                        const at::Tensor& candidates) const {
  try {
    return backbone_->LogitsAt(ValueHead(hidden), candidates);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("reward model ", name_, ": ", e.what_without_backtrace()));
  }
}

absl::StatusOr<at::Tensor> RewardModel::Logits(const at::Tensor& hidden) const {
  try {
    return backbone_->Logits(ValueHead(hidden));
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("reward model ", name_, ": ", e.what_without_backtrace()));
  }
}

}  // namespace pad
