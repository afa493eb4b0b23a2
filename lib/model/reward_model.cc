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
  std::unique_ptr<RewardModel> prm(new RewardModel());
  prm->name_ = spec.name;
  if (policy != nullptr && !policy->dir().empty() && RealPath(policy->dir()) == RealPath(spec.backbone_dir)) {
    prm->backbone_ = policy;
  } else {
    PAD_ASSIGN_OR_RETURN(prm->owned_backbone_, LlamaModel::Load(spec.backbone_dir, options));
    prm->backbone_ = prm->owned_backbone_.get();
  }
  const LlamaConfig& config = prm->backbone_->config();
  if (!spec.adapter_dir.empty()) {
    PAD_RETURN_IF_ERROR(CheckAdapterBase(spec.adapter_dir));
    PAD_ASSIGN_OR_RETURN(prm->adapter_, LoraAdapter::Load(spec.adapter_dir, config, options));
  }

  std::string value_head = spec.value_head_path;
  if (value_head.empty()) {
    const std::string beside =
        (spec.adapter_dir.empty() ? spec.backbone_dir : spec.adapter_dir) + "/value_head.safetensors";
    if (FileExists(beside)) value_head = beside;
  }
  if (!value_head.empty()) {
    PAD_ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> weights, Checkpoint::OpenFile(value_head));
    const auto to = at::TensorOptions().dtype(options.dtype).device(options.device);
    PAD_ASSIGN_OR_RETURN(
        prm->v_weight_, weights->Load("v_head.summary.weight", {config.hidden_size, config.hidden_size}, to));
    PAD_ASSIGN_OR_RETURN(prm->v_bias_, weights->Load("v_head.summary.bias", {config.hidden_size}, to));
  }
  return prm;
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
