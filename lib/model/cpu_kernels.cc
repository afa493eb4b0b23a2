#include "model/cpu_kernels.h"

#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace pad {

namespace {

CpuIsa SupportedCpuIsa() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl")) {
    return __builtin_cpu_supports("avx512bf16") ? CpuIsa::kAvx512Bf16 : CpuIsa::kAvx512;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return CpuIsa::kAvx2;
  return CpuIsa::kNone;
}

// PAD_CPU_CAPABILITY's cap; an unknown value caps nothing (the variable is a testing aid, as ATen's is).
CpuIsa CapabilityCap() {
  const char* cap = std::getenv("PAD_CPU_CAPABILITY");
  if (cap == nullptr) return CpuIsa::kAvx512Bf16;
  for (CpuIsa isa : {CpuIsa::kNone, CpuIsa::kAvx2, CpuIsa::kAvx512, CpuIsa::kAvx512Bf16}) {
    if (std::strcmp(cap, CpuIsaName(isa)) == 0) return isa;
  }
  return CpuIsa::kAvx512Bf16;
}

}  // namespace

CpuIsa DetectCpuIsa() {
  static const CpuIsa isa = std::min(SupportedCpuIsa(), CapabilityCap());
  return isa;
}

const char* CpuIsaName(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kAvx512Bf16:
      return "avx512_bf16";
    case CpuIsa::kAvx512:
      return "avx512";
    case CpuIsa::kAvx2:
      return "avx2";
    case CpuIsa::kNone:
      break;
  }
  return "none";
}

namespace {

// float32 to bfloat16, round to nearest even, as c10::BFloat16 (NaN stays NaN).
inline uint16_t RoundToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  if ((bits & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}
inline float FromBf16(uint16_t v) {
  const uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

// The activations' storage: loads widen to float32, stores round.
template <typename T>
struct Act;
template <>
struct Act<float> {
  static float Load(const float* p, int64_t i) { return p[i]; }
  static void Store(float* p, int64_t i, float v) { p[i] = v; }
  static float Round(float v) { return v; }
};
template <>
struct Act<uint16_t> {
  static float Load(const uint16_t* p, int64_t i) { return FromBf16(p[i]); }
  static void Store(uint16_t* p, int64_t i, float v) { p[i] = RoundToBf16(v); }
  static float Round(float v) { return FromBf16(RoundToBf16(v)); }
};

// Each kernel computes a tile: MT rows of x against NT rows of w, MT * NT vector accumulators over k, so
// that a w vector loaded once serves MT rows and an x vector NT rows. Rows of w are the output columns; the
// threads split them. A tile's w rows start at `w`, rs rows (rs * k values) apart, and its sums go to
// columns rs apart of y; an int8 tile's scales start at `scales`, rs * k / kInt8Group apart. Every tile
// shape adds one output's products in the same order, so that a row's result does not depend on the
// rows beside it in the batch.

// Row j's int8 scales; null for the other formats, which have none (and null + offset is undefined).
inline const float* RowScales(const float* scales, int64_t j, int64_t groups) {
  return scales == nullptr ? nullptr : scales + j * groups;
}

// ---- AVX-512: 16 floats a vector; 32 registers hold 4 x 4 accumulators and the loads.

#define PAD_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma")))

// 16 weights from k index i of a row, as float32 (the masked forms read only the lanes in `mask`).
PAD_AVX512 inline __m512 Widen16(__m256i bf16) {
  // bfloat16 is the top half of a float32: widen and shift, exactly.
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bf16), 16));
}

// e^x for 16 floats: Cephes' expf (x = n ln 2 + r, a degree-5 polynomial in r, times 2^n), within 2 ulp
// of expf; below -87.3 (the smallest normal) it flushes towards 0, above 88.7 it overflows to infinity.
PAD_AVX512 inline __m512 Exp16(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.336544f)), _mm512_set1_ps(88.722839f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  for (const float c :
       {1.3981999507e-3f, 8.3334519073e-3f, 4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f})
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

// 16 activations as float32, and back (bfloat16 rounded to nearest even, NaN kept, as RoundToBf16).
PAD_AVX512 inline __m512 LoadAct16(const float* p) { return _mm512_loadu_ps(p); }
PAD_AVX512 inline __m512 LoadAct16(const uint16_t* p) {
  return Widen16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
PAD_AVX512 inline __m256i ToBf16(__m512 v) {
  const __m512i bits = _mm512_castps_si512(v);
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  __m512i rounded =
      _mm512_srli_epi32(_mm512_add_epi32(bits, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7fff))), 16);
  rounded = _mm512_mask_mov_epi32(rounded, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), _mm512_set1_epi32(0x7fc0));
  return _mm512_cvtepi32_epi16(rounded);
}
PAD_AVX512 inline void StoreAct16(float* p, __m512 v) { _mm512_storeu_ps(p, v); }
PAD_AVX512 inline void StoreAct16(uint16_t* p, __m512 v) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), ToBf16(v));
}
PAD_AVX512 inline __m512 RoundAct16(const float*, __m512 v) { return v; }
PAD_AVX512 inline __m512 RoundAct16(const uint16_t*, __m512 v) { return Widen16(ToBf16(v)); }

template <int MT, int NT>
PAD_AVX512 void TileAvx512(const float* x, int64_t ldx, const float* w, int64_t rs, const float*, int64_t k,
                           float* y, int64_t ldy) {
  __m512 acc[MT][NT];
  for (int r = 0; r < MT; ++r) {
    for (int j = 0; j < NT; ++j) acc[r][j] = _mm512_setzero_ps();
  }
  int64_t i = 0;
  for (; i + 16 <= k; i += 16) {
    __m512 wv[NT];
    for (int j = 0; j < NT; ++j) wv[j] = _mm512_loadu_ps(w + j * rs * k + i);
    for (int r = 0; r < MT; ++r) {
      const __m512 xv = _mm512_loadu_ps(x + r * ldx + i);
      for (int j = 0; j < NT; ++j) acc[r][j] = _mm512_fmadd_ps(xv, wv[j], acc[r][j]);
    }
  }
  if (i < k) {
    const __mmask16 mask = static_cast<__mmask16>((1u << (k - i)) - 1);
    __m512 wv[NT];
    for (int j = 0; j < NT; ++j) wv[j] = _mm512_maskz_loadu_ps(mask, w + j * rs * k + i);
    for (int r = 0; r < MT; ++r) {
      const __m512 xv = _mm512_maskz_loadu_ps(mask, x + r * ldx + i);
      for (int j = 0; j < NT; ++j) acc[r][j] = _mm512_fmadd_ps(xv, wv[j], acc[r][j]);
    }
  }
  for (int r = 0; r < MT; ++r) {
    for (int j = 0; j < NT; ++j) y[r * ldy + j * rs] = _mm512_reduce_add_ps(acc[r][j]);
  }
}

// ---- AVX512_BF16: bfloat16 x and w, 32 values a vector, vdpbf16ps adding the two products of each pair
// of neighbours along k into one float32 lane. Neighbours along k are neighbours in memory for both x and
// Hugging Face's w, so nothing is re-packed.

#define PAD_AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

PAD_AVX512_BF16 inline __m512bh Load32(const uint16_t* p) {
  return reinterpret_cast<__m512bh>(_mm512_loadu_si512(p));
}
PAD_AVX512_BF16 inline __m512bh MaskedLoad32(const uint16_t* p, __mmask32 mask) {
  return reinterpret_cast<__m512bh>(_mm512_maskz_loadu_epi16(mask, p));
}

template <int MT, int NT>
PAD_AVX512_BF16 void TileAvx512Bf16(const uint16_t* x, int64_t ldx, const uint16_t* w, int64_t rs,
                                    const float*, int64_t k, float* y, int64_t ldy) {
  __m512 acc[MT][NT];
  for (int r = 0; r < MT; ++r) {
    for (int j = 0; j < NT; ++j) acc[r][j] = _mm512_setzero_ps();
  }
  int64_t i = 0;
  for (; i + 32 <= k; i += 32) {
    __m512bh wv[NT];
    for (int j = 0; j < NT; ++j) wv[j] = Load32(w + j * rs * k + i);
    for (int r = 0; r < MT; ++r) {
      const __m512bh xv = Load32(x + r * ldx + i);
      for (int j = 0; j < NT; ++j) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], xv, wv[j]);
    }
  }
  if (i < k) {
    const __mmask32 mask = static_cast<__mmask32>((uint64_t{1} << (k - i)) - 1);
    __m512bh wv[NT];
    for (int j = 0; j < NT; ++j) wv[j] = MaskedLoad32(w + j * rs * k + i, mask);
    for (int r = 0; r < MT; ++r) {
      const __m512bh xv = MaskedLoad32(x + r * ldx + i, mask);
      for (int j = 0; j < NT; ++j) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], xv, wv[j]);
    }
  }
  for (int r = 0; r < MT; ++r) {
    for (int j = 0; j < NT; ++j) y[r * ldy + j * rs] = _mm512_reduce_add_ps(acc[r][j]);
  }
}

// ---- AVX2: 8 floats a vector; 16 registers hold 2 x 4 accumulators and the loads.

#define PAD_AVX2 __attribute__((target("avx2,fma")))

// bfloat16 is the top half of a float32: widen and shift, exactly.
PAD_AVX2 inline __m256 Widen8(__m128i bf16) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(bf16), 16));
}
PAD_AVX2 inline float Sum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
// 8 activations as float32, and back.
PAD_AVX2 inline __m256 LoadAct8(const float* p) { return _mm256_loadu_ps(p); }
PAD_AVX2 inline __m256 LoadAct8(const uint16_t* p) {
  return Widen8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
// As ToBf16: round to nearest even, NaN kept; the 32-bit lanes hold values below 2^16, so packing is exact.
PAD_AVX2 inline __m128i ToBf16x8(__m256 v) {
  const __m256i bits = _mm256_castps_si256(v);
  const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
  __m256i rounded =
      _mm256_srli_epi32(_mm256_add_epi32(bits, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7fff))), 16);
  const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  rounded = _mm256_blendv_epi8(rounded, _mm256_set1_epi32(0x7fc0), nan);
  return _mm_packus_epi32(_mm256_castsi256_si128(rounded), _mm256_extracti128_si256(rounded, 1));
}
PAD_AVX2 inline void StoreAct8(float* p, __m256 v) { _mm256_storeu_ps(p, v); }
PAD_AVX2 inline void StoreAct8(uint16_t* p, __m256 v) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), ToBf16x8(v));
}
PAD_AVX2 inline __m256 RoundAct8(const float*, __m256 v) { return v; }
PAD_AVX2 inline __m256 RoundAct8(const uint16_t*, __m256 v) { return Widen8(ToBf16x8(v)); }
template <int MT, int NT>
PAD_AVX2 void TileAvx2(const float* x, int64_t ldx, const float* w, int64_t rs, const float*, int64_t k,
                       float* y, int64_t ldy) {
  __m256 acc[MT][NT];
  for (int r = 0; r < MT; ++r) {
    for (int j = 0; j < NT; ++j) acc[r][j] = _mm256_setzero_ps();
  }
  int64_t i = 0;
  for (; i + 8 <= k; i += 8) {
    __m256 wv[NT];
    for (int j = 0; j < NT; ++j) wv[j] = _mm256_loadu_ps(w + j * rs * k + i);
    for (int r = 0; r < MT; ++r) {
      const __m256 xv = _mm256_loadu_ps(x + r * ldx + i);
      for (int j = 0; j < NT; ++j) acc[r][j] = _mm256_fmadd_ps(xv, wv[j], acc[r][j]);
    }
  }
  for (int r = 0; r < MT; ++r) {
    for (int j = 0; j < NT; ++j) {
      float sum = Sum8(acc[r][j]);
      for (int64_t t = i; t < k; ++t) sum += x[r * ldx + t] * w[j * rs * k + t];
      y[r * ldy + j * rs] = sum;
    }
  }
}

// bfloat16 w against float32 x, never widened into a buffer: 16 values of a row load as one vector whose
// 32-bit lanes each hold a pair of neighbours along k; shifted left by 16 they are the even values as
// float32, with their low halves cleared the odd ones. x comes with each 16 values' even and odd halves apart
// (SplitPairs), so that the two multiply their own halves: 3 instructions for 16 weights, where widening
// them took 4 and, for more rows of x than a tile, a store and a load back for each tile of x (1.3-1.6x the
// speed at 4-16 rows, bench_linear on AVX2). Both halves go into one sum.
template <int MT, int NT>
PAD_AVX2 void TileAvx2Pairs(const float* x, int64_t ldx, const uint16_t* w, int64_t rs, const float*,
                            int64_t k, float* y, int64_t ldy) {
  __m256 acc[MT][NT];
  for (int r = 0; r < MT; ++r) {
    for (int j = 0; j < NT; ++j) acc[r][j] = _mm256_setzero_ps();
  }
  const __m256i high = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
  int64_t i = 0;
  for (; i + 16 <= k; i += 16) {
    __m256 even_x[MT], odd_x[MT];
    for (int r = 0; r < MT; ++r) {
      even_x[r] = _mm256_loadu_ps(x + r * ldx + i);
      odd_x[r] = _mm256_loadu_ps(x + r * ldx + i + 8);
    }
    for (int j = 0; j < NT; ++j) {
      const __m256i pairs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + j * rs * k + i));
      const __m256 even = _mm256_castsi256_ps(_mm256_slli_epi32(pairs, 16));
      const __m256 odd = _mm256_castsi256_ps(_mm256_and_si256(pairs, high));
      for (int r = 0; r < MT; ++r) {
        acc[r][j] = _mm256_fmadd_ps(even_x[r], even, acc[r][j]);
        acc[r][j] = _mm256_fmadd_ps(odd_x[r], odd, acc[r][j]);
      }
    }
  }
  for (int r = 0; r < MT; ++r) {
    for (int j = 0; j < NT; ++j) {
      float sum = Sum8(acc[r][j]);
      for (int64_t t = i; t < k; ++t) sum += x[r * ldx + t] * FromBf16(w[j * rs * k + t]);
      y[r * ldy + j * rs] = sum;
    }
  }
}

// The same with AVX-512: 32 values of a row a vector.
template <int MT, int NT>
PAD_AVX512 void TileAvx512Pairs(const float* x, int64_t ldx, const uint16_t* w, int64_t rs, const float*,
                                int64_t k, float* y, int64_t ldy) {
  __m512 acc[MT][NT];
  for (int r = 0; r < MT; ++r) {
    for (int j = 0; j < NT; ++j) acc[r][j] = _mm512_setzero_ps();
  }
  const __m512i high = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
  int64_t i = 0;
  for (; i + 32 <= k; i += 32) {
    __m512 even_x[MT], odd_x[MT];
    for (int r = 0; r < MT; ++r) {
      even_x[r] = _mm512_loadu_ps(x + r * ldx + i);
      odd_x[r] = _mm512_loadu_ps(x + r * ldx + i + 16);
    }
    for (int j = 0; j < NT; ++j) {
      const __m512i pairs = _mm512_loadu_si512(w + j * rs * k + i);
      const __m512 even = _mm512_castsi512_ps(_mm512_slli_epi32(pairs, 16));
      const __m512 odd = _mm512_castsi512_ps(_mm512_and_si512(pairs, high));
      for (int r = 0; r < MT; ++r) {
        acc[r][j] = _mm512_fmadd_ps(even_x[r], even, acc[r][j]);
        acc[r][j] = _mm512_fmadd_ps(odd_x[r], odd, acc[r][j]);
      }
    }
  }
  for (int r = 0; r < MT; ++r) {
    for (int j = 0; j < NT; ++j) {
      float sum = _mm512_reduce_add_ps(acc[r][j]);
      for (int64_t t = i; t < k; ++t) sum += x[r * ldx + t] * FromBf16(w[j * rs * k + t]);
      y[r * ldy + j * rs] = sum;
    }
  }
}

// x [m, k] (row stride ldx) into out [m, k] as the pair tiles read it: each 2 * half values as their `half`
// even then their `half` odd ones; the last k % (2 * half) as they are.
void SplitPairs(const float* x, int64_t ldx, int64_t m, int64_t k, int64_t half, float* out) {
  for (int64_t r = 0; r < m; ++r) {
    const float* row = x + r * ldx;
    float* split = out + r * k;
    int64_t i = 0;
    for (; i + 2 * half <= k; i += 2 * half) {
      for (int64_t t = 0; t < half; ++t) {
        split[i + t] = row[i + 2 * t];
        split[i + half + t] = row[i + 2 * t + 1];
      }
    }
    for (; i < k; ++i) split[i] = row[i];
  }
}

// The tile kernels for one kind of x and w: [rows of x in the tile - 1][rows of w: 0 for 1, 1 for 4].
template <typename X, typename W>
struct Tiles {
  using Fn = void (*)(const X*, int64_t, const W*, int64_t, const float*, int64_t, float*, int64_t);
  Fn fn[4][2];
  int max_mt;
};

Tiles<float, float> FloatTiles(CpuIsa isa) {
  if (isa >= CpuIsa::kAvx512) {
    return {{{TileAvx512<1, 1>, TileAvx512<1, 4>},
             {TileAvx512<2, 1>, TileAvx512<2, 4>},
             {TileAvx512<3, 1>, TileAvx512<3, 4>},
             {TileAvx512<4, 1>, TileAvx512<4, 4>}},
            4};
  }
  return {{{TileAvx2<1, 1>, TileAvx2<1, 4>}, {TileAvx2<2, 1>, TileAvx2<2, 4>}}, 2};
}

Tiles<float, uint16_t> Avx2PairTiles() {
  return {{{TileAvx2Pairs<1, 1>, TileAvx2Pairs<1, 4>}, {TileAvx2Pairs<2, 1>, TileAvx2Pairs<2, 4>}}, 2};
}
Tiles<float, uint16_t> Avx512PairTiles() {
  return {{{TileAvx512Pairs<1, 1>, TileAvx512Pairs<1, 4>},
           {TileAvx512Pairs<2, 1>, TileAvx512Pairs<2, 4>},
           {TileAvx512Pairs<3, 1>, TileAvx512Pairs<3, 4>},
           {TileAvx512Pairs<4, 1>, TileAvx512Pairs<4, 4>}},
          4};
}

// ---- int8 w against int16 x: x is quantized in the weights' groups of kInt8Group values, each to int16 with
// its own float32 scale, so that a group's 32 products are exact integer multiply-adds (vpmaddwd: 16 products
// a vector with AVX2, each neighbouring pair's sum in one int32 lane) and only the group's sum is converted
// and scaled. Widening the
// weights to float32 instead (convert, scale, then 8 products a vector) held int8 to float32's speed, at
// 0.73-0.83x llama.cpp's Q8_0 tokens/s at 16 streams on AVX2. llama.cpp quantizes x to int8 (vpmaddubsw, 32
// products a vector), as fast here but with 127 steps a group: SmolLM2's greedy answers left float32's after
// 8% of their tokens, against 67% for int16's 32767 steps (bench_int8_accuracy, EXPERIMENTS.md).

// x quantized for the int8 products, row r at x + r * ldx: its k int16 values, then its k / kInt8Group
// float32 scales (2 int16 each), value i standing for values[i] * scales[i / kInt8Group].
inline int64_t QuantizedRowLength(int64_t k) { return k + k / kInt8Group * 2; }
inline const float* QuantizedScales(const int16_t* row, int64_t k) {
  return reinterpret_cast<const float*>(row + k);
}

// x [m, k] (row stride ldx) -> out [m, QuantizedRowLength(k)]: a group's scale is its largest magnitude /
// 32767 and its values x * (1 / scale) rounded to nearest even. A group with a NaN gets a NaN scale, and one
// with an infinity an infinite scale and zero values, so that the products are NaN as float32's would be.
// REQUIRES: k % kInt8Group == 0.
PAD_AVX2 void QuantizeRows(const float* x, int64_t ldx, int64_t m, int64_t k, int16_t* out) {
  const __m256 sign_bit = _mm256_set1_ps(-0.0f);
  for (int64_t r = 0; r < m; ++r) {
    int16_t* values = out + r * QuantizedRowLength(k);
    auto* scales = reinterpret_cast<float*>(values + k);
    for (int64_t g = 0; g < k / kInt8Group; ++g) {
      const float* p = x + r * ldx + g * kInt8Group;
      __m256 v[4], largest = _mm256_setzero_ps(), nan = _mm256_setzero_ps();
      for (int t = 0; t < 4; ++t) {
        v[t] = _mm256_loadu_ps(p + 8 * t);
        largest = _mm256_max_ps(largest, _mm256_andnot_ps(sign_bit, v[t]));  // drops NaNs
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(v[t], v[t], _CMP_UNORD_Q));
      }
      __m128 l = _mm_max_ps(_mm256_castps256_ps128(largest), _mm256_extractf128_ps(largest, 1));
      l = _mm_max_ps(l, _mm_movehl_ps(l, l));
      l = _mm_max_ss(l, _mm_movehdup_ps(l));
      const float scale = _mm256_movemask_ps(nan) != 0 ? std::nanf("") : _mm_cvtss_f32(l) / 32767.0f;
      const __m256 inverse = _mm256_set1_ps(scale != 0.0f ? 1.0f / scale : 0.0f);
      scales[g] = scale;
      for (int t = 0; t < 4; t += 2) {
        // The pack interleaves 128-bit lanes; the permute puts them back in order.
        const __m256i packed = _mm256_packs_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(v[t], inverse)),
                                                  _mm256_cvtps_epi32(_mm256_mul_ps(v[t + 1], inverse)));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(values + g * kInt8Group + 8 * t),
                            _mm256_permute4x64_epi64(packed, 0xd8));
      }
    }
  }
}

// MT rows of x against NT rows of w, a group at a time: w's group widened to int16 once for the MT rows,
// each row's products summed to 8 int32 (vpmaddwd, then the two halves added), converted, scaled by w's and
// x's scales of the group and added to 8 float32 accumulators. Every output adds its groups in the same
// order in every tile shape.
template <int MT, int NT>
PAD_AVX2 void TileAvx2Int8(const int16_t* x, int64_t ldx, const int8_t* w, int64_t rs, const float* scales,
                           int64_t k, float* y, int64_t ldy) {
  const int64_t groups = k / kInt8Group;
  if constexpr (MT > 1 && NT == 4) {
    // 8 accumulators and 8 widened halves of w would fill AVX2's 16 registers: two tiles of 2 rows of w.
    TileAvx2Int8<MT, 2>(x, ldx, w, rs, scales, k, y, ldy);
    TileAvx2Int8<MT, 2>(x, ldx, w + 2 * rs * k, rs, scales + 2 * rs * groups, k, y + 2 * rs, ldy);
    return;
  }
  __m256 acc[MT][NT];
  for (int r = 0; r < MT; ++r) {
    for (int j = 0; j < NT; ++j) acc[r][j] = _mm256_setzero_ps();
  }
  for (int64_t g = 0; g < groups; ++g) {
    __m256i low[NT], high[NT];  // w's group as int16, values 0-15 and 16-31
    for (int j = 0; j < NT; ++j) {
      const __m256i wv =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + j * rs * k + g * kInt8Group));
      low[j] = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(wv));
      high[j] = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(wv, 1));
    }
    for (int r = 0; r < MT; ++r) {
      const int16_t* row = x + r * ldx;
      const __m256i x_low = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + g * kInt8Group));
      const __m256i x_high = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + g * kInt8Group + 16));
      const __m256 x_scale = _mm256_set1_ps(QuantizedScales(row, k)[g]);
      for (int j = 0; j < NT; ++j) {
        const __m256i sums =
            _mm256_add_epi32(_mm256_madd_epi16(x_low, low[j]), _mm256_madd_epi16(x_high, high[j]));
        const __m256 w_scale = _mm256_set1_ps(scales[j * rs * groups + g]);
        acc[r][j] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(sums), w_scale), x_scale, acc[r][j]);
      }
    }
  }
  for (int r = 0; r < MT; ++r) {
    for (int j = 0; j < NT; ++j) y[r * ldy + j * rs] = Sum8(acc[r][j]);
  }
}

// Two groups' scales a and b to the lanes of their sums in TileAvx512Int8: a in lanes 0-7, b in 8-15.
PAD_AVX512 inline __m512 TwoScales(float a, float b) {
  return _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(a), _mm512_set1_ps(b));
}
// The 256-bit halves a and b as one vector.
PAD_AVX512 inline __m512i Join(__m256i a, __m256i b) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
}

// The same with AVX-512, two groups at a time so that one conversion and scaling serves both: each vector
// holds 16 values of each group ([first's 0-15 | second's 0-15], then the 16-31s), so that vpmaddwd sums
// the first group's products into lanes 0-7 and the second's into 8-15. An odd last group goes alone, in the
// low lanes. Every output adds its groups in the same order in every tile shape.
template <int MT, int NT>
PAD_AVX512 void TileAvx512Int8(const int16_t* x, int64_t ldx, const int8_t* w, int64_t rs,
                               const float* scales, int64_t k, float* y, int64_t ldy) {
  const int64_t groups = k / kInt8Group;
  __m512 acc[MT][NT];
  for (int r = 0; r < MT; ++r) {
    for (int j = 0; j < NT; ++j) acc[r][j] = _mm512_setzero_ps();
  }
  // Groups g and g + 1, or g alone (`two` false: the high lanes zero).
  const auto add = [&](int64_t g, bool two) PAD_AVX512 {
    __m512i low[NT], high[NT];  // w's values 0-15 and 16-31 of both groups, as int16
    __m512 w_scale[NT];
    for (int j = 0; j < NT; ++j) {
      const int8_t* p = w + j * rs * k + g * kInt8Group;
      const __m256i first = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
      const __m256i second =
          two ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + kInt8Group)) : _mm256_setzero_si256();
      low[j] = _mm512_cvtepi8_epi16(_mm256_permute2x128_si256(first, second, 0x20));
      high[j] = _mm512_cvtepi8_epi16(_mm256_permute2x128_si256(first, second, 0x31));
      const float* s = scales + j * rs * groups + g;
      w_scale[j] = TwoScales(s[0], two ? s[1] : 0.0f);
    }
    const auto load = [](const int16_t* p)
                          PAD_AVX512 { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); };
    const __m256i zero = _mm256_setzero_si256();
    for (int r = 0; r < MT; ++r) {
      const int16_t* row = x + r * ldx + g * kInt8Group;
      const __m512i x_low = Join(load(row), two ? load(row + kInt8Group) : zero);
      const __m512i x_high = Join(load(row + 16), two ? load(row + kInt8Group + 16) : zero);
      const float* s = QuantizedScales(x + r * ldx, k) + g;
      const __m512 x_scale = TwoScales(s[0], two ? s[1] : 0.0f);
      for (int j = 0; j < NT; ++j) {
        const __m512i sums =
            _mm512_add_epi32(_mm512_madd_epi16(x_low, low[j]), _mm512_madd_epi16(x_high, high[j]));
        acc[r][j] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(sums), w_scale[j]), x_scale, acc[r][j]);
      }
    }
  };
  int64_t g = 0;
  for (; g + 2 <= groups; g += 2) add(g, true);
  if (g < groups) add(g, false);
  for (int r = 0; r < MT; ++r) {
    for (int j = 0; j < NT; ++j) y[r * ldy + j * rs] = _mm512_reduce_add_ps(acc[r][j]);
  }
}

Tiles<int16_t, int8_t> Int8Tiles(CpuIsa isa) {
  if (isa >= CpuIsa::kAvx512) {
    return {{{TileAvx512Int8<1, 1>, TileAvx512Int8<1, 4>},
             {TileAvx512Int8<2, 1>, TileAvx512Int8<2, 4>},
             {TileAvx512Int8<3, 1>, TileAvx512Int8<3, 4>},
             {TileAvx512Int8<4, 1>, TileAvx512Int8<4, 4>}},
            4};
  }
  return {{{TileAvx2Int8<1, 1>, TileAvx2Int8<1, 4>},
           {TileAvx2Int8<2, 1>, TileAvx2Int8<2, 4>},
           {TileAvx2Int8<3, 1>, TileAvx2Int8<3, 4>},
           {TileAvx2Int8<4, 1>, TileAvx2Int8<4, 4>}},
          4};
}

// Rows [0, n) of w against every row of x: tiles of 4 rows of w (then single rows), each against the rows of
// x in tiles of max_mt (then the remainder), so that the w tile is read from memory once and from cache for
// the other row tiles. Tile t takes rows t, t + q, t + 2q and t + 3q (q = n / 4), so that w is read as 4
// runs of consecutive rows: long sequential streams, which the hardware prefetchers follow. A tile of 4
// neighbouring rows would read 4 streams of one row each, restarting at every tile; one decode row ran at
// 0.55-0.85x the tokens/s (bench_generate).
template <typename X, typename W>
void RunRows(const Tiles<X, W>& tiles, const X* x, int64_t ldx, int64_t m, const W* w, const float* scales,
             int64_t k, int64_t n, float* y, int64_t ldy) {
  const int64_t groups = k / kInt8Group, q = n / 4;
  // The tile whose first row of w is j, its rows rs apart: 4 rows (wide) or 1.
  const auto run_tile = [&](int64_t j, int64_t rs, bool wide) {
    for (int64_t r = 0; r < m;) {
      const int64_t mt = std::min<int64_t>(tiles.max_mt, m - r);
      tiles.fn[mt - 1][wide](x + r * ldx, ldx, w + j * k, rs, RowScales(scales, j, groups), k,
                             y + r * ldy + j, ldy);
      r += mt;
    }
  };
  for (int64_t t = 0; t < q; ++t) run_tile(t, q, true);
  for (int64_t j = 4 * q; j < n; ++j) run_tile(j, 1, false);
}

// Output columns [n0, n1) from their sums [m, n1 - n0] (row stride lds), as CpuOutput says.
template <typename T>
void FinishScalar(const CpuOutput& out, const float* sums, int64_t lds, int64_t m, int64_t n0, int64_t n1) {
  T* y = static_cast<T*>(out.y);
  const auto* bias = static_cast<const T*>(out.bias);
  const auto* residual = static_cast<const T*>(out.residual);
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t j = n0; j < n1; ++j) {
      float v = Act<T>::Round(sums[r * lds + j - n0] + (bias == nullptr ? 0.0f : Act<T>::Load(bias, j)));
      if (residual != nullptr) v += Act<T>::Load(residual, r * out.ldy + j);
      Act<T>::Store(y, r * out.ldy + j, v);
    }
  }
}
template <typename T>
PAD_AVX512 void FinishAvx512(const CpuOutput& out, const float* sums, int64_t lds, int64_t m, int64_t n0,
                             int64_t n1) {
  T* y = static_cast<T*>(out.y);
  const auto* bias = static_cast<const T*>(out.bias);
  const auto* residual = static_cast<const T*>(out.residual);
  const int64_t vector_end = n0 + (n1 - n0) / 16 * 16;
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t j = n0; j < vector_end; j += 16) {
      __m512 v = _mm512_loadu_ps(sums + r * lds + j - n0);
      if (bias != nullptr) v = _mm512_add_ps(v, LoadAct16(bias + j));
      v = RoundAct16(y, v);
      if (residual != nullptr) v = _mm512_add_ps(LoadAct16(residual + r * out.ldy + j), v);
      StoreAct16(y + r * out.ldy + j, v);
    }
  }
  if (vector_end < n1) FinishScalar<T>(out, sums + vector_end - n0, lds, m, vector_end, n1);
}
template <typename T>
PAD_AVX2 void FinishAvx2(const CpuOutput& out, const float* sums, int64_t lds, int64_t m, int64_t n0,
                         int64_t n1) {
  T* y = static_cast<T*>(out.y);
  const auto* bias = static_cast<const T*>(out.bias);
  const auto* residual = static_cast<const T*>(out.residual);
  const int64_t vector_end = n0 + (n1 - n0) / 8 * 8;
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t j = n0; j < vector_end; j += 8) {
      __m256 v = _mm256_loadu_ps(sums + r * lds + j - n0);
      if (bias != nullptr) v = _mm256_add_ps(v, LoadAct8(bias + j));
      v = RoundAct8(y, v);
      if (residual != nullptr) v = _mm256_add_ps(LoadAct8(residual + r * out.ldy + j), v);
      StoreAct8(y + r * out.ldy + j, v);
    }
  }
  if (vector_end < n1) FinishScalar<T>(out, sums + vector_end - n0, lds, m, vector_end, n1);
}
void Finish(CpuIsa isa, const CpuOutput& out, const float* sums, int64_t lds, int64_t m, int64_t n0,
            int64_t n1) {
  const bool f32 = out.format == ActivationFormat::kFloat32;
  if (isa >= CpuIsa::kAvx512) {
    f32 ? FinishAvx512<float>(out, sums, lds, m, n0, n1) : FinishAvx512<uint16_t>(out, sums, lds, m, n0, n1);
  } else {
    f32 ? FinishAvx2<float>(out, sums, lds, m, n0, n1) : FinishAvx2<uint16_t>(out, sums, lds, m, n0, n1);
  }
}

// LibTorch's own intra-op threads (OpenMP): a second pool beside them would put three spinning threads on
// two cores between a kernel and the next LibTorch operation. The threads take chunks of rows of w from a
// shared counter rather than a fixed half each, so that a thread slowed by its neighbours (another process,
// the memory) does not keep the other waiting at the end of every product. Every thread has the same number
// of chunks, so that none is left with one more at the end. A chunk's sums stay in the thread's cache until
// Finish writes them out: chunks of about 256 rows for up to 4 rows of x (longer streams for
// RunRows, 1.05-1.1x the tokens/s of 64 at one row), 64 above.
template <typename X, typename W>
void RunThreads(CpuIsa isa, const Tiles<X, W>& tiles, const X* x, int64_t ldx, int64_t m, const CpuWeight& w,
                const CpuOutput& out) {
  const auto ceil_div = [](int64_t a, int64_t b) { return (a + b - 1) / b; };
  const int64_t threads = at::get_num_threads(), groups = w.k / kInt8Group;
  const int64_t chunks = threads * ceil_div(w.n, threads * (m <= 4 ? 256 : 64));
  const int64_t chunk_rows = ceil_div(ceil_div(w.n, chunks), 4) * 4;
  const auto* data = static_cast<const W*>(w.data);
  std::atomic<int64_t> next{0};
  at::parallel_for(0, std::min(threads, chunks), /*grain_size=*/1, [&](int64_t, int64_t) {
    thread_local std::vector<float> sums;
    sums.resize(m * chunk_rows);  // [m, chunk_rows]
    for (int64_t c = next++; c < chunks; c = next++) {
      const int64_t n0 = c * chunk_rows, n1 = std::min(w.n, n0 + chunk_rows);
      if (n0 >= n1) break;
      RunRows(tiles, x, ldx, m, data + n0 * w.k, RowScales(w.scales, n0, groups), w.k, n1 - n0, sums.data(),
              chunk_rows);
      Finish(isa, out, sums.data(), chunk_rows, m, n0, n1);
    }
  });
}

// `out` from its row r on.
CpuOutput OutputRows(const CpuOutput& out, int64_t r) {
  const int64_t offset = r * out.ldy * (out.format == ActivationFormat::kFloat32 ? 4 : 2);  // bytes
  CpuOutput rows = out;
  rows.y = static_cast<char*>(out.y) + offset;
  if (out.residual != nullptr) rows.residual = static_cast<const char*>(out.residual) + offset;
  return rows;
}

}  // namespace

void CpuLinear(CpuIsa isa, const float* x, int64_t ldx, int64_t m, const CpuWeight& w, const CpuOutput& out) {
  switch (w.format) {
    case WeightFormat::kFloat32:
      return RunThreads(isa, FloatTiles(isa), x, ldx, m, w, out);
    case WeightFormat::kBFloat16: {
      const bool avx512 = isa >= CpuIsa::kAvx512;
      // Blocks of rows of x, so that a block stays in cache while the threads sweep w (from L3 after the
      // first).
      constexpr int64_t kBlockRows = 128;
      thread_local std::vector<float> split;
      split.resize(std::min(m, kBlockRows) * w.k);  // [rows of the block, k]
      for (int64_t r = 0; r < m; r += kBlockRows) {
        const int64_t rows = std::min(kBlockRows, m - r);
        SplitPairs(x + r * ldx, ldx, rows, w.k, avx512 ? 16 : 8, split.data());
        RunThreads(isa, avx512 ? Avx512PairTiles() : Avx2PairTiles(), split.data(), w.k, rows, w,
                   OutputRows(out, r));
      }
      return;
    }
    case WeightFormat::kInt8: {
      thread_local std::vector<int16_t> quantized;
      quantized.resize(m * QuantizedRowLength(w.k));  // [m, QuantizedRowLength(k)]
      QuantizeRows(x, ldx, m, w.k, quantized.data());
      return RunThreads(isa, Int8Tiles(isa), quantized.data(), QuantizedRowLength(w.k), m, w, out);
    }
  }
}

void QuantizeForInt8(CpuIsa isa, const float* x, int64_t ldx, int64_t m, int64_t k, float* out) {
  if (isa < CpuIsa::kAvx2) std::abort();  // a caller's bug: see the header (one AVX2 pass for every ISA)
  std::vector<int16_t> quantized(QuantizedRowLength(k));  // [QuantizedRowLength(k)]: one row
  const float* scales = QuantizedScales(quantized.data(), k);
  for (int64_t r = 0; r < m; ++r) {
    QuantizeRows(x + r * ldx, ldx, 1, k, quantized.data());
    for (int64_t i = 0; i < k; ++i)
      out[r * k + i] = static_cast<float>(quantized[i]) * scales[i / kInt8Group];
  }
}

void CpuLinearBf16(CpuIsa isa, const uint16_t* x, int64_t ldx, int64_t m, const CpuWeight& w,
                   const CpuOutput& out) {
  const Tiles<uint16_t, uint16_t> tiles = {{{TileAvx512Bf16<1, 1>, TileAvx512Bf16<1, 4>},
                                            {TileAvx512Bf16<2, 1>, TileAvx512Bf16<2, 4>},
                                            {TileAvx512Bf16<3, 1>, TileAvx512Bf16<3, 4>},
                                            {TileAvx512Bf16<4, 1>, TileAvx512Bf16<4, 4>}},
                                           4};
  RunThreads(isa, tiles, x, ldx, m, w, out);
}

}  // namespace pad

// ---- The small operations of a decode step.

namespace pad {
namespace {

template <typename T>
void RmsNormRows(const T* x, int64_t rows, int64_t n, const T* weight, float eps, T* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = x + r * n;
    float sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += Act<T>::Load(row, i) * Act<T>::Load(row, i);
    const float inverse = 1.0f / std::sqrt(sum / static_cast<float>(n) + eps);
    for (int64_t i = 0; i < n; ++i) {
      const float normed = Act<T>::Round(Act<T>::Load(row, i) * inverse);
      Act<T>::Store(out + r * n, i, Act<T>::Load(weight, i) * normed);
    }
  }
}

// One head [head_dim] in place: x * cos + rotate_half(x) * sin, rotate_half(x) = [-x2, x1].
template <typename T>
void RotateHead(T* head, const T* cos, const T* sin, int64_t head_dim) {
  const int64_t half = head_dim / 2;
  for (int64_t i = 0; i < half; ++i) {
    const float x1 = Act<T>::Load(head, i), x2 = Act<T>::Load(head, i + half);
    const float c1 = Act<T>::Load(cos, i), c2 = Act<T>::Load(cos, i + half);
    const float s1 = Act<T>::Load(sin, i), s2 = Act<T>::Load(sin, i + half);
    Act<T>::Store(head, i, Act<T>::Round(x1 * c1) + Act<T>::Round(-x2 * s1));
    Act<T>::Store(head, i + half, Act<T>::Round(x2 * c2) + Act<T>::Round(x1 * s2));
  }
}

template <typename T>
void RopeAndCacheRows(const RopeAndCache& shape, T* qkv, const T* cos, const T* sin, T* cache_k, T* cache_v) {
  const int64_t d = shape.head_dim, width = (shape.heads + 2 * shape.kv_heads) * d;
  for (int64_t t = 0; t < shape.tokens; ++t) {
    T* row = qkv + t * width;
    for (int64_t h = 0; h < shape.heads + shape.kv_heads; ++h)
      RotateHead(row + h * d, cos + t * d, sin + t * d, d);
    for (int64_t h = 0; h < shape.kv_heads; ++h) {
      const int64_t at = (shape.cache_rows[t] + h * shape.block_size) * d;
      std::memcpy(cache_k + at, row + (shape.heads + h) * d, d * sizeof(T));
      std::memcpy(cache_v + at, row + (shape.heads + shape.kv_heads + h) * d, d * sizeof(T));
    }
  }
}

// The keys (or values) a group of query heads reads: position t at data + blocks[t / block_size] *
// block_stride + (t % block_size) * token_stride. The kernels walk it block by block (PAGED_FOR: a loop,
// since a lambda would not inherit their target attributes).
template <typename T>
struct PagedHead {
  const T* data;  // the cache, offset to the head
  const int32_t* blocks;
  int64_t block_size, block_stride, token_stride;
};

// Where `head`'s block after block `b` starts, or block b's `start` when b is the last before `length`: the
// block to prefetch while reading block b (the hardware prefetcher stops at each jump between blocks).
template <typename T>
inline const T* NextBlock(const PagedHead<T>& head, int64_t b, int64_t length, const T* start) {
  if ((b + 1) * head.block_size >= length) return start;
  return head.data + head.blocks[b + 1] * head.block_stride;
}

// Asks one position's row into the cache; true, to sit in a loop's condition.
template <typename T>
inline bool PrefetchRow(const T* row, int64_t token_stride) {
  const char* at = reinterpret_cast<const char*>(row);
  for (int64_t byte = 0; byte < token_stride * static_cast<int64_t>(sizeof(T)); byte += 64)
    __builtin_prefetch(at + byte);
  return true;
}

// for (t in [0, length)) with `pointer` at position t of `head`. Each step also asks for the same position
// of the next block (ahead_), one block ahead.
#define PAGED_FOR(head, length, t, pointer)                                             \
  for (int64_t t = 0, block_ = 0, end_ = 0; t < (length); ++block_)                     \
    for (const T *pointer = (end_ = std::min((length), t + (head).block_size),          \
                            (head).data + (head).blocks[block_] * (head).block_stride), \
                 *ahead_ = NextBlock((head), block_, (length), pointer);                \
         t < end_ && PrefetchRow(ahead_, (head).token_stride);                          \
         ++t, pointer += (head).token_stride, ahead_ += (head).token_stride)

// ---- AVX-512 versions of the decode step's attention and SiLU, where a scalar loop would cost more than
// the products around it.

// The value pass's accumulators: G query heads by C vectors, with G broadcast weights and the value vector
// beside them, in `registers`. C is the largest divisor of V that fits; a wide head runs in chunks of C.
constexpr int ValueChunk(int v, int g, int registers) {
  for (int c = v; c > 1; --c) {
    if (v % c == 0 && g * c + g + 1 <= registers) return c;
  }
  return 1;
}

// G query heads (q [G, 16 * V], consecutive) against the `length` keys and values of 16 * V each they share:
// each key and value is read, and widened, once for the group. scores [G, length] is scratch.
template <int V, int G, typename T>
PAD_AVX512 void AttendGroup(const T* q, const PagedHead<T>& keys, const PagedHead<T>& values, int64_t length,
                            float* scores, T* out) {
  constexpr int64_t kDim = 16 * V;
  constexpr int kKeyChunk = V < 8 ? V : 8, kValueChunk = ValueChunk(V, G, 32);
  const float scale = 1.0f / std::sqrt(static_cast<float>(kDim));
  alignas(64) float qf[G][kDim];
  for (int g = 0; g < G; ++g) {
    for (int v = 0; v < V; ++v) _mm512_store_ps(qf[g] + 16 * v, LoadAct16(q + g * kDim + 16 * v));
  }
  float max_score[G];
  std::fill(max_score, max_score + G, -INFINITY);
  PAGED_FOR(keys, length, t, key) {
    __m512 dot[G];
    for (int v0 = 0; v0 < V; v0 += kKeyChunk) {
      __m512 k[kKeyChunk];
      for (int j = 0; j < kKeyChunk; ++j) k[j] = LoadAct16(key + 16 * (v0 + j));
      for (int g = 0; g < G; ++g) {
        for (int j = 0; j < kKeyChunk; ++j) {
          const __m512 qv = _mm512_load_ps(qf[g] + 16 * (v0 + j));
          dot[g] = v0 + j == 0 ? _mm512_mul_ps(qv, k[j]) : _mm512_fmadd_ps(qv, k[j], dot[g]);
        }
      }
    }
    for (int g = 0; g < G; ++g) {
      const float score = _mm512_reduce_add_ps(dot[g]) * scale;
      scores[g * length + t] = score;
      max_score[g] = std::max(max_score[g], score);
    }
  }
  float inverse[G];
  for (int g = 0; g < G; ++g) {
    float* row = scores + g * length;
    const __m512 max_v = _mm512_set1_ps(max_score[g]);
    __m512 sum = _mm512_setzero_ps();
    for (int64_t t = 0; t < length; t += 16) {
      const __mmask16 mask = length - t >= 16 ? 0xffff : static_cast<__mmask16>((1u << (length - t)) - 1);
      const __m512 e = Exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, row + t), max_v));
      _mm512_mask_storeu_ps(row + t, mask, e);
      sum = _mm512_mask_add_ps(sum, mask, sum, e);
    }
    inverse[g] = 1.0f / _mm512_reduce_add_ps(sum);
  }
  // Block by block, the accumulators of kValueChunk vectors at a time in registers, all of them in acc
  // between blocks: one block's values stay in the cache for the next chunk.
  alignas(64) float acc[G][kDim] = {};
  for (int64_t t0 = 0, b = 0; t0 < length; t0 += values.block_size, ++b) {
    const T* block = values.data + values.blocks[b] * values.block_stride;
    const T* next = NextBlock(values, b, length, block);
    const int64_t n = std::min(values.block_size, length - t0);
    for (int v0 = 0; v0 < V; v0 += kValueChunk) {
      __m512 a[G][kValueChunk];
      for (int g = 0; g < G; ++g) {
        for (int j = 0; j < kValueChunk; ++j) a[g][j] = _mm512_load_ps(acc[g] + 16 * (v0 + j));
      }
      for (int64_t i = 0; i < n; ++i) {
        if (v0 == 0) PrefetchRow(next + i * values.token_stride, values.token_stride);
        const T* value = block + i * values.token_stride;
        __m512 p[G];
        for (int g = 0; g < G; ++g) p[g] = _mm512_set1_ps(scores[g * length + t0 + i]);
        for (int j = 0; j < kValueChunk; ++j) {
          const __m512 x = LoadAct16(value + 16 * (v0 + j));
          for (int g = 0; g < G; ++g) a[g][j] = _mm512_fmadd_ps(p[g], x, a[g][j]);
        }
      }
      for (int g = 0; g < G; ++g) {
        for (int j = 0; j < kValueChunk; ++j) _mm512_store_ps(acc[g] + 16 * (v0 + j), a[g][j]);
      }
    }
  }
  for (int g = 0; g < G; ++g) {
    for (int v = 0; v < V; ++v)
      StoreAct16(out + g * kDim + 16 * v,
                 _mm512_mul_ps(_mm512_load_ps(acc[g] + 16 * v), _mm512_set1_ps(inverse[g])));
  }
}

// ---- The same with AVX2: 8 floats a vector.

// Exp16's polynomial on 8 floats, 2^n built in the exponent bits (n is in [-126, 128] after the clamp; at
// -126, e^-87.3, the result flushes to 0).
PAD_AVX2 inline __m256 Exp8(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.336544f)), _mm256_set1_ps(88.722839f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  for (const float c :
       {1.3981999507e-3f, 8.3334519073e-3f, 4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f})
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  // 2^n as 2^(n - 1) * 2, so that n = 128 (e^88.7, just below FLT_MAX) does not make an infinite exponent.
  const __m256i half = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(126)), 23);
  return _mm256_mul_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(half)), _mm256_set1_ps(2.0f));
}

// AttendGroup with AVX2: G query heads against keys and values of 8 * V each.
template <int V, int G, typename T>
PAD_AVX2 void AttendGroup8(const T* q, const PagedHead<T>& keys, const PagedHead<T>& values, int64_t length,
                           float* scores, T* out) {
  constexpr int64_t kDim = 8 * V;
  constexpr int kKeyChunk = 8, kValueChunk = ValueChunk(V, G, 16);
  const float scale = 1.0f / std::sqrt(static_cast<float>(kDim));
  alignas(32) float qf[G][kDim];
  for (int g = 0; g < G; ++g) {
    for (int v = 0; v < V; ++v) _mm256_store_ps(qf[g] + 8 * v, LoadAct8(q + g * kDim + 8 * v));
  }
  float max_score[G];
  std::fill(max_score, max_score + G, -INFINITY);
  PAGED_FOR(keys, length, t, key) {
    __m256 dot[G];
    for (int v0 = 0; v0 < V; v0 += kKeyChunk) {
      const int n = std::min(kKeyChunk, V - v0);  // 8, or V's remainder (12 = 8 + 4)
      __m256 k[kKeyChunk];
      for (int j = 0; j < n; ++j) k[j] = LoadAct8(key + 8 * (v0 + j));
      for (int g = 0; g < G; ++g) {
        for (int j = 0; j < n; ++j) {
          const __m256 qv = _mm256_load_ps(qf[g] + 8 * (v0 + j));
          dot[g] = v0 + j == 0 ? _mm256_mul_ps(qv, k[j]) : _mm256_fmadd_ps(qv, k[j], dot[g]);
        }
      }
    }
    for (int g = 0; g < G; ++g) {
      const float score = Sum8(dot[g]) * scale;
      scores[g * length + t] = score;
      max_score[g] = std::max(max_score[g], score);
    }
  }
  float inverse[G];
  for (int g = 0; g < G; ++g) {
    float* row = scores + g * length;
    const __m256 max_v = _mm256_set1_ps(max_score[g]);
    __m256 sum = _mm256_setzero_ps();
    float tail_sum = 0.0f;
    int64_t t = 0;
    for (; t + 8 <= length; t += 8) {
      const __m256 e = Exp8(_mm256_sub_ps(_mm256_loadu_ps(row + t), max_v));
      _mm256_storeu_ps(row + t, e);
      sum = _mm256_add_ps(sum, e);
    }
    if (t < length) {  // the tail through a padded vector; its padding lanes are neither stored nor summed
      alignas(32) float tail[8];
      std::fill(tail, tail + 8, max_score[g]);
      std::copy(row + t, row + length, tail);
      const __m256 e = Exp8(_mm256_sub_ps(_mm256_load_ps(tail), max_v));
      _mm256_store_ps(tail, e);
      std::copy(tail, tail + (length - t), row + t);
      for (int64_t i = 0; i < length - t; ++i) tail_sum += tail[i];
    }
    inverse[g] = 1.0f / (Sum8(sum) + tail_sum);
  }
  // Block by block, the accumulators of kValueChunk vectors at a time in registers, all of them in acc
  // between blocks: one block's values stay in the cache for the next chunk.
  alignas(64) float acc[G][kDim] = {};
  for (int64_t t0 = 0, b = 0; t0 < length; t0 += values.block_size, ++b) {
    const T* block = values.data + values.blocks[b] * values.block_stride;
    const T* next = NextBlock(values, b, length, block);
    const int64_t n = std::min(values.block_size, length - t0);
    for (int v0 = 0; v0 < V; v0 += kValueChunk) {
      __m256 a[G][kValueChunk];
      for (int g = 0; g < G; ++g) {
        for (int j = 0; j < kValueChunk; ++j) a[g][j] = _mm256_load_ps(acc[g] + 8 * (v0 + j));
      }
      for (int64_t i = 0; i < n; ++i) {
        if (v0 == 0) PrefetchRow(next + i * values.token_stride, values.token_stride);
        const T* value = block + i * values.token_stride;
        __m256 p[G];
        for (int g = 0; g < G; ++g) p[g] = _mm256_set1_ps(scores[g * length + t0 + i]);
        for (int j = 0; j < kValueChunk; ++j) {
          const __m256 x = LoadAct8(value + 8 * (v0 + j));
          for (int g = 0; g < G; ++g) a[g][j] = _mm256_fmadd_ps(p[g], x, a[g][j]);
        }
      }
      for (int g = 0; g < G; ++g) {
        for (int j = 0; j < kValueChunk; ++j) _mm256_store_ps(acc[g] + 8 * (v0 + j), a[g][j]);
      }
    }
  }
  for (int g = 0; g < G; ++g) {
    for (int v = 0; v < V; ++v)
      StoreAct8(out + g * kDim + 8 * v,
                _mm256_mul_ps(_mm256_load_ps(acc[g] + 8 * v), _mm256_set1_ps(inverse[g])));
  }
}

template <typename T>
PAD_AVX2 void SiluMulRows8(const T* gate_up, int64_t rows, int64_t inter, T* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* gate = gate_up + r * 2 * inter;
    const T* up = gate + inter;
    T* row = out + r * inter;
    int64_t i = 0;
    for (; i + 8 <= inter; i += 8) {
      const __m256 g = LoadAct8(gate + i);
      const __m256 e = Exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
      const __m256 silu = RoundAct8(gate, _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e)));
      StoreAct8(row + i, _mm256_mul_ps(silu, LoadAct8(up + i)));
    }
    for (; i < inter; ++i) {
      const float g = Act<T>::Load(gate, i);
      Act<T>::Store(row, i, Act<T>::Round(g / (1.0f + std::exp(-g))) * Act<T>::Load(up, i));
    }
  }
}

// The attention of a group of query heads sharing a key and value head (AttendGroup, AttendGroup8).
template <typename T>
using AttendFn = void (*)(const T* q, const PagedHead<T>& keys, const PagedHead<T>& values, int64_t length,
                          float* scores, T* out);

// How many query heads one AttendFn call takes: the largest of 4, 3, 2, 1 dividing the group (3 for
// SmolLM2, 4 for Llama-3-8B, 4 + 4 for a group of 8), as many as keep the value pass in registers.
inline int64_t GroupChunk(int64_t group) {
  for (int64_t chunk = 4; chunk > 1; --chunk) {
    if (group % chunk == 0) return chunk;
  }
  return 1;
}

template <typename T>
void PagedAttentionRows(const PagedAttention& s, AttendFn<T> attend, const T* q, const T* cache_k,
                        const T* cache_v, T* out) {
  const int64_t group = s.heads / s.kv_heads, chunk = GroupChunk(group), chunks = s.heads / chunk;
  const int64_t d = s.head_dim;
  const int64_t first_token = s.query_starts[0], tokens = s.query_starts[s.sequences] - first_token;
  std::vector<int64_t> sequence_of(tokens);  // [tokens]
  for (int64_t r = 0; r < s.sequences; ++r) {
    std::fill(sequence_of.begin() + (s.query_starts[r] - first_token),
              sequence_of.begin() + (s.query_starts[r + 1] - first_token), r);
  }
  // One item: a token's `chunk` query heads from h, all reading key and value head h / group.
  at::parallel_for(0, tokens * chunks, /*grain_size=*/1, [&](int64_t first, int64_t last) {
    thread_local std::vector<float> scores;
    for (int64_t item = first; item < last; ++item) {
      const int64_t h = item % chunks * chunk, r = sequence_of[item / chunks],
                    t = first_token + item / chunks;
      // Causal: the last query of the sequence sees every key, each earlier one a key fewer.
      const int64_t length = s.key_lengths[r] - (s.query_starts[r + 1] - 1 - t);
      scores.resize(std::max<size_t>(scores.size(), chunk * length));
      const int32_t* blocks = s.block_tables + r * s.max_blocks;
      const int64_t block_stride = s.kv_heads * s.block_size * d, head = (h / group) * s.block_size * d;
      const PagedHead<T> keys = {cache_k + head, blocks, s.block_size, block_stride, d};
      const PagedHead<T> values = {cache_v + head, blocks, s.block_size, block_stride, d};
      attend(q + t * s.q_stride + h * d, keys, values, length, scores.data(), out + (t * s.heads + h) * d);
    }
  });
}

template <int G, typename T>
AttendFn<T> AttendForGroup(bool avx512, int64_t head_dim) {
  switch (head_dim) {
    case 64:
      return avx512 ? AttendGroup<4, G, T> : AttendGroup8<8, G, T>;
    case 96:
      return avx512 ? AttendGroup<6, G, T> : AttendGroup8<12, G, T>;
    case 128:
      return avx512 ? AttendGroup<8, G, T> : AttendGroup8<16, G, T>;
    case 256:
      return avx512 ? AttendGroup<16, G, T> : AttendGroup8<32, G, T>;
  }
  return nullptr;
}

// The group kernel for an ISA, head size and group chunk; null for a size PagedAttentionSupported refuses.
template <typename T>
AttendFn<T> AttendFor(CpuIsa isa, int64_t head_dim, int64_t chunk) {
  const bool avx512 = isa >= CpuIsa::kAvx512;
  switch (chunk) {
    case 1:
      return AttendForGroup<1, T>(avx512, head_dim);
    case 2:
      return AttendForGroup<2, T>(avx512, head_dim);
    case 3:
      return AttendForGroup<3, T>(avx512, head_dim);
  }
  return AttendForGroup<4, T>(avx512, head_dim);
}

template <typename T>
void PagedAttentionOf(CpuIsa isa, const PagedAttention& s, const void* q, const void* cache_k,
                      const void* cache_v, void* out) {
  PagedAttentionRows(s, AttendFor<T>(isa, s.head_dim, GroupChunk(s.heads / s.kv_heads)),
                     static_cast<const T*>(q), static_cast<const T*>(cache_k), static_cast<const T*>(cache_v),
                     static_cast<T*>(out));
}

template <typename T>
PAD_AVX512 void SiluMulRows(const T* gate_up, int64_t rows, int64_t inter, T* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* gate = gate_up + r * 2 * inter;
    const T* up = gate + inter;
    T* row = out + r * inter;
    int64_t i = 0;
    for (; i + 16 <= inter; i += 16) {
      const __m512 g = LoadAct16(gate + i);
      const __m512 e = Exp16(_mm512_sub_ps(_mm512_setzero_ps(), g));
      const __m512 silu = RoundAct16(gate, _mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e)));
      StoreAct16(row + i, _mm512_mul_ps(silu, LoadAct16(up + i)));
    }
    for (; i < inter; ++i) {
      const float g = Act<T>::Load(gate, i);
      Act<T>::Store(row, i, Act<T>::Round(g / (1.0f + std::exp(-g))) * Act<T>::Load(up, i));
    }
  }
}

}  // namespace

void CpuRmsNorm(ActivationFormat format, const void* x, int64_t rows, int64_t n, const void* weight,
                float eps, void* out) {
  if (format == ActivationFormat::kFloat32) {
    RmsNormRows(static_cast<const float*>(x), rows, n, static_cast<const float*>(weight), eps,
                static_cast<float*>(out));
  } else {
    RmsNormRows(static_cast<const uint16_t*>(x), rows, n, static_cast<const uint16_t*>(weight), eps,
                static_cast<uint16_t*>(out));
  }
}

void CpuRopeAndCache(ActivationFormat format, const RopeAndCache& shape, void* qkv, const void* cos,
                     const void* sin, void* cache_k, void* cache_v) {
  if (format == ActivationFormat::kFloat32) {
    RopeAndCacheRows(shape, static_cast<float*>(qkv), static_cast<const float*>(cos),
                     static_cast<const float*>(sin), static_cast<float*>(cache_k),
                     static_cast<float*>(cache_v));
  } else {
    RopeAndCacheRows(shape, static_cast<uint16_t*>(qkv), static_cast<const uint16_t*>(cos),
                     static_cast<const uint16_t*>(sin), static_cast<uint16_t*>(cache_k),
                     static_cast<uint16_t*>(cache_v));
  }
}

bool PagedAttentionSupported(CpuIsa isa, int64_t head_dim) {
  return isa >= CpuIsa::kAvx2 && (head_dim == 64 || head_dim == 96 || head_dim == 128 || head_dim == 256);
}

void CpuPagedAttention(CpuIsa isa, ActivationFormat format, const PagedAttention& shape, const void* q,
                       const void* cache_k, const void* cache_v, void* out) {
  if (!PagedAttentionSupported(isa, shape.head_dim)) std::abort();  // a caller's bug: see the header
  if (format == ActivationFormat::kFloat32) {
    PagedAttentionOf<float>(isa, shape, q, cache_k, cache_v, out);
  } else {
    PagedAttentionOf<uint16_t>(isa, shape, q, cache_k, cache_v, out);
  }
}

void CpuSiluMul(CpuIsa isa, ActivationFormat format, const void* gate_up, int64_t rows, int64_t inter,
                void* out) {
  if (isa < CpuIsa::kAvx2) std::abort();  // a caller's bug: see the header
  const bool avx512 = isa >= CpuIsa::kAvx512;
  if (format == ActivationFormat::kFloat32) {
    const auto* in = static_cast<const float*>(gate_up);
    auto* o = static_cast<float*>(out);
    avx512 ? SiluMulRows(in, rows, inter, o) : SiluMulRows8(in, rows, inter, o);
  } else {
    const auto* in = static_cast<const uint16_t*>(gate_up);
    auto* o = static_cast<uint16_t*>(out);
    avx512 ? SiluMulRows(in, rows, inter, o) : SiluMulRows8(in, rows, inter, o);
  }
}

}  // namespace pad
