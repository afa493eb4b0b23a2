// What a decoding step costs for what it feeds, learnt from the steps that ran.
#ifndef PAD_STEP_COSTS_H_
#define PAD_STEP_COSTS_H_

#include <cstdint>
#include <map>

namespace pad {

// A step's time is its decode rows' part, learnt per number of rows from the steps that only decoded
// (between those numbers, interpolated; past the most, each row more as a prompt token), plus a part per
// prompt token fed beside them: what the steps that
// prefilled took beyond their decode part. Per rows, not one line through every size: on the CPU a step of
// one row is bound by memory and a step of many by arithmetic; on a GPU a prompt token beside the decode rows
// costs almost nothing. Moving averages that give each new sample `weight`. For prefill_stall_ratio.
class StepCosts {
 public:
  explicit StepCosts(double weight = 0.2) : weight_(weight) {}

  // A step of `rows` decode rows and `prompt_tokens` prompt tokens (either may be 0) took `seconds`.
  void Add(int64_t rows, int64_t prompt_tokens, double seconds);
  // Whether a prompt token's cost is known (a step prefilled).
  bool ready() const { return prompt_token_seconds_ > 0; }
  // The decode part of a step of `rows` rows; until a step only decoded, rows cost what prompt tokens do.
  double DecodeSeconds(int64_t rows) const;
  // What a prompt token adds to a step, above zero once ready.
  double PromptTokenSeconds() const { return prompt_token_seconds_; }

 private:
  void Average(double& mean, double sample) const;

  double weight_;
  std::map<int64_t, double> decode_seconds_;  // by rows
  double prompt_token_seconds_ = 0;
};

}  // namespace pad

#endif  // PAD_STEP_COSTS_H_
