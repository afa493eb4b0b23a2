#include "model/cpu_kernels.h"

#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <cstring>

namespace pad {

CpuIsa DetectCpuIsa() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl")) {
    return CpuIsa::kAvx512;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return CpuIsa::kAvx2;
  return CpuIsa::kNone;
}

const char* CpuIsaName(CpuIsa isa) {
  switch (isa) {
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

// Each kernel computes a tile: MT rows of x against NT rows of w, MT * NT vector accumulators over k, so
// that a w vector loaded once serves MT rows and an x vector NT rows. Rows of w are the output columns; the
// threads split them.

// ---- AVX-512: 16 floats a vector; 32 registers hold 4 x 4 accumulators and the loads.

#define PAD_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma")))

PAD_AVX512 inline __m512 Load16(const float* p) { return _mm512_loadu_ps(p); }
PAD_AVX512 inline __m512 Load16(const uint16_t* p) {
  // bfloat16 is the top half of a float32: widen and shift, exactly.
  return _mm512_castsi512_ps(
      _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
}
PAD_AVX512 inline __m512 MaskedLoad16(const float* p, __mmask16 mask) {
  return _mm512_maskz_loadu_ps(mask, p);
}
PAD_AVX512 inline __m512 MaskedLoad16(const uint16_t* p, __mmask16 mask) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, p)), 16));
}

template <int MT, int NT, typename W>
PAD_AVX512 void TileAvx512(const float* x, int64_t ldx, const W* w, int64_t k, float* y, int64_t ldy) {
  __m512 acc[MT][NT];
  for (int r = 0; r < MT; ++r) {
    for (int j = 0; j < NT; ++j) acc[r][j] = _mm512_setzero_ps();
  }
  int64_t i = 0;
  for (; i + 16 <= k; i += 16) {
    __m512 wv[NT];
    for (int j = 0; j < NT; ++j) wv[j] = Load16(w + j * k + i);
    for (int r = 0; r < MT; ++r) {
      const __m512 xv = _mm512_loadu_ps(x + r * ldx + i);
      for (int j = 0; j < NT; ++j) acc[r][j] = _mm512_fmadd_ps(xv, wv[j], acc[r][j]);
    }
  }
  if (i < k) {
    const __mmask16 mask = static_cast<__mmask16>((1u << (k - i)) - 1);
    __m512 wv[NT];
    for (int j = 0; j < NT; ++j) wv[j] = MaskedLoad16(w + j * k + i, mask);
    for (int r = 0; r < MT; ++r) {
      const __m512 xv = _mm512_maskz_loadu_ps(mask, x + r * ldx + i);
      for (int j = 0; j < NT; ++j) acc[r][j] = _mm512_fmadd_ps(xv, wv[j], acc[r][j]);
    }
  }
  for (int r = 0; r < MT; ++r) {
    for (int j = 0; j < NT; ++j) y[r * ldy + j] = _mm512_reduce_add_ps(acc[r][j]);
  }
}

// ---- AVX2: 8 floats a vector; 16 registers hold 2 x 4 accumulators and the loads.

#define PAD_AVX2 __attribute__((target("avx2,fma")))

PAD_AVX2 inline __m256 Load8(const float* p) { return _mm256_loadu_ps(p); }
PAD_AVX2 inline __m256 Load8(const uint16_t* p) {
  return _mm256_castsi256_ps(
      _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
}
PAD_AVX2 inline float Sum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline float ToFloat(float v) { return v; }
inline float ToFloat(uint16_t v) {
  const uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

template <int MT, int NT, typename W>
PAD_AVX2 void TileAvx2(const float* x, int64_t ldx, const W* w, int64_t k, float* y, int64_t ldy) {
  __m256 acc[MT][NT];
  for (int r = 0; r < MT; ++r) {
    for (int j = 0; j < NT; ++j) acc[r][j] = _mm256_setzero_ps();
  }
  int64_t i = 0;
  for (; i + 8 <= k; i += 8) {
    __m256 wv[NT];
    for (int j = 0; j < NT; ++j) wv[j] = Load8(w + j * k + i);
    for (int r = 0; r < MT; ++r) {
      const __m256 xv = _mm256_loadu_ps(x + r * ldx + i);
      for (int j = 0; j < NT; ++j) acc[r][j] = _mm256_fmadd_ps(xv, wv[j], acc[r][j]);
    }
  }
  for (int r = 0; r < MT; ++r) {
    for (int j = 0; j < NT; ++j) {
      float sum = Sum8(acc[r][j]);
      for (int64_t t = i; t < k; ++t) sum += x[r * ldx + t] * ToFloat(w[j * k + t]);
      y[r * ldy + j] = sum;
    }
  }
}

// Rows [n0, n1) of w against every row of x: tiles of 4 rows of w (then single rows), each against the rows
// of x in tiles of MT (then the remainder), so that the w tile is read from memory once and from cache for
// the other row tiles.
template <typename W>
void RunRows(CpuIsa isa, const float* x, int64_t ldx, int64_t m, int64_t k, const W* w, int64_t n0,
             int64_t n1, float* y, int64_t ldy) {
  using TileFn = void (*)(const float*, int64_t, const W*, int64_t, float*, int64_t);
  // [rows of x in the tile - 1][rows of w: 0 for 1, 1 for 4]
  TileFn tiles[4][2];
  int max_mt;
  if (isa == CpuIsa::kAvx512) {
    max_mt = 4;
    tiles[0][0] = TileAvx512<1, 1, W>, tiles[0][1] = TileAvx512<1, 4, W>;
    tiles[1][0] = TileAvx512<2, 1, W>, tiles[1][1] = TileAvx512<2, 4, W>;
    tiles[2][0] = TileAvx512<3, 1, W>, tiles[2][1] = TileAvx512<3, 4, W>;
    tiles[3][0] = TileAvx512<4, 1, W>, tiles[3][1] = TileAvx512<4, 4, W>;
  } else {
    max_mt = 2;
    tiles[0][0] = TileAvx2<1, 1, W>, tiles[0][1] = TileAvx2<1, 4, W>;
    tiles[1][0] = TileAvx2<2, 1, W>, tiles[1][1] = TileAvx2<2, 4, W>;
  }
  for (int64_t j = n0; j < n1;) {
    const int64_t nt = n1 - j >= 4 ? 4 : 1;
    for (int64_t r = 0; r < m;) {
      const int64_t mt = std::min<int64_t>(max_mt, m - r);
      tiles[mt - 1][nt == 4](x + r * ldx, ldx, w + j * k, k, y + r * ldy + j, ldy);
      r += mt;
    }
    j += nt;
  }
}

}  // namespace

void CpuLinear(CpuIsa isa, const float* x, int64_t ldx, int64_t m, int64_t k, const void* w,
               WeightFormat format, int64_t n, float* y, int64_t ldy) {
  // LibTorch's own intra-op threads (OpenMP), split by whole 4-row tiles of w: a second pool beside them
  // would put three spinning threads on two cores between a kernel and the next LibTorch operation.
  const int64_t tiles = (n + 3) / 4;
  at::parallel_for(0, tiles, /*grain_size=*/8, [&](int64_t first, int64_t last) {
    const int64_t n0 = first * 4, n1 = std::min<int64_t>(n, last * 4);
    if (format == WeightFormat::kFloat32) {
      RunRows(isa, x, ldx, m, k, static_cast<const float*>(w), n0, n1, y, ldy);
    } else {
      RunRows(isa, x, ldx, m, k, static_cast<const uint16_t*>(w), n0, n1, y, ldy);
    }
  });
}

}  // namespace pad
