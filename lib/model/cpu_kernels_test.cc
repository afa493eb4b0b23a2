#include "model/cpu_kernels.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <array>
#include <string>
#include <tuple>
#include <vector>

namespace pad {
namespace {

// The float32-activation ISAs this CPU runs (kAvx512Bf16 runs them as kAvx512).
std::vector<CpuIsa> IsasHere() {
  std::vector<CpuIsa> isas;
  const CpuIsa best = DetectCpuIsa();
  if (best >= CpuIsa::kAvx512) isas.push_back(CpuIsa::kAvx512);
  if (best != CpuIsa::kNone) isas.push_back(CpuIsa::kAvx2);
  return isas;
}

// w [n, k] float32 -> int8 values [n, k] and scales [n, k / kInt8Group], as the model quantizes.
std::pair<at::Tensor, at::Tensor> Quantize(const at::Tensor& w) {
  const at::Tensor groups = w.view({w.size(0), -1, kInt8Group});             // [n, k / 32, 32]
  const at::Tensor scales = groups.abs().amax(-1).clamp_min(1e-30) / 127.0;  // [n, k / 32]
  const at::Tensor values = (groups / scales.unsqueeze(-1)).round().to(at::kChar).view_as(w);
  return {values, scales};
}

// |y - x·wᵀ| / (|x|·|w|ᵀ), the largest over the output, with the reference in float64.
double RelativeError(const at::Tensor& y, const at::Tensor& x, const at::Tensor& w) {
  const at::Tensor expected = at::matmul(x.to(at::kDouble), w.to(at::kDouble).t());
  const at::Tensor bound = at::matmul(x.abs().to(at::kDouble), w.abs().to(at::kDouble).t());
  return ((y.to(at::kDouble) - expected).abs() / (bound + 1e-30)).max().item<double>();
}

// Every tile shape and tail: m from 1 to 9 (tiles of 4 or 2 and remainders), k with and without a vector
// tail, n with and without a 4-row tile tail, in one or several chunks per thread (of 64 or 256 rows, split
// into 4 runs of rows); checked against LibTorch's matmul in float64.
TEST(CpuLinear, MatchesLibTorchForEveryTileAndTail) {
  if (IsasHere().empty()) GTEST_SKIP() << "no AVX2 here";
  at::manual_seed(0);
  for (CpuIsa isa : IsasHere()) {
    for (const auto format : {WeightFormat::kFloat32, WeightFormat::kBFloat16}) {
      for (int64_t m : {1, 2, 3, 4, 5, 9}) {
        for (int64_t k : {576, 37, 8, 3}) {
          for (int64_t n : {1030, 200, 64, 7, 1}) {
            const at::Tensor x = at::randn({m, k});  // [m, k]
            at::Tensor w = at::randn({n, k});        // [n, k]
            if (format == WeightFormat::kBFloat16) w = w.to(at::kBFloat16);
            at::Tensor y = at::full({m, n}, std::nanf(""));  // [m, n]
            CpuLinear(isa, x.data_ptr<float>(), k, m, {format, w.data_ptr(), nullptr, n, k},
                      {ActivationFormat::kFloat32, y.data_ptr(), n});
            EXPECT_LT(RelativeError(y, x, w), 2e-5)
                << CpuIsaName(isa) << " bf16=" << (format == WeightFormat::kBFloat16) << " m=" << m
                << " k=" << k << " n=" << n;
          }
        }
      }
    }
  }
}

// A row's result does not depend on the rows beside it: the same bits alone as in any batch, for every
// tile shape, weight format, the widened path and blocks of rows (bfloat16 on AVX2 takes 128 at a time), so
// that a stream's tokens do not change with the load.
TEST(CpuLinear, RowsEqualTheRowAlone) {
  if (IsasHere().empty()) GTEST_SKIP() << "no AVX2 here";
  at::manual_seed(0);
  const int64_t n = 1030, k = 576;
  for (CpuIsa isa : IsasHere()) {
    for (const auto format : {WeightFormat::kFloat32, WeightFormat::kBFloat16, WeightFormat::kInt8}) {
      at::Tensor w = at::randn({n, k}), scales;  // [n, k]
      if (format == WeightFormat::kBFloat16) w = w.to(at::kBFloat16);
      if (format == WeightFormat::kInt8) std::tie(w, scales) = Quantize(w);
      const CpuWeight weight = {format, w.data_ptr(), scales.defined() ? scales.data_ptr<float>() : nullptr,
                                n, k};
      for (int64_t m : {2, 3, 4, 5, 9, 64, 130}) {
        const at::Tensor x = at::randn({m, k});  // [m, k]
        at::Tensor batched = at::empty({m, n});  // [m, n]
        CpuLinear(isa, x.data_ptr<float>(), k, m, weight,
                  {ActivationFormat::kFloat32, batched.data_ptr(), n});
        for (int64_t r = 0; r < m; ++r) {
          at::Tensor alone = at::empty({1, n});  // [1, n]
          CpuLinear(isa, x[r].data_ptr<float>(), k, 1, weight,
                    {ActivationFormat::kFloat32, alone.data_ptr(), n});
          EXPECT_TRUE(at::equal(batched[r], alone[0]))
              << CpuIsaName(isa) << " format=" << static_cast<int>(format) << " m=" << m << " row " << r;
        }
      }
    }
  }
}

// x [m, k] as the int8 products quantize it, written here with LibTorch's operations: per group of 32, scale
// = largest magnitude / 32767, values round(x * (1 / scale)) (ties to even), 0 for a group of zeros.
at::Tensor QuantizedX(const at::Tensor& x) {
  const at::Tensor groups = x.view({x.size(0), -1, kInt8Group});                          // [m, k / 32, 32]
  const at::Tensor scales = groups.abs().amax(-1, true) / at::full({1}, 32767.0f);        // [m, k / 32, 1]
  const at::Tensor inverse = at::where(scales == 0, at::zeros_like(scales), 1 / scales);  // [m, k / 32, 1]
  return ((groups * inverse).round() * scales).view_as(x);
}

// int8 weights against x quantized in their groups to int16: the product equals LibTorch's on the
// dequantized weights and the quantized x, for every tile, group count (k = 96, 32: odd) and both ISAs'
// kernels; its distance from x's own product is the weights' quantization's.
TEST(CpuLinear, Int8ProductsEqualQuantizedXTimesDequantizedW) {
  if (IsasHere().empty()) GTEST_SKIP() << "no AVX2 here";
  at::manual_seed(1);
  for (CpuIsa isa : IsasHere()) {
    for (int64_t m : {1, 3, 4, 9}) {
      for (int64_t k : {576, 96, 64, 32}) {
        for (int64_t n : {1030, 200, 64, 7, 1}) {
          const at::Tensor x = at::randn({m, k}) * at::rand({m, 1});  // [m, k], rows of different scales
          const at::Tensor w = at::randn({n, k}) * at::rand({n, 1});  // [n, k]
          const auto [values, scales] = Quantize(w);
          const at::Tensor dequantized =
              (values.to(at::kFloat).view({n, -1, kInt8Group}) * scales.unsqueeze(-1)).view({n, k});
          at::Tensor y = at::full({m, n}, std::nanf(""));  // [m, n]
          CpuLinear(isa, x.data_ptr<float>(), k, m,
                    {WeightFormat::kInt8, values.data_ptr(), scales.data_ptr<float>(), n, k},
                    {ActivationFormat::kFloat32, y.data_ptr(), n});
          const std::string where = std::string(CpuIsaName(isa)) + " m=" + std::to_string(m) +
                                    " k=" + std::to_string(k) + " n=" + std::to_string(n);
          // Float32's rounding alone (1e-7 at most here); without x's quantization 8e-7 at least.
          EXPECT_LT(RelativeError(y, QuantizedX(x), dequantized), 3e-7) << where;
          EXPECT_LT(RelativeError(y, x, w), 3e-2) << "the quantization itself, " << where;
        }
      }
    }
  }
}

// QuantizeForInt8 is that quantization exactly, a group of zeros stays zero, and a NaN or an infinity
// in a group makes the group's products NaN (as float32's would be) rather than a finite number.
TEST(CpuLinear, Int8QuantizationOfXIsExactAndKeepsNonFinite) {
  if (IsasHere().empty()) GTEST_SKIP() << "no AVX2 here";
  at::manual_seed(2);
  const int64_t m = 5, k = 128;
  at::Tensor x =
      at::randn({m, k}) * at::rand({m, k / kInt8Group}).repeat_interleave(kInt8Group, 1);  // [m, k]
  x[1].narrow(0, 32, 32).zero_();
  at::Tensor quantized = at::empty({m, k});  // [m, k]
  QuantizeForInt8(IsasHere().back(), x.data_ptr<float>(), k, m, k, quantized.data_ptr<float>());
  EXPECT_TRUE(at::equal(quantized, QuantizedX(x)));
  EXPECT_EQ(quantized[1].narrow(0, 32, 32).abs().sum().item<float>(), 0.0f);

  const at::Tensor w = at::randn({4, k});  // [4, k]
  const auto [values, scales] = Quantize(w);
  for (const float bad : {std::nanf(""), INFINITY, -INFINITY}) {
    at::Tensor row = at::randn({1, k});  // [1, k]
    row[0][70] = bad;
    for (CpuIsa isa : IsasHere()) {
      at::Tensor y = at::zeros({1, 4});  // [1, 4]
      CpuLinear(isa, row.data_ptr<float>(), k, 1,
                {WeightFormat::kInt8, values.data_ptr(), scales.data_ptr<float>(), 4, k},
                {ActivationFormat::kFloat32, y.data_ptr(), 4});
      EXPECT_TRUE(y.isnan().all().item<bool>()) << CpuIsaName(isa) << " " << bad << ": " << y;
    }
  }
}

// bfloat16 activations and weights through vdpbf16ps: every tile, and k tails of 32-value vectors.
TEST(CpuLinearBf16, MatchesLibTorchForEveryTileAndTail) {
  if (DetectCpuIsa() != CpuIsa::kAvx512Bf16) GTEST_SKIP() << "no AVX512_BF16 here";
  at::manual_seed(2);
  for (int64_t m : {1, 2, 3, 4, 5, 9}) {
    for (int64_t k : {576, 37, 32, 3}) {
      for (int64_t n : {200, 64, 7, 1}) {
        const at::Tensor x = at::randn({m, k}).to(at::kBFloat16);  // [m, k]
        const at::Tensor w = at::randn({n, k}).to(at::kBFloat16);  // [n, k]
        at::Tensor y = at::full({m, n}, std::nanf(""));            // [m, n]
        CpuLinearBf16(CpuIsa::kAvx512Bf16, static_cast<const uint16_t*>(x.data_ptr()), k, m,
                      {WeightFormat::kBFloat16, w.data_ptr(), nullptr, n, k},
                      {ActivationFormat::kFloat32, y.data_ptr(), n});
        EXPECT_LT(RelativeError(y, x, w), 2e-5) << " m=" << m << " k=" << k << " n=" << n;
      }
    }
  }
}

// The fused decode-step operations round as the unfused LibTorch ones do, in float32 and bfloat16.
TEST(CpuDecodeOps, RmsNormAndRopeMatchLibTorch) {
  at::manual_seed(3);
  for (const auto dtype : {at::kFloat, at::kBFloat16}) {
    const auto format = dtype == at::kFloat ? ActivationFormat::kFloat32 : ActivationFormat::kBFloat16;
    const at::Tensor x = at::randn({3, 576}).to(dtype);    // [rows, hidden]
    const at::Tensor weight = at::randn({576}).to(dtype);  // [hidden]
    at::Tensor out = at::empty_like(x);                    // [rows, hidden]
    CpuRmsNorm(format, x.data_ptr(), 3, 576, weight.data_ptr(), 1e-5f, out.data_ptr());
    const at::Tensor x32 = x.to(at::kFloat);
    const at::Tensor expected = weight * (x32 * at::rsqrt(x32.pow(2).mean(-1, true) + 1e-5)).to(dtype);
    EXPECT_TRUE(at::allclose(out.to(at::kFloat), expected.to(at::kFloat), 1e-5, 1e-6)) << dtype;

    // 2 tokens, 3 query heads and 2 key/value heads of 8, written to positions 5 of block 4 and 4 of block 0
    // (of 6 blocks of 7).
    const int64_t heads = 3, kv_heads = 2, d = 8;
    at::Tensor qkv = at::randn({2, (heads + 2 * kv_heads) * d}).to(dtype);  // [rows, width]
    const at::Tensor angles = at::rand({2, d / 2}) * 6;                     // [rows, d / 2]
    const at::Tensor cos = at::cat({angles, angles}, -1).cos().to(dtype);   // [rows, d]
    const at::Tensor sin = at::cat({angles, angles}, -1).sin().to(dtype);   // [rows, d]
    at::Tensor cache_k = at::zeros({6, kv_heads, 7, d}, dtype), cache_v = at::zeros_like(cache_k);
    const at::Tensor heads_before = qkv.view({2, heads + 2 * kv_heads, d}).clone();  // [rows, heads, d]
    const int64_t cache_rows[] = {4 * kv_heads * 7 + 5, 0 * kv_heads * 7 + 4};
    CpuRopeAndCache(format, {2, heads, kv_heads, d, 7, cache_rows}, qkv.data_ptr(), cos.data_ptr(),
                    sin.data_ptr(), cache_k.data_ptr(), cache_v.data_ptr());
    const at::Tensor rotated_in = heads_before.narrow(1, 0, heads + kv_heads);  // q and k heads
    const at::Tensor half = rotated_in.narrow(-1, d / 2, d / 2), first = rotated_in.narrow(-1, 0, d / 2);
    const at::Tensor rotated = rotated_in * cos.unsqueeze(1) + at::cat({-half, first}, -1) * sin.unsqueeze(1);
    const at::Tensor got = qkv.view({2, heads + 2 * kv_heads, d});
    EXPECT_TRUE(at::equal(got.narrow(1, 0, heads + kv_heads), rotated)) << dtype;
    for (int64_t h = 0; h < kv_heads; ++h) {
      EXPECT_TRUE(at::equal(cache_k[4][h][5], rotated[0][heads + h])) << dtype;
      EXPECT_TRUE(at::equal(cache_v[0][h][4], heads_before[1][heads + kv_heads + h])) << dtype;
    }
    // Nothing else is written.
    at::Tensor rest = cache_k.clone();
    rest[4].select(1, 5).zero_();
    rest[0].select(1, 4).zero_();
    EXPECT_EQ(rest.abs().sum().item<double>(), 0.0) << dtype;
  }
}

// Paged attention against LibTorch's scaled_dot_product_attention on each sequence's keys gathered through
// its block table: packed queries (a prefill of 19 crossing blocks, decode rows of 1 key, a vector tail,
// several vectors, and a chunk of 3 after cached keys), blocks scattered and out of order in the pool,
// groups of query heads split into calls or not, every supported head size; float32 to float rounding,
// bfloat16 within its rounding of the output (SDPA's CPU kernel also rounds the probabilities to bfloat16
// before the product with v; ours keeps them in float32). A kernel that ignored the block tables would read
// other sequences' keys.
TEST(CpuDecodeOps, PagedAttentionMatchesScaledDotProductAttention) {
  if (IsasHere().empty()) GTEST_SKIP() << "no AVX2 here";
  at::manual_seed(4);
  const int64_t block = 8, max_blocks = 5, pool = 24;
  // Per sequence: queries, keys after this step, block table (a permutation of the pool, so no two share).
  const int64_t query_starts[] = {0, 19, 20, 21, 22, 25};
  const int64_t key_lengths[] = {19, 1, 17, 40, 12};
  const int32_t tables[5][max_blocks] = {
      {7, 2, 19, 0, 0}, {11, 0, 0, 0, 0}, {3, 22, 5, 0, 0}, {23, 1, 9, 14, 6}, {16, 4, 0, 0, 0}};
  for (const CpuIsa isa : IsasHere()) {
    ASSERT_TRUE(PagedAttentionSupported(isa, 64));
    for (const auto dtype : {at::kFloat, at::kBFloat16}) {
      const auto format = dtype == at::kFloat ? ActivationFormat::kFloat32 : ActivationFormat::kBFloat16;
      // Groups of 3 (one call per group), 8 (two calls of 4) and 1.
      for (const auto [d, heads, kv_heads] : {std::array<int64_t, 3>{64, 6, 2},
                                              {64, 8, 1},
                                              {64, 2, 2},
                                              {96, 6, 2},
                                              {128, 6, 2},
                                              {128, 8, 1},
                                              {256, 6, 2}}) {
        const int64_t width = (heads + 2 * kv_heads) * d, tokens = 25;
        const at::Tensor qkv = at::randn({tokens, width}).to(dtype);                 // [tokens, width]
        const at::Tensor cache_k = at::randn({pool, kv_heads, block, d}).to(dtype);  // [blocks, kv, B, d]
        const at::Tensor cache_v = at::randn({pool, kv_heads, block, d}).to(dtype);
        at::Tensor out = at::full({tokens, heads * d}, std::nanf("")).to(dtype);  // [tokens, heads * d]
        CpuPagedAttention(
            isa, format,
            {5, heads, kv_heads, d, block, width, query_starts, key_lengths, &tables[0][0], max_blocks},
            qkv.data_ptr(), cache_k.data_ptr(), cache_v.data_ptr(), out.data_ptr());
        for (int64_t r = 0; r < 5; ++r) {
          const int64_t n = query_starts[r + 1] - query_starts[r], length = key_lengths[r];
          std::vector<int64_t>
              key_rows;  // [kv, L]: each key's row in the cache viewed as [blocks * kv * B, d]
          for (int64_t h = 0; h < kv_heads; ++h) {
            for (int64_t t = 0; t < length; ++t)
              key_rows.push_back((tables[r][t / block] * kv_heads + h) * block + t % block);
          }
          const at::Tensor flat = at::tensor(key_rows);
          const at::Tensor k = cache_k.view({-1, d}).index_select(0, flat).view({1, kv_heads, length, d});
          const at::Tensor v = cache_v.view({-1, d}).index_select(0, flat).view({1, kv_heads, length, d});
          const at::Tensor q = qkv.narrow(0, query_starts[r], n)
                                   .narrow(1, 0, heads * d)
                                   .view({n, heads, d})
                                   .transpose(0, 1)
                                   .unsqueeze(0);  // [1, heads, n, d]
          // Query i sees keys [0, length - n + i].
          const at::Tensor mask =
              at::arange(length).view({1, length}) <= (at::arange(n) + (length - n)).view({n, 1});  // [n, L]
          const at::Tensor expected =
              at::scaled_dot_product_attention(q.to(at::kFloat), k.to(at::kFloat), v.to(at::kFloat), mask,
                                               0.0, false, std::nullopt, /*enable_gqa=*/true)
                  .squeeze(0)
                  .transpose(0, 1)
                  .reshape({n, heads * d});
          const at::Tensor got = out.narrow(0, query_starts[r], n).to(at::kFloat);
          const double tolerance = dtype == at::kFloat ? 1e-5 : 1e-2;
          EXPECT_TRUE(at::allclose(got, expected, tolerance, tolerance))
              << CpuIsaName(isa) << " " << dtype << " d=" << d << " heads " << heads << "/" << kv_heads
              << " sequence " << r << ": largest error " << (got - expected).abs().max().item<float>();
        }
      }
    }
  }
}

// SiLU(gate) * up as LibTorch computes it, rounding included; 1550 columns leave a tail of 14.
TEST(CpuDecodeOps, SiluMulMatchesLibTorch) {
  if (IsasHere().empty()) GTEST_SKIP() << "no AVX2 here";
  at::manual_seed(5);
  for (const CpuIsa isa : IsasHere()) {
    for (const auto dtype : {at::kFloat, at::kBFloat16}) {
      const auto format = dtype == at::kFloat ? ActivationFormat::kFloat32 : ActivationFormat::kBFloat16;
      const int64_t inter = 1550;
      const at::Tensor gate_up = (at::randn({2, 2 * inter}) * 4).to(dtype);  // [rows, 2 * inter]
      at::Tensor out = at::empty({2, inter}, dtype);                         // [rows, inter]
      CpuSiluMul(isa, format, gate_up.data_ptr(), 2, inter, out.data_ptr());
      const at::Tensor expected = at::silu(gate_up.narrow(1, 0, inter)) * gate_up.narrow(1, inter, inter);
      // float32: Cephes' exp against Sleef's, a few ulp; bfloat16: at most one rounding step apart.
      const double tolerance = dtype == at::kFloat ? 1e-6 : 8e-3;
      EXPECT_TRUE(at::allclose(out.to(at::kFloat), expected.to(at::kFloat), tolerance, 1e-6))
          << CpuIsaName(isa) << " " << dtype << ": largest error "
          << (out - expected).abs().max().item<float>();
      if (dtype == at::kBFloat16) {
        EXPECT_GT(at::eq(out, expected).to(at::kFloat).mean().item<float>(), 0.99f) << CpuIsaName(isa);
      }
    }
  }
}

// The output pass: bias, rounding to bfloat16 and the residual add, exactly as LibTorch rounds
// residual + linear(x, w, bias) given the same float32 sums; in place (residual == y) as the model adds.
TEST(CpuLinear, OutputAddsBiasAndResidualRoundedAsLibTorch) {
  if (IsasHere().empty()) GTEST_SKIP() << "no AVX2 here";
  at::manual_seed(6);
  for (CpuIsa isa : IsasHere()) {
    for (const auto dtype : {at::kFloat, at::kBFloat16}) {
      const auto format = dtype == at::kFloat ? ActivationFormat::kFloat32 : ActivationFormat::kBFloat16;
      const int64_t m = 3, k = 64, n = 150;
      const at::Tensor x = at::randn({m, k});                   // [m, k]
      const at::Tensor w = at::randn({n, k});                   // [n, k]
      const at::Tensor bias = at::randn({n}).to(dtype);         // [n]
      const at::Tensor residual = at::randn({m, n}).to(dtype);  // [m, n]
      const CpuWeight weight = {WeightFormat::kFloat32, w.data_ptr(), nullptr, n, k};
      at::Tensor sums = at::empty({m, n});  // [m, n]
      CpuLinear(isa, x.data_ptr<float>(), k, m, weight, {ActivationFormat::kFloat32, sums.data_ptr(), n});
      at::Tensor y = residual.clone();  // [m, n], the residual stream updated in place
      CpuLinear(isa, x.data_ptr<float>(), k, m, weight,
                {format, y.data_ptr(), n, bias.data_ptr(), y.data_ptr()});
      EXPECT_TRUE(at::equal(y, residual + (sums + bias).to(dtype))) << CpuIsaName(isa) << " " << dtype;
      at::Tensor plain = at::empty({m, n}, dtype);  // [m, n]
      CpuLinear(isa, x.data_ptr<float>(), k, m, weight, {format, plain.data_ptr(), n});
      EXPECT_TRUE(at::equal(plain, sums.to(dtype))) << CpuIsaName(isa) << " " << dtype;
    }
  }
}

// Strided rows in and out: a view into a wider activation and a wider output (the fused q|k|v columns).
TEST(CpuLinear, HonoursRowStrides) {
  if (IsasHere().empty()) GTEST_SKIP() << "no AVX2 here";
  // 130 rows: bfloat16 weights take x in blocks of 128 rows, each block's output rows ldy apart.
  const at::Tensor wide = at::randn({130, 50});  // [130, 50]
  const at::Tensor x = wide.narrow(1, 0, 40);    // [130, 40], stride 50
  for (CpuIsa isa : IsasHere()) {
    for (const auto format : {WeightFormat::kFloat32, WeightFormat::kBFloat16}) {
      at::Tensor w = at::randn({12, 40});  // [12, 40]
      if (format == WeightFormat::kBFloat16) w = w.to(at::kBFloat16);
      at::Tensor out = at::zeros({130, 20});  // [130, 20]
      CpuLinear(isa, x.data_ptr<float>(), 50, 130, {format, w.data_ptr(), nullptr, 12, 40},
                {ActivationFormat::kFloat32, out.data_ptr<float>() + 4, 20});
      const std::string where =
          std::string(CpuIsaName(isa)) + (format == WeightFormat::kBFloat16 ? " bf16" : "");
      EXPECT_TRUE(at::allclose(out.narrow(1, 4, 12), at::matmul(x, w.to(at::kFloat).t()), 1e-5, 1e-5))
          << where;
      EXPECT_EQ(out.narrow(1, 0, 4).abs().sum().item<float>(), 0.0f) << where;
      EXPECT_EQ(out.narrow(1, 16, 4).abs().sum().item<float>(), 0.0f) << where;
    }
  }
}

}  // namespace
}  // namespace pad
