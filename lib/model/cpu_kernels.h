// Decode-shaped matrix products on the CPU, written for the memory's speed: a decode step multiplies a few
// rows of activations by every weight matrix once, so the cost is reading the weights. LibTorch's float32
// GEMM (MKL on this AMD CPU) reads them at less than half the memory's bandwidth for one row and gains
// little from a few more rows; these kernels stream each weight row once per step with AVX-512 or AVX2
// (chosen at run time), float32 accumulation, and float32 or bfloat16 weights. No ATen in this header: raw
// pointers, so the kernels can be tested and measured alone (cpu_kernels_test, bench/bench_linear).
#ifndef PAD_MODEL_CPU_KERNELS_H_
#define PAD_MODEL_CPU_KERNELS_H_

#include <cstdint>

namespace pad {

// The instruction sets the kernels have versions for, best last.
enum class CpuIsa { kNone, kAvx2, kAvx512 };

// What this CPU supports (AVX2 needs FMA too; AVX-512 needs F, BW and VL).
CpuIsa DetectCpuIsa();
const char* CpuIsaName(CpuIsa isa);

enum class WeightFormat { kFloat32, kBFloat16 };

// y [m, n] (row stride ldy) = x [m, k] (row stride ldx) · w [n, k]ᵀ, float32 accumulation, where w is
// row-major as Hugging Face stores a Linear's weight, in `format`. Split by rows of w over LibTorch's
// intra-op threads. REQUIRES: isa != kNone and supported here.
void CpuLinear(CpuIsa isa, const float* x, int64_t ldx, int64_t m, int64_t k, const void* w,
               WeightFormat format, int64_t n, float* y, int64_t ldy);

}  // namespace pad

#endif  // PAD_MODEL_CPU_KERNELS_H_
