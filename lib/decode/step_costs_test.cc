#include "pad/step_costs.h"

#include <gtest/gtest.h>

namespace pad {
namespace {

TEST(StepCosts, NotReadyUntilAStepPrefilled) {
  StepCosts costs;
  EXPECT_FALSE(costs.ready());
  costs.Add(16, 0, 0.032);
  EXPECT_FALSE(costs.ready());
  costs.Add(0, 60, 0.120);
  EXPECT_TRUE(costs.ready());
  EXPECT_DOUBLE_EQ(costs.PromptTokenSeconds(), 0.002);
}

TEST(StepCosts, DecodeRowsCostWhatPromptTokensDoUntilAStepOnlyDecoded) {
  StepCosts costs;
  costs.Add(0, 60, 0.120);
  EXPECT_DOUBLE_EQ(costs.DecodeSeconds(16), 0.032);
  costs.Add(10, 20, 0.060);  // no decode part known: shared by all 30 tokens
  EXPECT_NEAR(costs.PromptTokenSeconds(), 0.002, 1e-12);
}

TEST(StepCosts, DecodeCostsPerRowsInterpolated) {
  StepCosts costs;
  costs.Add(0, 60, 0.060);
  costs.Add(1, 0, 0.010);
  costs.Add(16, 0, 0.030);
  EXPECT_DOUBLE_EQ(costs.DecodeSeconds(1), 0.010);
  EXPECT_DOUBLE_EQ(costs.DecodeSeconds(16), 0.030);
  EXPECT_NEAR(costs.DecodeSeconds(4), 0.014, 1e-12);
  EXPECT_NEAR(costs.DecodeSeconds(32), 0.046, 1e-12);  // past the most rows: 1 ms each, as a prompt token
  costs.Add(16, 0, 0.040);
  EXPECT_NEAR(costs.DecodeSeconds(16), 0.032, 1e-12);  // a moving average
}

TEST(StepCosts, APromptTokenCostsWhatItAddsBesideDecodeRows) {
  // The whole prompt on its own runs at 1.7 ms a token; beside 12 decode rows (26 ms) 16 tokens add 11 ms.
  StepCosts costs;
  costs.Add(0, 88, 0.150);
  costs.Add(1, 0, 0.0086);
  costs.Add(16, 0, 0.032);
  for (int i = 0; i < 40; ++i) costs.Add(12, 16, 0.026 + 0.011);
  EXPECT_NEAR(costs.DecodeSeconds(12), 0.026, 1e-3);
  EXPECT_NEAR(costs.PromptTokenSeconds(), 0.011 / 16, 5e-5);
}

TEST(StepCosts, TokensThatAddNothingAreAlmostFree) {
  // A GPU far from its compute limit: a step with 200 prompt tokens takes what a decode step takes.
  StepCosts costs;
  costs.Add(0, 200, 0.020);
  for (int i = 0; i < 40; ++i) {
    costs.Add(16, 0, 0.020);
    costs.Add(16, 200, 0.0199);
  }
  EXPECT_GT(costs.PromptTokenSeconds(), 0.0);
  EXPECT_GT(costs.DecodeSeconds(16) / costs.PromptTokenSeconds(), 10000);  // ratio 1 affords 10,000 tokens
}

}  // namespace
}  // namespace pad
