#include "model/cpu_kernels.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

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
// tail, n with and without a 4-row tile tail; checked against LibTorch's matmul in float64.
TEST(CpuLinear, MatchesLibTorchForEveryTileAndTail) {
  if (IsasHere().empty()) GTEST_SKIP() << "no AVX2 here";
  at::manual_seed(0);
  for (CpuIsa isa : IsasHere()) {
    for (const auto format : {WeightFormat::kFloat32, WeightFormat::kBFloat16}) {
      for (int64_t m : {1, 2, 3, 4, 5, 9}) {
        for (int64_t k : {576, 37, 8, 3}) {
          for (int64_t n : {64, 7, 1}) {
            const at::Tensor x = at::randn({m, k});  // [m, k]
            at::Tensor w = at::randn({n, k});        // [n, k]
            if (format == WeightFormat::kBFloat16) w = w.to(at::kBFloat16);
            at::Tensor y = at::full({m, n}, std::nanf(""));  // [m, n]
            CpuLinear(isa, x.data_ptr<float>(), k, m, {format, w.data_ptr(), nullptr, n, k},
                      y.data_ptr<float>(), n);
            EXPECT_LT(RelativeError(y, x, w), 2e-5)
                << CpuIsaName(isa) << " bf16=" << (format == WeightFormat::kBFloat16) << " m=" << m
                << " k=" << k << " n=" << n;
          }
        }
      }
    }
  }
}

// int8 weights: the product equals the dequantized weights' (every group with its own scale), so the only
// error beyond float32 rounding is the quantization, measured by the model's accuracy tests.
TEST(CpuLinear, Int8WeightsEqualTheirDequantizedProduct) {
  if (IsasHere().empty()) GTEST_SKIP() << "no AVX2 here";
  at::manual_seed(1);
  for (CpuIsa isa : IsasHere()) {
    for (int64_t m : {1, 3, 4, 9}) {
      for (int64_t k : {576, 64, 32}) {
        for (int64_t n : {64, 7, 1}) {
          const at::Tensor x = at::randn({m, k});                     // [m, k]
          const at::Tensor w = at::randn({n, k}) * at::rand({n, 1});  // [n, k], rows of different scales
          const auto [values, scales] = Quantize(w);
          const at::Tensor dequantized =
              (values.to(at::kFloat).view({n, -1, kInt8Group}) * scales.unsqueeze(-1)).view({n, k});
          at::Tensor y = at::full({m, n}, std::nanf(""));  // [m, n]
          CpuLinear(isa, x.data_ptr<float>(), k, m,
                    {WeightFormat::kInt8, values.data_ptr(), scales.data_ptr<float>(), n, k},
                    y.data_ptr<float>(), n);
          EXPECT_LT(RelativeError(y, x, dequantized), 2e-5)
              << CpuIsaName(isa) << " m=" << m << " k=" << k << " n=" << n;
          EXPECT_LT(RelativeError(y, x, w), 2e-2) << "the quantization itself, m=" << m;
        }
      }
    }
  }
}

// bfloat16 activations and weights through vdpbf16ps: every tile, and k tails of 32-value vectors.
TEST(CpuLinearBf16, MatchesLibTorchForEveryTileAndTail) {
  if (DetectCpuIsa() != CpuIsa::kAvx512Bf16) GTEST_SKIP() << "no AVX512_BF16 here";
  at::manual_seed(2);
  for (int64_t m : {1, 2, 3, 4, 5, 9}) {
    for (int64_t k : {576, 37, 32, 3}) {
      for (int64_t n : {64, 7, 1}) {
        const at::Tensor x = at::randn({m, k}).to(at::kBFloat16);  // [m, k]
        const at::Tensor w = at::randn({n, k}).to(at::kBFloat16);  // [n, k]
        at::Tensor y = at::full({m, n}, std::nanf(""));            // [m, n]
        CpuLinearBf16(CpuIsa::kAvx512Bf16, static_cast<const uint16_t*>(x.data_ptr()), k, m,
                      {WeightFormat::kBFloat16, w.data_ptr(), nullptr, n, k}, y.data_ptr<float>(), n);
        EXPECT_LT(RelativeError(y, x, w), 2e-5) << " m=" << m << " k=" << k << " n=" << n;
      }
    }
  }
}

// Strided rows in and out: a view into a wider activation and a wider output (the fused q|k|v columns).
TEST(CpuLinear, HonoursRowStrides) {
  if (IsasHere().empty()) GTEST_SKIP() << "no AVX2 here";
  const at::Tensor wide = at::randn({3, 50});  // [3, 50]
  const at::Tensor x = wide.narrow(1, 0, 40);  // [3, 40], stride 50
  const at::Tensor w = at::randn({12, 40});    // [12, 40]
  at::Tensor out = at::zeros({3, 20});         // [3, 20]
  CpuLinear(IsasHere().front(), x.data_ptr<float>(), 50, 3,
            {WeightFormat::kFloat32, w.data_ptr(), nullptr, 12, 40}, out.data_ptr<float>() + 4, 20);
  EXPECT_TRUE(at::allclose(out.narrow(1, 4, 12), at::matmul(x, w.t()), 1e-5, 1e-5));
  EXPECT_EQ(out.narrow(1, 0, 4).abs().sum().item<float>(), 0.0f);
  EXPECT_EQ(out.narrow(1, 16, 4).abs().sum().item<float>(), 0.0f);
}

}  // namespace
}  // namespace pad
