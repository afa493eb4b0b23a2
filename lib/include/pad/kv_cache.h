// The key/value cache of one model: a pool of fixed-size blocks, taken by sequences as they grow (vLLM's
// paged cache), with full blocks shared between sequences whose tokens up to them are the same (prefix
// caching).
#ifndef PAD_KV_CACHE_H_
#define PAD_KV_CACHE_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "pad/model_config.h"
#include "pad/model_options.h"

namespace pad {

struct KvCacheOptions {
  int64_t max_slots = 8;       // sequences resident at once: a limit, not memory
  int64_t max_seq_len = 4096;  // tokens per sequence, prompt and generated
  int64_t block_size = 16;     // tokens per block
  int64_t num_blocks =
      0;  // the pool; 0: max_slots * max_seq_len tokens' worth (every sequence at its longest)
  // Full blocks are kept, keyed by their tokens, after their sequences end, and reused by later sequences
  // that begin with the same tokens, until the pool needs them back (least recently used first).
  bool prefix_cache = true;
  // One more block, index num_blocks, never allocated: fixed-shape decode steps (DecodeGraphs) write the keys
  // and values of their padding rows there.
  bool padding_block = false;
};

// Memory is allocated once, so what a deployment needs is known at start-up. A slot is one sequence: taken by
// Allocate, grown by Reserve (blocks taken from the pool as its length needs them), filled by the model's
// Forward, and returned by Free; its blocks need not be adjacent, and nothing is ever moved. Not thread-safe:
// the engine thread owns it.
class KvCache {
 public:
  // Bytes of one block: keys and values of block_size tokens in every layer.
  static int64_t BlockBytes(const LlamaConfig& config, int64_t block_size, const ModelOptions& model_options);
  // RESOURCE_EXHAUSTED when the tensors cannot be allocated.
  static absl::StatusOr<std::unique_ptr<KvCache>> Create(const LlamaConfig& config,
                                                         const KvCacheOptions& options,
                                                         const ModelOptions& model_options);

  // A free slot with length 0 and no blocks, or nullopt when every slot is taken. `prefix_key` names what
  // computes its keys and values (the model, or its adapter): prefixes are shared only between equal keys.
  std::optional<int> Allocate(uint64_t prefix_key = 0);
  // Returns `slot`'s blocks to the pool (its full blocks stay cached for reuse) and frees the slot.
  void Free(int slot);

  // Attaches to empty `slot` the longest run of cached blocks holding a prefix of `tokens`, leaving at least
  // the last token to compute (its hidden state is needed); the slot's length becomes the tokens reused.
  int64_t MatchPrefix(int slot, absl::Span<const int32_t> tokens);
  // The tokens MatchPrefix would reuse for a slot of `prefix_key`.
  int64_t CachedPrefix(uint64_t prefix_key, absl::Span<const int32_t> tokens) const;
  // Of blocks_available(), what a new slot of `prefix_key` takes to hold `tokens`: blocks for what the prefix
  // cache lacks, and the cached blocks it reuses that no sequence holds (they leave the evictable ones).
  int64_t BlocksToAdmit(uint64_t prefix_key, absl::Span<const int32_t> tokens) const;

  // Blocks `slot` lacks to hold `length` tokens.
  int64_t BlocksNeeded(int slot, int64_t length) const;
  // Blocks of `length` tokens.
  int64_t BlocksFor(int64_t length) const;
  // Takes the blocks `slot` lacks to hold `length` tokens; false, taking none, when too few are free.
  bool Reserve(int slot, int64_t length);
  // Records `tokens`, just written by the model after what `slot` holds; a block they fill becomes cached.
  void Append(int slot, absl::Span<const int32_t> tokens);

  bool in_use(int slot) const { return slots_[slot].in_use; }
  int64_t length(int slot) const { return static_cast<int64_t>(slots_[slot].tokens.size()); }
  // [blocks of the slot], in position order: position p is in block_table(slot)[p / block_size].
  const std::vector<int32_t>& block_table(int slot) const { return slots_[slot].blocks; }
  // Where key head 0 of position `position` of `slot` is in a layer's keys viewed as
  // [blocks * kv_heads * block_size, head_dim] rows; head h is block_size rows further per head.
  int64_t CacheRow(int slot, int64_t position) const {
    return BlockRow(slots_[slot].blocks[position / options_.block_size]) + position % options_.block_size;
  }
  // The row of key head 0 of a block's first position.
  int64_t BlockRow(int64_t block) const { return block * kv_heads_ * options_.block_size; }

  int64_t max_slots() const { return options_.max_slots; }
  int64_t max_seq_len() const { return options_.max_seq_len; }
  int64_t block_size() const { return options_.block_size; }
  int64_t num_blocks() const { return options_.num_blocks; }
  // num_blocks, or -1 without options.padding_block.
  int64_t padding_block() const { return options_.padding_block ? options_.num_blocks : -1; }
  // Blocks a sequence can take now: free ones and cached ones no sequence holds.
  int64_t blocks_available() const;
  int64_t blocks_used() const {
    return options_.num_blocks - static_cast<int64_t>(free_.size()) - evictable();
  }
  // Blocks holding a cached prefix, held by a sequence or not.
  int64_t blocks_cached() const { return static_cast<int64_t>(by_hash_.size()); }
  int64_t slots_in_use() const;
  int64_t tokens_in_use() const;
  int64_t prefix_hit_tokens() const { return prefix_hit_tokens_; }
  int64_t bytes() const;

  // [num_blocks (+ 1 with the padding block), num_key_value_heads, block_size, head_dim]: a head's keys of
  // a block are contiguous, as the CPU kernels read them; FlashAttention's paged kernel reads the same memory
  // through transpose(1, 2), its [blocks, block_size, heads, head_dim] by strides.
  at::Tensor& keys(int64_t layer) { return keys_[layer]; }
  at::Tensor& values(int64_t layer) { return values_[layer]; }

 private:
  KvCache() = default;
  struct Slot {
    bool in_use = false;
    uint64_t prefix_key = 0;
    std::vector<int32_t> tokens;  // written so far
    std::vector<int32_t> blocks;  // block table
    uint64_t chain = 0;           // hash of tokens up to the last full block
  };
  struct Block {
    int32_t references = 0;
    uint64_t hash = 0;                 // of its tokens and every token before them; 0: not cached
    std::vector<int32_t> tokens;       // while cached: checked on a match, so a hash collision cannot hit
    std::list<int32_t>::iterator lru;  // in evictable_, while cached and unreferenced
  };
  // The hash of a full block: its tokens, the chain before it and the key.
  static uint64_t BlockHash(uint64_t chain, uint64_t prefix_key, absl::Span<const int32_t> tokens);
  int64_t evictable() const { return static_cast<int64_t>(evictable_.size()); }
  // A block for a sequence: a free one, else the least recently used cached one (forgotten).
  int32_t TakeBlock();
  void Release(int32_t block);

  KvCacheOptions options_;
  int64_t kv_heads_ = 0;
  std::vector<at::Tensor> keys_;    // per layer: [num_blocks (+ 1), kv_heads, block_size, head_dim]
  std::vector<at::Tensor> values_;  // per layer: [num_blocks (+ 1), kv_heads, block_size, head_dim]
  std::vector<Slot> slots_;         // [max_slots]
  std::vector<Block> blocks_;       // [num_blocks]
  std::vector<int32_t> free_;       // uncached unreferenced blocks
  std::list<int32_t> evictable_;    // cached unreferenced blocks, least recently used first
  absl::flat_hash_map<uint64_t, int32_t> by_hash_;  // cached blocks
  int64_t prefix_hit_tokens_ = 0;
};

}  // namespace pad

#endif  // PAD_KV_CACHE_H_
