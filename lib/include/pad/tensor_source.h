// Where a model's named tensors come from: a safetensors checkpoint (pad/safetensors.h), or random values
// made on the device, for benchmarks of shapes whose weights are not on the machine (Llama-3-8B on a GPU).
#ifndef PAD_TENSOR_SOURCE_H_
#define PAD_TENSOR_SOURCE_H_

#include <ATen/core/Tensor.h>
#include <c10/core/TensorOptions.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "pad/model_config.h"

namespace pad {

// Named tensors by their Hugging Face / peft names. Immutable; any thread may Load.
class TensorSource {
 public:
  virtual ~TensorSource() = default;
  virtual bool Contains(const std::string& name) const = 0;
  virtual std::vector<std::string> Names() const = 0;
  // The stored shape of `name`, or NOT_FOUND naming the source and the tensor.
  virtual absl::StatusOr<std::vector<int64_t>> Shape(const std::string& name) const = 0;
  // The tensor `name`, checked to have `expected_shape`, in `options`' dtype on its device. Errors name the
  // source and the tensor.
  virtual absl::StatusOr<at::Tensor> Load(const std::string& name, absl::Span<const int64_t> expected_shape,
                                          const at::TensorOptions& options) const = 0;
};

// Tensors made when loaded, directly on the target device: matrices N(0, 0.02) as transformers initialises a
// Llama, norm weights one, biases zero. Values come from LibTorch's default generator of that device, so
// at::manual_seed makes them repeatable.
class RandomTensors final : public TensorSource {
 public:
  // Every tensor of a LlamaForCausalLM with `config`.
  static std::unique_ptr<RandomTensors> ForLlama(const LlamaConfig& config);
  // A peft LoRA adapter of rank `rank` on all seven projections of every layer (adapter_model.safetensors'
  // names). Unlike peft's initialisation, B is not zero, so the update does real arithmetic.
  static std::unique_ptr<RandomTensors> ForLora(const LlamaConfig& config, int64_t rank);
  // A PRM value head: v_head.summary.weight [hidden, hidden] and v_head.summary.bias [hidden].
  static std::unique_ptr<RandomTensors> ForValueHead(const LlamaConfig& config);

  bool Contains(const std::string& name) const override { return shapes_.count(name) > 0; }
  std::vector<std::string> Names() const override;
  absl::StatusOr<std::vector<int64_t>> Shape(const std::string& name) const override;
  absl::StatusOr<at::Tensor> Load(const std::string& name, absl::Span<const int64_t> expected_shape,
                                  const at::TensorOptions& options) const override;

 private:
  RandomTensors() = default;
  std::map<std::string, std::vector<int64_t>> shapes_;
};

}  // namespace pad

#endif  // PAD_TENSOR_SOURCE_H_
