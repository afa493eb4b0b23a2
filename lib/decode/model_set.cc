#include "pad/model_set.h"

#include "pad/status_macros.h"
#include "pad/tensor_source.h"

namespace pad {

absl::StatusOr<std::unique_ptr<ModelSet>> ModelSet::Load(const std::string& policy_dir,
                                                         const std::vector<RewardModelSpec>& reward_models,
                                                         const ModelOptions& options) {
  std::unique_ptr<ModelSet> set(new ModelSet());
  PAD_ASSIGN_OR_RETURN(set->policy_, LlamaModel::Load(policy_dir, options));
  PAD_ASSIGN_OR_RETURN(set->tokenizer_, Tokenizer::FromFile(policy_dir + "/tokenizer.json"));
  PAD_ASSIGN_OR_RETURN(ChatTemplate chat, ChatTemplate::FromModelDir(policy_dir));
  set->chat_template_ = std::make_unique<ChatTemplate>(std::move(chat));
  for (const RewardModelSpec& spec : reward_models) {
    PAD_ASSIGN_OR_RETURN(std::unique_ptr<RewardModel> prm,
                         RewardModel::Load(spec, options, set->policy_.get()));
    set->reward_models_.push_back(std::move(prm));
  }
  return set;
}

absl::StatusOr<std::unique_ptr<ModelSet>> ModelSet::Random(const std::string& model_dir, int64_t lora_rank,
                                                           bool separate_prm_backbone,
                                                           const ModelOptions& options) {
  std::unique_ptr<ModelSet> set(new ModelSet());
  PAD_ASSIGN_OR_RETURN(const LlamaConfig config, LlamaConfig::FromModelDir(model_dir));
  const std::unique_ptr<RandomTensors> weights = RandomTensors::ForLlama(config);
  PAD_ASSIGN_OR_RETURN(set->policy_, LlamaModel::FromTensors(config, *weights, options));
  PAD_ASSIGN_OR_RETURN(set->tokenizer_, Tokenizer::FromFile(model_dir + "/tokenizer.json"));
  PAD_ASSIGN_OR_RETURN(ChatTemplate chat, ChatTemplate::FromModelDir(model_dir));
  set->chat_template_ = std::make_unique<ChatTemplate>(std::move(chat));
  std::unique_ptr<LlamaModel> prm_backbone;
  if (separate_prm_backbone) {
    PAD_ASSIGN_OR_RETURN(prm_backbone, LlamaModel::FromTensors(config, *weights, options));
  }
  PAD_ASSIGN_OR_RETURN(std::unique_ptr<LoraAdapter> adapter,
                       LoraAdapter::FromTensors(*RandomTensors::ForLora(config, lora_rank), /*scale=*/2.0,
                                                config, options, "random LoRA"));
  PAD_ASSIGN_OR_RETURN(std::unique_ptr<RewardModel> prm,
                       RewardModel::FromParts("default", separate_prm_backbone ? nullptr : set->policy_.get(),
                                              std::move(prm_backbone), std::move(adapter),
                                              RandomTensors::ForValueHead(config).get()));
  set->reward_models_.push_back(std::move(prm));
  return set;
}

std::vector<const RewardModel*> ModelSet::reward_models() const {
  std::vector<const RewardModel*> out;
  for (const auto& prm : reward_models_) out.push_back(prm.get());
  return out;
}

const RewardModel* ModelSet::reward_model(absl::string_view name) const {
  for (const auto& prm : reward_models_) {
    if (prm->name() == name) return prm.get();
  }
  return nullptr;
}

absl::StatusOr<std::unique_ptr<PadDecoder>> ModelSet::MakeDecoder(const DecoderOptions& options) const {
  return PadDecoder::Create(policy_.get(), tokenizer_.get(), chat_template_.get(), reward_models(), options);
}

}  // namespace pad
