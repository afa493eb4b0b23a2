#include "pad/kv_cache.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <numeric>
#include <vector>

namespace pad {
namespace {

LlamaConfig TinyConfig() {
  LlamaConfig config;
  config.num_hidden_layers = 2;
  config.num_key_value_heads = 2;
  config.head_dim = 4;
  return config;
}

std::unique_ptr<KvCache> Make(int64_t slots, int64_t blocks, int64_t block_size = 4,
                              bool prefix_cache = true) {
  KvCacheOptions options;
  options.max_slots = slots;
  options.max_seq_len = 64;
  options.block_size = block_size;
  options.num_blocks = blocks;
  options.prefix_cache = prefix_cache;
  auto cache = KvCache::Create(TinyConfig(), options, ModelOptions());
  EXPECT_TRUE(cache.ok()) << cache.status();
  return std::move(*cache);
}

std::vector<int32_t> Tokens(int32_t first, int n) {
  std::vector<int32_t> tokens(n);
  std::iota(tokens.begin(), tokens.end(), first);
  return tokens;
}

TEST(KvCacheTest, LayoutAndDefaultPool) {
  KvCacheOptions options;
  options.max_slots = 3;
  options.max_seq_len = 10;
  options.block_size = 4;
  options.padding_block = true;
  auto cache = KvCache::Create(TinyConfig(), options, ModelOptions());
  ASSERT_TRUE(cache.ok());
  // Every slot at max_seq_len: 3 x ceil(10 / 4) blocks, plus the padding block.
  EXPECT_EQ((*cache)->num_blocks(), 9);
  EXPECT_EQ((*cache)->padding_block(), 9);
  EXPECT_EQ((*cache)->keys(1).sizes(), (std::vector<int64_t>{10, 2, 4, 4}));
  EXPECT_EQ((*cache)->bytes(), 2 * 2 * 10 * 4 * 2 * 4 * 4);
  EXPECT_EQ(KvCache::BlockBytes(TinyConfig(), 4, ModelOptions()), 2 * 2 * 4 * 2 * 4 * 4);
}

TEST(KvCacheTest, BlocksAreTakenAsASequenceGrowsAndGivenBack) {
  auto cache = Make(/*slots=*/2, /*blocks=*/5);
  const int a = *cache->Allocate(), b = *cache->Allocate();
  EXPECT_FALSE(cache->Allocate().has_value());  // slots are a limit of their own
  EXPECT_EQ(cache->BlocksNeeded(a, 5), 2);
  ASSERT_TRUE(cache->Reserve(a, 5));
  ASSERT_TRUE(cache->Reserve(b, 1));
  ASSERT_TRUE(cache->Reserve(a, 8));  // still within a's two blocks
  EXPECT_EQ(cache->block_table(a), (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(cache->block_table(b), (std::vector<int32_t>{2}));
  cache->Append(a, Tokens(100, 6));
  EXPECT_EQ(cache->length(a), 6);
  EXPECT_EQ(cache->CacheRow(a, 5), 1 * 2 * 4 + 1);  // block 1 of 2 heads of 4 rows, position 1 in it
  EXPECT_EQ(cache->blocks_used(), 3);
  EXPECT_EQ(cache->tokens_in_use(), 6);

  // Three more blocks than are free: none is taken.
  EXPECT_FALSE(cache->Reserve(b, 4 * 4));
  EXPECT_EQ(cache->block_table(b).size(), 1u);
  EXPECT_EQ(cache->blocks_available(), 2);

  cache->Free(a);
  EXPECT_EQ(cache->slots_in_use(), 1);
  EXPECT_EQ(cache->blocks_used(), 1);
  EXPECT_EQ(cache->blocks_available(), 4);
  EXPECT_TRUE(cache->Reserve(b, 4 * 4));  // what a gave back
  EXPECT_EQ(cache->blocks_available(), 1);
}

TEST(KvCacheTest, FullBlocksAreSharedByLaterSequencesWithTheSamePrefix) {
  auto cache = Make(/*slots=*/3, /*blocks=*/8);
  const std::vector<int32_t> prompt = Tokens(10, 11);  // two full blocks and 3 tokens
  const int a = *cache->Allocate(/*prefix_key=*/7);
  ASSERT_TRUE(cache->Reserve(a, 11));
  cache->Append(a, prompt);
  EXPECT_EQ(cache->blocks_cached(), 2);

  // The same prompt and key: its two full blocks, held by both now.
  const int b = *cache->Allocate(7);
  EXPECT_EQ(cache->CachedPrefix(7, prompt), 8);
  EXPECT_EQ(cache->MatchPrefix(b, prompt), 8);
  EXPECT_EQ(cache->length(b), 8);
  EXPECT_EQ(cache->block_table(b), (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(cache->blocks_used(), 3);
  EXPECT_EQ(cache->prefix_hit_tokens(), 8);

  // Another key (another adapter) shares nothing; nor does a sequence that differs before the blocks.
  EXPECT_EQ(cache->CachedPrefix(8, prompt), 0);
  std::vector<int32_t> other = prompt;
  other[0] = 99;
  EXPECT_EQ(cache->CachedPrefix(7, other), 0);
  other = prompt;
  other[5] = 99;  // in the second block
  EXPECT_EQ(cache->CachedPrefix(7, other), 4);
  // The last token is always computed: a prompt of exactly two blocks reuses one.
  EXPECT_EQ(cache->CachedPrefix(7, absl::MakeConstSpan(prompt).subspan(0, 8)), 4);

  // Admitting the prompt again takes one new block: its two cached ones are held already.
  EXPECT_EQ(cache->BlocksToAdmit(7, prompt), 1);

  // Freed, the blocks stay cached for the next sequence, and count as taken when it reuses them.
  cache->Free(a);
  cache->Free(b);
  EXPECT_EQ(cache->blocks_used(), 0);
  EXPECT_EQ(cache->blocks_cached(), 2);
  EXPECT_EQ(cache->blocks_available(), 8);
  EXPECT_EQ(cache->BlocksToAdmit(7, prompt), 3);
  const int c = *cache->Allocate(7);
  EXPECT_EQ(cache->MatchPrefix(c, prompt), 8);
}

TEST(KvCacheTest, CachedBlocksAreEvictedLeastRecentlyUsedFirst) {
  auto cache = Make(/*slots=*/2, /*blocks=*/3);
  // Three sequences of one full block each (and a token), one after another: blocks 0, 1, 2 cached.
  for (int32_t first : {10, 20, 30}) {
    const int slot = *cache->Allocate();
    ASSERT_TRUE(cache->Reserve(slot, 4));
    cache->Append(slot, Tokens(first, 4));
    cache->Free(slot);
  }
  EXPECT_EQ(cache->blocks_cached(), 3);
  // Reusing 10's block makes it the most recently used when it is given back.
  const std::vector<int32_t> ten = {10, 11, 12, 13, 14};
  const int reuse = *cache->Allocate();
  EXPECT_EQ(cache->MatchPrefix(reuse, ten), 4);
  cache->Free(reuse);
  // A new sequence needing two blocks takes 20's and 30's, forgetting them; 10's survives.
  const int fresh = *cache->Allocate();
  ASSERT_TRUE(cache->Reserve(fresh, 8));
  EXPECT_EQ(cache->blocks_cached(), 1);
  EXPECT_EQ(cache->CachedPrefix(0, ten), 4);
  EXPECT_EQ(cache->CachedPrefix(0, {20, 21, 22, 23, 24}), 0);
  EXPECT_EQ(cache->CachedPrefix(0, {30, 31, 32, 33, 34}), 0);
}

TEST(KvCacheTest, WithoutThePrefixCacheNothingIsKept) {
  auto cache = Make(/*slots=*/2, /*blocks=*/4, /*block_size=*/4, /*prefix_cache=*/false);
  const int a = *cache->Allocate();
  ASSERT_TRUE(cache->Reserve(a, 9));
  cache->Append(a, Tokens(1, 9));
  EXPECT_EQ(cache->blocks_cached(), 0);
  const int b = *cache->Allocate();
  EXPECT_EQ(cache->MatchPrefix(b, Tokens(1, 9)), 0);
  cache->Free(a);
  EXPECT_EQ(cache->blocks_available(), 4);
}

}  // namespace
}  // namespace pad
