#include "model/cpu_kernels.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <vector>

namespace pad {
namespace {

std::vector<CpuIsa> IsasHere() {
  std::vector<CpuIsa> isas;
  const CpuIsa best = DetectCpuIsa();
  if (best == CpuIsa::kAvx512) isas.push_back(CpuIsa::kAvx512);
  if (best != CpuIsa::kNone) isas.push_back(CpuIsa::kAvx2);
  return isas;
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
            CpuLinear(isa, x.data_ptr<float>(), k, m, k, w.data_ptr(), format, n, y.data_ptr<float>(), n);
            const at::Tensor expected = at::matmul(x.to(at::kDouble), w.to(at::kDouble).t());
            const at::Tensor bound = at::matmul(x.abs().to(at::kDouble), w.abs().to(at::kDouble).t());
            const double error =
                ((y.to(at::kDouble) - expected).abs() / (bound + 1e-30)).max().item<double>();
            EXPECT_LT(error, 2e-5) << CpuIsaName(isa) << " bf16=" << (format == WeightFormat::kBFloat16)
                                   << " m=" << m << " k=" << k << " n=" << n;
          }
        }
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
  CpuLinear(IsasHere().front(), x.data_ptr<float>(), 50, 3, 40, w.data_ptr(), WeightFormat::kFloat32, 12,
            out.data_ptr<float>() + 4, 20);
  EXPECT_TRUE(at::allclose(out.narrow(1, 4, 12), at::matmul(x, w.t()), 1e-5, 1e-5));
  EXPECT_EQ(out.narrow(1, 0, 4).abs().sum().item<float>(), 0.0f);
  EXPECT_EQ(out.narrow(1, 16, 4).abs().sum().item<float>(), 0.0f);
}

}  // namespace
}  // namespace pad
