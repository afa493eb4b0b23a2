// Decode-shaped matrix products alone: LibTorch's at::linear against the project's CPU kernels
// (lib/model/cpu_kernels.h), for a model's projection shapes, a few rows of activations, float32, bfloat16
// and int8 weights (int8 on the kernels only: LibTorch has no such product).
// Weights are cycled through copies totalling more than the last-level cache, as a decode step reads them.
// Prints a table: ms per product, the weights' bytes per second, GFLOP/s; for bfloat16 also the product on
// float32 copies of the weights made in the same call (at::linear in float32: what a CPU without native
// bfloat16 GEMMs can do).
//   bench_linear [--config models/SmolLM2-135M-Instruct/config.json] [--rows 1,4,16,64] [--seconds 0.5]
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "model/cpu_kernels.h"
#include "pad/model_config.h"

ABSL_FLAG(std::string, model, "models/SmolLM2-135M-Instruct", "directory whose config.json gives the shapes");
ABSL_FLAG(std::vector<std::string>, rows, std::vector<std::string>({"1", "4", "16", "64"}),
          "rows of activations (sequences in a decode step)");
ABSL_FLAG(double, seconds, 0.5, "time per measurement");
ABSL_FLAG(int64_t, working_set_mib, 512, "weight copies cycled through, in MiB");

namespace {

using Clock = std::chrono::steady_clock;

// Seconds per call of `fn`, over at least `seconds` after a warm-up call.
template <typename Fn>
double TimePerCall(Fn&& fn, double seconds) {
  fn();
  int64_t calls = 0;
  const Clock::time_point start = Clock::now();
  double elapsed = 0;
  do {
    fn();
    ++calls;
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  } while (elapsed < seconds);
  return elapsed / static_cast<double>(calls);
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  auto config = pad::LlamaConfig::FromModelDir(absl::GetFlag(FLAGS_model));
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", std::string(config.status().message()).c_str());
    return 1;
  }
  const int64_t hidden = config->hidden_size, head_dim = config->head_dim;
  const int64_t qkv = (config->num_attention_heads + 2 * config->num_key_value_heads) * head_dim;
  struct Shape {
    const char* name;
    int64_t n, k;
  };
  const std::vector<Shape> shapes = {{"qkv", qkv, hidden},
                                     {"o", hidden, config->num_attention_heads * head_dim},
                                     {"gate_up", 2 * config->intermediate_size, hidden},
                                     {"down", hidden, config->intermediate_size},
                                     {"lm_head", config->vocab_size, hidden}};
  const pad::CpuIsa isa = pad::DetectCpuIsa();
  at::InferenceMode inference;
  std::printf("threads: %d (LibTorch's, for both); kernel ISA %s\n\n", at::get_num_threads(),
              pad::CpuIsaName(isa));
  std::printf(
      "| weights | shape [n, k] | rows | at::linear ms | GB/s | GFLOP/s | kernel ms | GB/s | GFLOP/s | "
      "speedup | widened ms |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
  // at::kChar: int8 weights with a float32 scale per 32 (float32 x); LibTorch has no such product.
  for (const auto dtype : {at::kFloat, at::kBFloat16, at::kChar}) {
    const bool int8 = dtype == at::kChar;
    for (const Shape& shape : shapes) {
      const int64_t bytes = shape.n * shape.k * static_cast<int64_t>(c10::elementSize(dtype)) +
                            (int8 ? shape.n * shape.k / pad::kInt8Group * 4 : 0);
      const int64_t copies = std::max<int64_t>(1, (absl::GetFlag(FLAGS_working_set_mib) << 20) / bytes);
      std::vector<at::Tensor> weights, scales;  // each [n, k]; int8: [n, k / 32]
      for (int64_t c = 0; c < copies; ++c) {
        if (int8) {
          weights.push_back(at::randint(-127, 128, {shape.n, shape.k}).to(at::kChar));
          scales.push_back(at::rand({shape.n, shape.k / pad::kInt8Group}));
        } else {
          weights.push_back(at::randn({shape.n, shape.k}).to(dtype));
        }
      }
      for (const std::string& rows_text : absl::GetFlag(FLAGS_rows)) {
        const int64_t m = std::stoll(rows_text);
        const at::Tensor x = at::randn({m, shape.k}).to(int8 ? at::kFloat : dtype);  // [m, k]
        const at::Tensor x32 = x.to(at::kFloat);                                     // [m, k]
        at::Tensor y32 = at::empty({m, shape.n});                                    // [m, n]
        size_t next = 0;
        const double seconds = absl::GetFlag(FLAGS_seconds);
        const double torch_s =
            int8 ? NAN : TimePerCall([&] { at::linear(x, weights[next++ % weights.size()]); }, seconds);
        double kernel_s = 0;
        if (isa != pad::CpuIsa::kNone) {
          const auto format = int8                  ? pad::WeightFormat::kInt8
                              : dtype == at::kFloat ? pad::WeightFormat::kFloat32
                                                    : pad::WeightFormat::kBFloat16;
          kernel_s = TimePerCall(
              [&] {
                const size_t c = next++ % weights.size();
                const pad::CpuWeight w = {format, weights[c].data_ptr(),
                                          int8 ? scales[c].data_ptr<float>() : nullptr, shape.n, shape.k};
                // bfloat16 activations go straight into the AVX512_BF16 kernel, as the model does.
                if (dtype == at::kBFloat16 && isa == pad::CpuIsa::kAvx512Bf16) {
                  pad::CpuLinearBf16(isa, static_cast<const uint16_t*>(x.data_ptr()), shape.k, m, w,
                                     {pad::ActivationFormat::kFloat32, y32.data_ptr(), shape.n});
                } else {
                  pad::CpuLinear(isa, x32.data_ptr<float>(), shape.k, m, w,
                                 {pad::ActivationFormat::kFloat32, y32.data_ptr(), shape.n});
                }
              },
              seconds);
        }
        // bfloat16: widen the weights to float32 and run LibTorch's float32 GEMM, the widening counted.
        const double widened_s =
            dtype != at::kBFloat16
                ? NAN
                : TimePerCall(
                      [&] {
                        at::linear(x32, weights[next++ % weights.size()].to(at::kFloat)).to(at::kBFloat16);
                      },
                      seconds);
        const double flops = 2.0 * m * shape.n * shape.k;
        std::printf("| %s | %s [%ld, %ld] | %ld | %.3f | %.1f | %.1f | %.3f | %.1f | %.1f | %.2fx | %.3f |\n",
                    int8                  ? "int8"
                    : dtype == at::kFloat ? "float32"
                                          : "bfloat16",
                    shape.name, shape.n, shape.k, m, torch_s * 1e3, bytes / torch_s / 1e9,
                    flops / torch_s / 1e9, kernel_s * 1e3, bytes / kernel_s / 1e9, flops / kernel_s / 1e9,
                    torch_s / kernel_s, widened_s * 1e3);
        std::fflush(stdout);
      }
    }
  }
  return 0;
}
