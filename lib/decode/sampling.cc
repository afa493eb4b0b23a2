#include "pad/sampling.h"

#include <cmath>
#include <vector>

namespace pad {

int64_t SampleIndex(const float* scores, int64_t n, float temperature, double uniform) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i) {
    if (scores[i] > scores[best]) best = i;
  }
  if (temperature <= 0.0f) return best;
  // Inverse CDF of softmax(scores / T), shifted by the maximum for stability.
  std::vector<double> weights(n);
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    weights[i] = std::exp((static_cast<double>(scores[i]) - scores[best]) / temperature);
    total += weights[i];
  }
  double target = uniform * total;
  for (int64_t i = 0; i < n; ++i) {
    target -= weights[i];
    if (target < 0.0) return i;
  }
  return best;  // only reached through rounding when uniform is close to 1
}

}  // namespace pad
