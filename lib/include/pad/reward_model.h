// The personalized reward model (PRM): a causal-LM backbone with LoRA and a value head before lm_head.
#ifndef PAD_REWARD_MODEL_H_
#define PAD_REWARD_MODEL_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "pad/llama.h"
#include "pad/lora.h"
#include "pad/model_options.h"
#include "pad/tensor_source.h"

namespace pad {

// z_r = lm_head(W_v h + b_v), h the backbone's final normed hidden state with the adapter applied. When the
// backbone directory is the policy's own, the policy's weights are used (one copy in memory) and the
// adapter applies only on this PRM's rows. Immutable after Load; its forwards run on the engine thread.
class RewardModel {
 public:
  // `policy` (may be null) is shared when spec.backbone_dir names the same directory; it must outlive
  // the reward model. Errors name the file and field: mismatched shapes, unknown target modules, an
  // adapter for another architecture.
  static absl::StatusOr<std::unique_ptr<RewardModel>> Load(const RewardModelSpec& spec,
                                                           const ModelOptions& options,
                                                           const LlamaModel* policy);
  // A PRM of parts already made (Load's parts, or random weights for benchmarks). Exactly one of `policy`
  // (shared, must outlive it) and `owned_backbone` is given; `adapter` may be null (none) and
  // `value_head` null (the identity).
  static absl::StatusOr<std::unique_ptr<RewardModel>> FromParts(std::string name, const LlamaModel* policy,
                                                                std::unique_ptr<LlamaModel> owned_backbone,
                                                                std::unique_ptr<LoraAdapter> adapter,
                                                                const TensorSource* value_head);

  const std::string& name() const { return name_; }
  const LlamaModel& backbone() const { return *backbone_; }
  // Null for a merged PRM.
  const LoraAdapter* adapter() const { return adapter_.get(); }
  bool shares_policy_backbone() const { return owned_backbone_ == nullptr; }
  // What this PRM adds to the policy's memory: its own backbone if any, the adapter and the value head.
  int64_t parameter_bytes() const;

  // hidden [n, hidden], candidates [n, k] int64 -> PRM logits of the candidates [n, k], float32. Only
  // the k rows of lm_head are read.
  absl::StatusOr<at::Tensor> CandidateLogits(const at::Tensor& hidden, const at::Tensor& candidates) const;
  // hidden [n, hidden] -> [n, vocab], float32: the whole distribution, for tests and offline analysis.
  absl::StatusOr<at::Tensor> Logits(const at::Tensor& hidden) const;

 private:
  RewardModel() = default;
  at::Tensor ValueHead(const at::Tensor& hidden) const;  // [n, hidden] -> [n, hidden]

  std::string name_;
  std::unique_ptr<LlamaModel> owned_backbone_;  // null when the policy's backbone is shared
  const LlamaModel* backbone_ = nullptr;
  std::unique_ptr<LoraAdapter> adapter_;
  at::Tensor v_weight_;  // [hidden, hidden], or undefined for the identity
  at::Tensor v_bias_;    // [hidden], or undefined
};

}  // namespace pad

#endif  // PAD_REWARD_MODEL_H_
