#include "pad/kv_cache.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"

namespace pad {

int64_t KvCache::BlockBytes(const LlamaConfig& config, int64_t block_size,
                            const ModelOptions& model_options) {
  return 2 * config.num_hidden_layers * config.num_key_value_heads * block_size * config.head_dim *
         static_cast<int64_t>(c10::elementSize(model_options.dtype));
}

absl::StatusOr<std::unique_ptr<KvCache>> KvCache::Create(const LlamaConfig& config,
                                                         const KvCacheOptions& given,
                                                         const ModelOptions& model_options) {
  KvCacheOptions options = given;
  if (options.max_slots < 1) return absl::InvalidArgumentError("kv cache: max_slots must be at least 1");
  if (options.max_seq_len < 1) return absl::InvalidArgumentError("kv cache: max_seq_len must be at least 1");
  if (options.block_size < 1) return absl::InvalidArgumentError("kv cache: block_size must be at least 1");
  const int64_t blocks_per_sequence = (options.max_seq_len + options.block_size - 1) / options.block_size;
  if (options.num_blocks == 0) options.num_blocks = options.max_slots * blocks_per_sequence;
  if (options.num_blocks < 1 || options.num_blocks >= (int64_t{1} << 31) - 1) {
    return absl::InvalidArgumentError(absl::StrCat("kv cache: ", options.num_blocks, " blocks"));
  }
  std::unique_ptr<KvCache> cache(new KvCache());
  cache->options_ = options;
  cache->kv_heads_ = config.num_key_value_heads;
  cache->slots_.resize(options.max_slots);
  cache->blocks_.resize(options.num_blocks);
  // Taken from the back: block 0 first, so a fresh cache fills in order.
  for (int64_t b = options.num_blocks - 1; b >= 0; --b) cache->free_.push_back(static_cast<int32_t>(b));
  try {
    const auto tensor_options = at::TensorOptions().dtype(model_options.dtype).device(model_options.device);
    for (int64_t layer = 0; layer < config.num_hidden_layers; ++layer) {
      // Zeroed so that positions no sequence has written are finite even where a mask lets them through.
      cache->keys_.push_back(at::zeros({options.num_blocks + (options.padding_block ? 1 : 0),
                                        config.num_key_value_heads, options.block_size, config.head_dim},
                                       tensor_options));
      cache->values_.push_back(at::zeros_like(cache->keys_.back()));
    }
  } catch (const c10::Error& e) {
    return absl::ResourceExhaustedError(absl::StrCat("kv cache of ", options.num_blocks, " blocks of ",
                                                     options.block_size,
                                                     " tokens does not fit: ", e.what_without_backtrace()));
  }
  return cache;
}

std::optional<int> KvCache::Allocate(uint64_t prefix_key) {
  for (int slot = 0; slot < options_.max_slots; ++slot) {
    if (!slots_[slot].in_use) {
      slots_[slot] = Slot();
      slots_[slot].in_use = true;
      slots_[slot].prefix_key = prefix_key;
      return slot;
    }
  }
  return std::nullopt;
}

void KvCache::Free(int slot) {
  for (const int32_t block : slots_[slot].blocks) Release(block);
  slots_[slot] = Slot();
}

void KvCache::Release(int32_t block) {
  Block& b = blocks_[block];
  if (--b.references > 0) return;
  if (b.hash != 0) {
    b.lru = evictable_.insert(evictable_.end(), block);  // most recently used last
  } else {
    free_.push_back(block);
  }
}

int32_t KvCache::TakeBlock() {
  int32_t block;
  if (!free_.empty()) {
    block = free_.back();
    free_.pop_back();
  } else {
    block = evictable_.front();
    evictable_.pop_front();
    by_hash_.erase(blocks_[block].hash);
    blocks_[block].hash = 0;
    blocks_[block].tokens.clear();
  }
  blocks_[block].references = 1;
  return block;
}

uint64_t KvCache::BlockHash(uint64_t chain, uint64_t prefix_key, absl::Span<const int32_t> tokens) {
  const uint64_t hash = absl::HashOf(chain, prefix_key, tokens);
  return hash == 0 ? 1 : hash;  // 0 means "not cached"
}

int64_t KvCache::CachedPrefix(uint64_t prefix_key, absl::Span<const int32_t> tokens) const {
  if (!options_.prefix_cache || tokens.empty()) return 0;
  const int64_t size = options_.block_size;
  const int64_t most = (static_cast<int64_t>(tokens.size()) - 1) / size;  // the last token is computed
  uint64_t chain = 0;
  int64_t matched = 0;
  for (; matched < most; ++matched) {
    const auto block_tokens = tokens.subspan(matched * size, size);
    chain = BlockHash(chain, prefix_key, block_tokens);
    const auto it = by_hash_.find(chain);
    if (it == by_hash_.end() || absl::MakeConstSpan(blocks_[it->second].tokens) != block_tokens) break;
  }
  return matched * size;
}

int64_t KvCache::MatchPrefix(int slot, absl::Span<const int32_t> tokens) {
  Slot& s = slots_[slot];
  const int64_t matched = CachedPrefix(s.prefix_key, tokens);
  const int64_t size = options_.block_size;
  for (int64_t i = 0; i < matched / size; ++i) {
    const auto block_tokens = tokens.subspan(i * size, size);
    s.chain = BlockHash(s.chain, s.prefix_key, block_tokens);
    const int32_t block = by_hash_.at(s.chain);
    if (blocks_[block].references++ == 0) evictable_.erase(blocks_[block].lru);
    s.blocks.push_back(block);
  }
  s.tokens.assign(tokens.begin(), tokens.begin() + matched);
  prefix_hit_tokens_ += matched;
  return matched;
}

int64_t KvCache::BlocksFor(int64_t length) const {
  return (length + options_.block_size - 1) / options_.block_size;
}

int64_t KvCache::BlocksToAdmit(uint64_t prefix_key, absl::Span<const int32_t> tokens) const {
  const int64_t size = options_.block_size;
  const int64_t reused = CachedPrefix(prefix_key, tokens) / size;
  int64_t idle = 0;  // reused blocks no sequence holds
  uint64_t chain = 0;
  for (int64_t i = 0; i < reused; ++i) {
    chain = BlockHash(chain, prefix_key, tokens.subspan(i * size, size));
    idle += blocks_.at(by_hash_.at(chain)).references == 0;
  }
  return BlocksFor(static_cast<int64_t>(tokens.size())) - reused + idle;
}

int64_t KvCache::BlocksNeeded(int slot, int64_t length) const {
  const int64_t have = static_cast<int64_t>(slots_[slot].blocks.size());
  return std::max<int64_t>(0, (length + options_.block_size - 1) / options_.block_size - have);
}

bool KvCache::Reserve(int slot, int64_t length) {
  const int64_t needed = BlocksNeeded(slot, length);
  if (needed > blocks_available()) return false;
  for (int64_t i = 0; i < needed; ++i) slots_[slot].blocks.push_back(TakeBlock());
  return true;
}

void KvCache::Append(int slot, absl::Span<const int32_t> tokens) {
  Slot& s = slots_[slot];
  const int64_t size = options_.block_size;
  for (const int32_t token : tokens) {
    s.tokens.push_back(token);
    const int64_t length = static_cast<int64_t>(s.tokens.size());
    if (length % size != 0) continue;
    // A block just filled: its hash continues the chain, and it becomes cached unless an equal block is.
    const auto block_tokens = absl::MakeConstSpan(s.tokens).subspan(length - size, size);
    s.chain = BlockHash(s.chain, s.prefix_key, block_tokens);
    if (!options_.prefix_cache || by_hash_.contains(s.chain)) continue;
    Block& block = blocks_[s.blocks[length / size - 1]];
    block.hash = s.chain;
    block.tokens.assign(block_tokens.begin(), block_tokens.end());
    by_hash_[s.chain] = s.blocks[length / size - 1];
  }
}

int64_t KvCache::blocks_available() const { return static_cast<int64_t>(free_.size()) + evictable(); }

int64_t KvCache::slots_in_use() const {
  return std::count_if(slots_.begin(), slots_.end(), [](const Slot& s) { return s.in_use; });
}

int64_t KvCache::tokens_in_use() const {
  int64_t total = 0;
  for (const Slot& s : slots_) total += static_cast<int64_t>(s.tokens.size());
  return total;
}

int64_t KvCache::bytes() const {
  int64_t total = 0;
  for (const auto& t : keys_) total += t.nbytes();
  for (const auto& t : values_) total += t.nbytes();
  return total;
}

}  // namespace pad
