#include "pad/decode_graphs.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <vector>

#include "pad/tensor_source.h"

namespace pad {
namespace {

// A two-layer grouped-query Llama with random weights, and a random rank-4 LoRA on all seven projections.
LlamaConfig TinyConfig() {
  LlamaConfig config;
  config.vocab_size = 97;
  config.hidden_size = 32;
  config.intermediate_size = 48;
  config.num_hidden_layers = 2;
  config.num_attention_heads = 4;
  config.num_key_value_heads = 2;
  config.head_dim = 8;
  return config;
}

struct Fixture {
  std::unique_ptr<LlamaModel> model;
  std::unique_ptr<LoraAdapter> adapter;
  std::unique_ptr<KvCache> eager;  // driven by LlamaModel::Forward
  std::unique_ptr<KvCache> fixed;  // driven by DecodeGraphs, with a padding block
};

Fixture Make(int64_t slots, int64_t max_seq_len) {
  at::manual_seed(7);
  Fixture f;
  const LlamaConfig config = TinyConfig();
  f.model = *LlamaModel::FromTensors(config, *RandomTensors::ForLlama(config), ModelOptions());
  f.adapter =
      *LoraAdapter::FromTensors(*RandomTensors::ForLora(config, 4), 2.0, config, ModelOptions(), "lora");
  KvCacheOptions options;
  options.max_slots = slots;
  options.max_seq_len = max_seq_len;
  options.block_size = 16;
  f.eager = *KvCache::Create(config, options, ModelOptions());
  options.padding_block = true;
  f.fixed = *KvCache::Create(config, options, ModelOptions());
  return f;
}

TEST(DecodeGraphsTest, Buckets) {
  EXPECT_EQ(DecodeGraphs::RowBucket(1, 64), 1);
  EXPECT_EQ(DecodeGraphs::RowBucket(3, 64), 4);
  EXPECT_EQ(DecodeGraphs::RowBucket(8, 64), 8);
  EXPECT_EQ(DecodeGraphs::RowBucket(9, 64), 16);
  EXPECT_EQ(DecodeGraphs::RowBucket(17, 64), 24);
  EXPECT_EQ(DecodeGraphs::RowBucket(17, 20), 20);
  EXPECT_EQ(DecodeGraphs::RowBuckets(20), (std::vector<int64_t>{1, 2, 4, 8, 16, 20}));
  EXPECT_EQ(DecodeGraphs::RowBuckets(3), (std::vector<int64_t>{1, 2, 3}));
}

// Slots 0-5 hold prompts of different lengths; 1 and 4 are not decoding (a prompt still prefilling), and the
// rest decode in an order that is not slot order, two of them with the adapter, their blocks interleaved in
// the pool as they grow. Every step's hidden states equal LlamaModel::Forward's, and the blocks of the slots
// that do not decode are never written.
TEST(DecodeGraphsTest, EqualsForwardAndLeavesOtherSlotsAlone) {
  Fixture f = Make(/*slots=*/8, /*max_seq_len=*/320);
  const std::vector<int64_t> prompt_lengths = {230, 9, 41, 5, 17, 250};
  for (size_t s = 0; s < prompt_lengths.size(); ++s) {
    std::vector<int32_t> prompt;
    for (int64_t t = 0; t < prompt_lengths[s]; ++t)
      prompt.push_back(static_cast<int32_t>((s * 31 + t * 7) % 97));
    const LoraAdapter* adapter = s == 2 || s == 5 ? f.adapter.get() : nullptr;
    for (KvCache* cache : {f.eager.get(), f.fixed.get()}) {
      const int slot = *cache->Allocate();
      ASSERT_EQ(slot, static_cast<int>(s));
      ASSERT_TRUE(f.model->Forward({ForwardRow{slot, prompt, adapter}}, cache).ok());
    }
  }
  auto graphs = DecodeGraphs::Create(f.model.get(), f.fixed.get(), {f.adapter.get()});
  ASSERT_TRUE(graphs.ok()) << graphs.status();
  // Keys of the idle slots' blocks, layer 0, before.
  std::vector<int64_t> idle_blocks;
  for (const int slot : {1, 4}) {
    for (const int32_t block : f.fixed->block_table(slot)) idle_blocks.push_back(block);
  }
  const at::Tensor idle_before = f.fixed->keys(0).index_select(0, at::tensor(idle_blocks)).clone();

  const std::vector<int> order = {5, 0, 3, 2};
  std::vector<int32_t> tokens = {11, 12, 13, 14};
  for (int step = 0; step < 40; ++step) {
    std::vector<ForwardRow> rows;
    for (size_t r = 0; r < order.size(); ++r) {
      const LoraAdapter* adapter = order[r] == 2 || order[r] == 5 ? f.adapter.get() : nullptr;
      rows.push_back(ForwardRow{order[r], absl::MakeConstSpan(&tokens[r], 1), adapter});
    }
    auto eager = f.model->Forward(rows, f.eager.get());
    auto fixed = (*graphs)->Forward(rows);
    ASSERT_TRUE(eager.ok()) << eager.status();
    ASSERT_TRUE(fixed.ok()) << fixed.status();
    ASSERT_EQ(fixed->sizes(), eager->sizes());
    EXPECT_TRUE(at::allclose(*fixed, *eager, /*rtol=*/1e-4, /*atol=*/1e-5))
        << "step " << step << ": largest difference " << (*fixed - *eager).abs().max().item<float>();
    for (size_t r = 0; r < order.size(); ++r) {
      EXPECT_EQ(f.fixed->length(order[r]), f.eager->length(order[r]));
      tokens[r] = static_cast<int32_t>((tokens[r] * 5 + step) % 97);
    }
  }
  EXPECT_EQ(f.fixed->length(5), 290);
  // Blocks taken while decoding interleave: slot 3's second block comes after slot 0's sixteenth.
  EXPECT_GT(f.fixed->block_table(3)[1], f.fixed->block_table(0)[15]);
  EXPECT_TRUE(at::equal(f.fixed->keys(0).index_select(0, at::tensor(idle_blocks)), idle_before));
  EXPECT_EQ((*graphs)->graphs(), 0);  // nothing is recorded on the CPU
  EXPECT_EQ((*graphs)->steps(), 40);
}

TEST(DecodeGraphsTest, RefusesBadRows) {
  Fixture f = Make(/*slots=*/4, /*max_seq_len=*/8);
  auto graphs = DecodeGraphs::Create(f.model.get(), f.fixed.get(), {});
  ASSERT_TRUE(graphs.ok());
  const int slot = *f.fixed->Allocate();
  const std::vector<int32_t> two = {1, 2}, bad = {97}, one = {3};
  auto message = [&](std::vector<ForwardRow> rows) {
    return std::string((*graphs)->Forward(rows).status().message());
  };
  EXPECT_EQ(message({ForwardRow{1, one}}),
            "decode graphs: rows[0].slot 1 is not an allocated slot, or appears twice");
  EXPECT_EQ(message({ForwardRow{slot, two}}), "decode graphs: rows[0] has 2 tokens, not 1");
  EXPECT_EQ(message({ForwardRow{slot, bad}}), "decode graphs: rows[0] token 97 outside the vocabulary of 97");
  EXPECT_EQ(message({ForwardRow{slot, one, f.adapter.get()}}),
            "decode graphs: rows[0] has an adapter not given at Create");
  for (int i = 0; i < 8; ++i) ASSERT_TRUE((*graphs)->Forward({ForwardRow{slot, one}}).ok());
  EXPECT_EQ((*graphs)->Forward({ForwardRow{slot, one}}).status().code(), absl::StatusCode::kOutOfRange);

  KvCacheOptions options;  // no padding block
  auto plain = KvCache::Create(TinyConfig(), options, ModelOptions());
  EXPECT_EQ(DecodeGraphs::Create(f.model.get(), plain->get(), {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace pad
