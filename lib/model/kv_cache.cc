#include "pad/kv_cache.h"

#include <ATen/ATen.h>

#include <numeric>

#include "absl/strings/str_cat.h"

namespace pad {

int64_t KvCache::SlotBytes(const LlamaConfig& config, int64_t max_seq_len,
                           const ModelOptions& model_options) {
  return 2 * config.num_hidden_layers * config.num_key_value_heads * max_seq_len * config.head_dim *
         static_cast<int64_t>(c10::elementSize(model_options.dtype));
}

absl::StatusOr<std::unique_ptr<KvCache>> KvCache::Create(const LlamaConfig& config,
                                                         const KvCacheOptions& options,
                                                         const ModelOptions& model_options) {
  if (options.max_slots < 1) return absl::InvalidArgumentError("kv cache: max_slots must be at least 1");
  if (options.max_seq_len < 1) return absl::InvalidArgumentError("kv cache: max_seq_len must be at least 1");
  std::unique_ptr<KvCache> cache(new KvCache());
  cache->options_ = options;
  cache->lengths_.assign(options.max_slots, 0);
  cache->in_use_.assign(options.max_slots, false);
  try {
    const auto tensor_options = at::TensorOptions().dtype(model_options.dtype).device(model_options.device);
    for (int64_t layer = 0; layer < config.num_hidden_layers; ++layer) {
      // Zeroed so that positions no sequence has written are finite even where a mask lets them through.
      cache->keys_.push_back(at::zeros({options.max_slots + (options.padding_slot ? 1 : 0),
                                        config.num_key_value_heads, options.max_seq_len, config.head_dim},
                                       tensor_options));
      cache->values_.push_back(at::zeros_like(cache->keys_.back()));
    }
  } catch (const c10::Error& e) {
    return absl::ResourceExhaustedError(absl::StrCat("kv cache of ", options.max_slots, " x ",
                                                     options.max_seq_len,
                                                     " tokens does not fit: ", e.what_without_backtrace()));
  }
  return cache;
}

std::optional<int> KvCache::Allocate() {
  for (int slot = 0; slot < options_.max_slots; ++slot) {
    if (!in_use_[slot]) {
      in_use_[slot] = true;
      lengths_[slot] = 0;
      return slot;
    }
  }
  return std::nullopt;
}

void KvCache::Free(int slot) {
  in_use_[slot] = false;
  lengths_[slot] = 0;
}

std::optional<std::pair<int, int>> KvCache::NextPackingMove() const {
  int highest = static_cast<int>(options_.max_slots) - 1;
  while (highest >= 0 && !in_use_[highest]) --highest;
  for (int slot = 0; slot < highest; ++slot) {
    if (!in_use_[slot]) return std::make_pair(highest, slot);
  }
  return std::nullopt;
}

void KvCache::Move(int from, int to) {
  const int64_t length = lengths_[from];
  if (length > 0) {
    for (size_t layer = 0; layer < keys_.size(); ++layer) {
      keys_[layer][to].narrow(1, 0, length).copy_(keys_[layer][from].narrow(1, 0, length));
      values_[layer][to].narrow(1, 0, length).copy_(values_[layer][from].narrow(1, 0, length));
    }
  }
  in_use_[to] = true;
  lengths_[to] = length;
  Free(from);
}

int64_t KvCache::slots_in_use() const { return std::count(in_use_.begin(), in_use_.end(), true); }

int64_t KvCache::tokens_in_use() const {
  return std::accumulate(lengths_.begin(), lengths_.end(), int64_t{0});
}

int64_t KvCache::bytes() const {
  int64_t total = 0;
  for (const auto& t : keys_) total += t.nbytes();
  for (const auto& t : values_) total += t.nbytes();
  return total;
}

}  // namespace pad
