// A PEFT LoRA adapter for a Llama backbone, applied unmerged on the rows that ask for it.
#ifndef PAD_LORA_H_
#define PAD_LORA_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "pad/model_config.h"
#include "pad/model_options.h"
#include "pad/tensor_source.h"

namespace pad {

// One low-rank update `delta(x) = (x A^T) B^T` of a fused projection, with the adapter's scale
// (alpha / r, or alpha / sqrt(r) with rsLoRA) folded into B. Where only some projections of a fused group
// (q|k|v, gate|up) are adapted, B is zero on the rows of the others. Undefined when none are.
struct LoraUpdate {
  at::Tensor a;  // [sum of ranks, in]
  at::Tensor b;  // [fused out, sum of ranks]
  bool defined() const { return a.defined(); }
};

struct LoraLayer {
  LoraUpdate qkv;      // out = (heads + 2 kv_heads) * head_dim
  LoraUpdate o;        // out = hidden
  LoraUpdate gate_up;  // out = 2 * intermediate
  LoraUpdate down;     // out = hidden
};

// adapter_config.json + adapter_model.safetensors as peft's save_pretrained writes them (LoRA on any of
// q/k/v/o/gate/up/down_proj; dropout ignored at inference). Immutable after Load; shared by every row and
// thread that uses it. DoRA, LoRA biases, per-module rank/alpha patterns and adapters on the embeddings or
// lm_head are rejected at load, as are shapes that do not fit `config`.
class LoraAdapter {
 public:
  static absl::StatusOr<std::unique_ptr<LoraAdapter>> Load(const std::string& adapter_dir,
                                                           const LlamaConfig& config,
                                                           const ModelOptions& options);
  // The adapter held by `weights` under adapter_model.safetensors' names, with `scale` (alpha / r) folded
  // in; `weights_path` names the source in errors.
  static absl::StatusOr<std::unique_ptr<LoraAdapter>> FromTensors(const TensorSource& weights, double scale,
                                                                  const LlamaConfig& config,
                                                                  const ModelOptions& options,
                                                                  const std::string& weights_path);

  const LoraLayer& layer(int64_t index) const { return layers_[index]; }
  int64_t parameter_bytes() const;
  // Empty when made from tensors.
  const std::string& dir() const { return dir_; }

 private:
  LoraAdapter() = default;
  std::string dir_;
  std::vector<LoraLayer> layers_;  // [num_hidden_layers]
};

}  // namespace pad

#endif  // PAD_LORA_H_
