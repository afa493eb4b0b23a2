// Where and in which precision a model runs, and where a PRM's files are.
#ifndef PAD_MODEL_OPTIONS_H_
#define PAD_MODEL_OPTIONS_H_

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pad {

// How the weights of the matrix products are stored. kInt8: int8 in groups of 32 values with a float32 scale
// each (llama.cpp's Q8_0 layout), for the projections and lm_head, on the CPU kernels only; the embedding,
// norms, activations and KV cache stay in `dtype` (a product quantizes its input to int16 on the way).
enum class Quantization { kNone, kInt8 };

struct ModelOptions {
  // "cpu", "cuda", "cuda:1", ...
  c10::Device device = c10::Device(c10::kCPU);
  // Weights, activations and KV cache: float32, bfloat16 or float16. Scores are always float32.
  c10::ScalarType dtype = c10::kFloat;
  // On the CPU, float32 and bfloat16 products of a few rows (decode steps) run on the project's AVX2 /
  // AVX-512 kernels (model/cpu_kernels.h) where the CPU has them; false: LibTorch's GEMM for every product.
  bool cpu_kernels = true;
  Quantization quantization = Quantization::kNone;
};

// "float32" | "bfloat16" | "float16" (also "fp32", "bf16", "fp16").
absl::StatusOr<c10::ScalarType> ParseDtype(absl::string_view name);
// "none" | "int8".
absl::StatusOr<Quantization> ParseQuantization(absl::string_view name);
// "cpu" | "cuda" | "cuda:N"; UNAVAILABLE when CUDA is asked for and absent.
absl::StatusOr<c10::Device> ParseDevice(absl::string_view name);

// Where a PRM's files are. Either a backbone plus a PEFT LoRA adapter, or a merged PRM directory alone.
struct RewardModelSpec {
  std::string name = "default";  // how requests choose it
  std::string backbone_dir;      // Hugging Face model directory
  std::string adapter_dir;       // PEFT LoRA directory; empty for a merged PRM
  // value_head.safetensors (v_head.summary.weight [hidden, hidden], v_head.summary.bias [hidden]).
  // Empty: <adapter_dir or backbone_dir>/value_head.safetensors if present, else the identity.
  std::string value_head_path;
};

}  // namespace pad

#endif  // PAD_MODEL_OPTIONS_H_
