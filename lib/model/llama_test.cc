#include "pad/llama.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <vector>

#include "pad/kv_cache.h"
#include "pad/tensor_source.h"

namespace pad {
namespace {

// A two-layer grouped-query Llama with random weights, float32 on the CPU kernels where the CPU has them.
struct Fixture {
  std::unique_ptr<LlamaModel> model;
  std::unique_ptr<KvCache> cache;
};

Fixture Make(int64_t slots, const ModelOptions& model_options = ModelOptions()) {
  at::manual_seed(11);
  LlamaConfig config;
  config.vocab_size = 97;
  config.hidden_size = 64;
  config.intermediate_size = 96;
  config.num_hidden_layers = 2;
  config.num_attention_heads = 4;
  config.num_key_value_heads = 2;
  config.head_dim = 16;
  Fixture f;
  f.model = *LlamaModel::FromTensors(config, *RandomTensors::ForLlama(config), model_options);
  KvCacheOptions options;
  options.max_slots = slots;
  options.max_seq_len = 256;
  options.block_size = 16;
  f.cache = *KvCache::Create(config, options, ModelOptions());
  return f;
}

std::vector<int32_t> Tokens(int64_t n, int seed) {
  std::vector<int32_t> tokens;
  for (int64_t t = 0; t < n; ++t) tokens.push_back(static_cast<int32_t>((seed * 31 + t * 7) % 97));
  return tokens;
}

// Two identical models and caches in which `decoding` sequences have prompts of different lengths.
std::vector<Fixture> Decoding(int decoding) {
  std::vector<Fixture> fixtures;
  for (int copy = 0; copy < 2; ++copy) {
    fixtures.push_back(Make(decoding + 1));
    for (int s = 0; s < decoding; ++s) {
      const int slot = *fixtures.back().cache->Allocate();
      EXPECT_TRUE(
          fixtures.back().model->Forward({{slot, Tokens(3 + s, s)}}, fixtures.back().cache.get()).ok());
    }
  }
  return fixtures;
}

// A step's decode rows give the same bits whether or not a prompt's 100 tokens ride along (more rows than the
// kernels take: the prompt's go to the GEMM), wherever the prompt's row is listed.
TEST(LlamaForward, DecodeRowsDoNotDependOnAPromptBesideThem) {
  if (std::string(Make(1).model->cpu_kernels()) == "none") GTEST_SKIP() << "no CPU kernels here";
  constexpr int kDecoding = 20;
  std::vector<Fixture> f = Decoding(kDecoding);
  std::vector<int32_t> next(kDecoding);  // each sequence's next token
  std::vector<ForwardRow> alone;
  for (int s = 0; s < kDecoding; ++s) {
    next[s] = s + 1;
    alone.push_back({s, absl::MakeConstSpan(&next[s], 1)});
  }
  const at::Tensor expected = *f[0].model->Forward(alone, f[0].cache.get());  // [20, hidden]

  const int prompt_slot = *f[1].cache->Allocate();
  const std::vector<int32_t> prompt_tokens = Tokens(100, 5);
  std::vector<ForwardRow> mixed = alone;
  mixed.insert(mixed.begin() + 7, ForwardRow{prompt_slot, prompt_tokens});
  const at::Tensor got = *f[1].model->Forward(mixed, f[1].cache.get());  // [21, hidden]
  EXPECT_TRUE(at::equal(got.narrow(0, 0, 7), expected.narrow(0, 0, 7)));
  EXPECT_TRUE(at::equal(got.narrow(0, 8, kDecoding - 7), expected.narrow(0, 7, kDecoding - 7)));

  // The prompt's row is the prompt's alone, to rounding.
  Fixture single = Make(1);
  const at::Tensor prompt = *single.model->Forward({{*single.cache->Allocate(), prompt_tokens}},
                                                   single.cache.get());  // [1, hidden]
  EXPECT_TRUE(at::allclose(got.narrow(0, 7, 1), prompt, 1e-4, 1e-5));
}

// With all_positions, the hidden states come in the rows' order, whatever order the forward packs them in.
TEST(LlamaForward, AllPositionsInTheRowsOrder) {
  std::vector<Fixture> f = Decoding(2);
  const int prompt_0 = *f[0].cache->Allocate(), prompt_1 = *f[1].cache->Allocate();
  const std::vector<int32_t> three = {3}, four = {4}, prompt = Tokens(5, 9);
  const at::Tensor prompt_first =  // [1 + 5 + 1, hidden]
      *f[0].model->Forward({{0, three}, {prompt_0, prompt}, {1, four}}, f[0].cache.get(), true);
  const at::Tensor prompt_last =  // [1 + 1 + 5, hidden]
      *f[1].model->Forward({{1, four}, {0, three}, {prompt_1, prompt}}, f[1].cache.get(), true);
  ASSERT_EQ(prompt_first.size(0), 7);
  EXPECT_TRUE(at::equal(prompt_first.narrow(0, 0, 1), prompt_last.narrow(0, 1, 1)));
  EXPECT_TRUE(at::equal(prompt_first.narrow(0, 1, 5), prompt_last.narrow(0, 2, 5)));
  EXPECT_TRUE(at::equal(prompt_first.narrow(0, 6, 1), prompt_last.narrow(0, 0, 1)));
}

// With int8 weights, the logits of chosen vocabulary rows (PAD's candidates) are the full logits' at those
// rows: both multiply the hidden state as the int8 kernels quantize it (to int16 steps), so the only
// difference is float32's summation order (without the quantization in LogitsAt, 1e-5 of the largest).
TEST(LlamaLogits, Int8LogitsAtEqualTheFullLogits) {
  ModelOptions options;
  options.quantization = Quantization::kInt8;
  if (std::string(Make(1).model->cpu_kernels()) == "none") GTEST_SKIP() << "no CPU kernels here";
  Fixture f = Make(1, options);
  const at::Tensor hidden = at::randn({3, 64});               // [3, hidden]
  const at::Tensor ids = at::randint(97, {3, 5}, at::kLong);  // [3, 5]
  const at::Tensor full = *f.model->Logits(hidden);           // [3, vocab]
  const at::Tensor chosen = *f.model->LogitsAt(hidden, ids);  // [3, 5]
  const double error = (chosen - full.gather(1, ids)).abs().max().item<double>();
  EXPECT_LT(error, 1e-6 * full.abs().max().item<double>());
}

}  // namespace
}  // namespace pad
