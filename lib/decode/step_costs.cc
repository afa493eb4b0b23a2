#include "pad/step_costs.h"

#include <algorithm>
#include <iterator>

namespace pad {

void StepCosts::Average(double& mean, double sample) const {
  mean = mean == 0 ? sample : (1 - weight_) * mean + weight_ * sample;
}

void StepCosts::Add(int64_t rows, int64_t prompt_tokens, double seconds) {
  if (prompt_tokens <= 0) {
    if (rows > 0) Average(decode_seconds_[rows], seconds);
    return;
  }
  const double tokens = static_cast<double>(prompt_tokens);
  if (rows == 0) {
    Average(prompt_token_seconds_, seconds / tokens);
  } else if (!ready() || decode_seconds_.empty()) {
    Average(prompt_token_seconds_, seconds / (tokens + static_cast<double>(rows)));
  } else if (prompt_tokens >= 8) {  // fewer tokens measure mostly the decode part's noise
    // At least a hundredth of the step each: on a GPU the difference is mostly noise about zero.
    Average(prompt_token_seconds_, std::max(seconds - DecodeSeconds(rows), 0.01 * seconds) / tokens);
  }
}

double StepCosts::DecodeSeconds(int64_t rows) const {
  const double n = static_cast<double>(rows);
  if (decode_seconds_.empty()) return prompt_token_seconds_ * n;
  const auto above = decode_seconds_.lower_bound(rows);
  if (above == decode_seconds_.end()) {  // more rows than any step had: each one more as a prompt token
    const auto most = std::prev(above);
    return most->second + prompt_token_seconds_ * (n - static_cast<double>(most->first));
  }
  if (above->first == rows || above == decode_seconds_.begin()) return above->second;  // fewer: as the fewest
  const auto below = std::prev(above);
  const double t = (n - static_cast<double>(below->first)) / static_cast<double>(above->first - below->first);
  return below->second + t * (above->second - below->second);
}

}  // namespace pad
