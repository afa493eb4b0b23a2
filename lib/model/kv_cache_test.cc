#include "pad/kv_cache.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

namespace pad {
namespace {

LlamaConfig TinyConfig() {
  LlamaConfig config;
  config.num_hidden_layers = 2;
  config.num_key_value_heads = 2;
  config.head_dim = 4;
  return config;
}

TEST(KvCacheTest, PackingMovesTheTopSlotIntoTheLowestHole) {
  KvCacheOptions options;
  options.max_slots = 4;
  options.max_seq_len = 8;
  auto cache = KvCache::Create(TinyConfig(), options, ModelOptions());
  ASSERT_TRUE(cache.ok()) << cache.status();
  KvCache& c = **cache;
  for (int i = 0; i < 4; ++i) ASSERT_EQ(c.Allocate(), i);
  EXPECT_FALSE(c.NextPackingMove().has_value());
  // Slot 3 holds 5 tokens of keys 3.0 and values -3.0 in every layer.
  for (int64_t layer = 0; layer < 2; ++layer) {
    c.keys(layer)[3].narrow(1, 0, 5).fill_(3.0);
    c.values(layer)[3].narrow(1, 0, 5).fill_(-3.0);
  }
  c.Advance(3, 5);

  c.Free(1);
  const auto move = c.NextPackingMove();
  ASSERT_TRUE(move.has_value());
  EXPECT_EQ(*move, std::make_pair(3, 1));
  c.Move(3, 1);
  EXPECT_TRUE(c.in_use(1));
  EXPECT_FALSE(c.in_use(3));
  EXPECT_EQ(c.length(1), 5);
  EXPECT_EQ(c.length(3), 0);
  for (int64_t layer = 0; layer < 2; ++layer) {
    EXPECT_TRUE(c.keys(layer)[1].narrow(1, 0, 5).eq(3.0).all().item<bool>());
    EXPECT_TRUE(c.values(layer)[1].narrow(1, 0, 5).eq(-3.0).all().item<bool>());
  }
  EXPECT_FALSE(c.NextPackingMove().has_value());  // 0, 1, 2 in use: packed
  EXPECT_EQ(c.Allocate(), 3);                     // a new sequence takes the top of the run

  c.Free(0);
  c.Free(3);
  EXPECT_EQ(c.NextPackingMove(), std::make_pair(2, 0));
}

}  // namespace
}  // namespace pad
