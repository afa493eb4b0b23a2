// Decode-shaped matrix products on the CPU, written for the memory's speed: a decode step multiplies a few
// rows of activations by every weight matrix once, so the cost is reading the weights. LibTorch's float32
// GEMM (MKL on this AMD CPU) reads them at less than half the memory's bandwidth for one row and gains
// little from a few more rows; these kernels stream each weight row once per step with AVX-512 or AVX2
// (chosen at run time) and float32 accumulation, over float32, bfloat16 or int8 weights. No ATen in this
// header: raw pointers, so the kernels can be tested and measured alone (cpu_kernels_test, bench_linear).
#ifndef PAD_MODEL_CPU_KERNELS_H_
#define PAD_MODEL_CPU_KERNELS_H_

#include <cstdint>

namespace pad {

// The instruction sets the kernels have versions for, each a superset of the one before.
enum class CpuIsa { kNone, kAvx2, kAvx512, kAvx512Bf16 };

// What this CPU supports (AVX2 needs FMA too; AVX-512 needs F, BW and VL; kAvx512Bf16 adds AVX512_BF16),
// capped by the environment variable PAD_CPU_CAPABILITY (a CpuIsaName: "avx2", "avx512", "avx512_bf16" or
// "none"), read once per process. Like LibTorch's ATEN_CPU_CAPABILITY, it lets one host run what a lesser
// CPU runs (the tests do, scripts/test.sh); it is the CPU's property every binary sees, not a setting.
CpuIsa DetectCpuIsa();
const char* CpuIsaName(CpuIsa isa);

enum class WeightFormat { kFloat32, kBFloat16, kInt8 };

// int8 w (llama.cpp's Q8_0 layout): each row in groups of this many values along k, a value being the int8
// times its group's float32 scale. Against int8 w, x is quantized in the same groups to int16
// (QuantizeForInt8), so that each group's products are summed exactly in integers.
inline constexpr int64_t kInt8Group = 32;

// A Linear's weight w [n, k], row-major as Hugging Face stores it.
struct CpuWeight {
  WeightFormat format = WeightFormat::kFloat32;
  const void* data = nullptr;     // [n, k] float32, bfloat16 (as uint16_t) or int8
  const float* scales = nullptr;  // kInt8 only: [n, k / kInt8Group]
  int64_t n = 0;
  int64_t k = 0;  // kInt8: a multiple of kInt8Group
};

// Activations are float32 or bfloat16 (as uint16_t).
enum class ActivationFormat { kFloat32, kBFloat16 };

// Where a product's float32 sums s [m, n] go: y [m, n] (row stride ldy) in `format`, each
// y = round(s + bias) or, with a residual, round(residual + round(s + bias)): LibTorch's rounding of
// linear(x, w, bias), then of residual + that, so the residual add of a layer costs no pass of its own.
struct CpuOutput {
  ActivationFormat format = ActivationFormat::kFloat32;
  void* y = nullptr;
  int64_t ldy = 0;
  const void* bias = nullptr;      // [n] in `format`, or null
  const void* residual = nullptr;  // [m, n] in `format`, row stride ldy, or null; may be y
};

// x [m, k] (row stride ldx) · wᵀ into `out`, float32 accumulation; with int8 w, x's groups quantized first
// (so the result is QuantizeForInt8(x) · wᵀ). Split by rows of w over LibTorch's intra-op threads.
// REQUIRES: isa != kNone and supported here.
void CpuLinear(CpuIsa isa, const float* x, int64_t ldx, int64_t m, const CpuWeight& w, const CpuOutput& out);

// x [m, k] (row stride ldx) -> out [m, k]: x as the int8 products see it. Each group of kInt8Group values
// scaled so its largest magnitude is 32767 and rounded to the nearest integer (ties to even), scaled back:
// scale = largest / 32767, value = round(x * (1 / scale)) * scale (0 for a group of zeros), in float32.
// REQUIRES: isa != kNone, k % kInt8Group == 0.
void QuantizeForInt8(CpuIsa isa, const float* x, int64_t ldx, int64_t m, int64_t k, float* out);

// The same for bfloat16 activations (as uint16_t) against bfloat16 weights, the products of a bfloat16
// model: AVX512_BF16's dot product takes two pairs per float32 lane in one instruction, with nothing to
// widen. REQUIRES: isa == kAvx512Bf16, w.format == kBFloat16.
void CpuLinearBf16(CpuIsa isa, const uint16_t* x, int64_t ldx, int64_t m, const CpuWeight& w,
                   const CpuOutput& out);

// ---- The small operations of a decode step, each one pass instead of several LibTorch operations (a
// decode step is hundreds of them, each a few microseconds of dispatch and allocation). Activations are
// float32 or bfloat16 (as uint16_t), rounded as LibTorch rounds the unfused operations in that dtype.

// out [rows, n] = weight * (x / sqrt(mean(x²) + eps)) per row, as transformers' LlamaRMSNorm: normalised in
// float32, rounded to the format, then scaled in it. x, weight [n] and out in `format`; out may be x.
void CpuRmsNorm(ActivationFormat format, const void* x, int64_t rows, int64_t n, const void* weight,
                float eps, void* out);

// Rotates each token's query and key heads in place (x * cos + rotate_half(x) * sin, each product and the
// sum rounded) and writes its key and value heads into the paged cache, head h at row
// cache_rows[t] + h * block_size. qkv [tokens, (heads + 2 * kv_heads) * head_dim]; cos, sin
// [tokens, head_dim]; cache_k, cache_v [blocks, kv_heads, block_size, head_dim] (KvCache's layout) viewed
// as rows of head_dim, contiguous.
struct RopeAndCache {
  int64_t tokens, heads, kv_heads, head_dim, block_size;
  const int64_t* cache_rows;  // [tokens]: (block * kv_heads) * block_size + position % block_size
};
void CpuRopeAndCache(ActivationFormat format, const RopeAndCache& shape, void* qkv, const void* cos,
                     const void* sin, void* cache_k, void* cache_v);

// Causal attention of packed query tokens over a paged cache, for prefill and decode alike: sequence r's
// queries are tokens [query_starts[r], query_starts[r + 1]) of q (and of out; the tokens before
// query_starts[0] are not touched), the last `n` positions of its
// key_lengths[r] keys (already written), so its query i sees keys [0, key_lengths[r] - n + i + 1). Key p of
// sequence r, head h, is at [block_tables[r * max_blocks + p / block_size], h, p % block_size] of the
// cache. softmax(q·kᵀ / sqrt(head_dim)) · v per query head, query head h reading key and value head
// h / (heads / kv_heads): grouped-query attention reads each key and value once for up to 4 query heads of
// its group (all 3 of SmolLM2's, all 4 of Llama-3-8B's) and never copies it.
// Scores, softmax and sums in float32; each output rounded once. q [tokens, q_stride] (the first
// heads * head_dim of each token); cache_k, cache_v [blocks, kv_heads, block_size, head_dim], contiguous;
// out [tokens, heads * head_dim]. Split over tokens and heads on LibTorch's threads.
// REQUIRES: PagedAttentionSupported(isa, head_dim): AVX2 or AVX-512 (each its own kernel), head_dim 64, 96,
// 128 or 256.
struct PagedAttention {
  int64_t sequences, heads, kv_heads, head_dim, block_size, q_stride;
  const int64_t* query_starts;  // [sequences + 1]
  const int64_t* key_lengths;   // [sequences]
  const int32_t* block_tables;  // [sequences, max_blocks]
  int64_t max_blocks;
};
bool PagedAttentionSupported(CpuIsa isa, int64_t head_dim);
void CpuPagedAttention(CpuIsa isa, ActivationFormat format, const PagedAttention& shape, const void* q,
                       const void* cache_k, const void* cache_v, void* out);

// out [rows, inter] = silu(gate) * up, gate_up [rows, 2 * inter] = [gate | up] per row, as LibTorch's
// at::silu then a product, each rounded to the format. REQUIRES: isa >= kAvx2 (AVX-512 has its own kernel).
void CpuSiluMul(CpuIsa isa, ActivationFormat format, const void* gate_up, int64_t rows, int64_t inter,
                void* out);

}  // namespace pad

#endif  // PAD_MODEL_CPU_KERNELS_H_
