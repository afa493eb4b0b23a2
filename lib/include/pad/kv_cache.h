// The key/value cache of one model: a fixed pool of sequence slots.
#ifndef PAD_KV_CACHE_H_
#define PAD_KV_CACHE_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "pad/model_config.h"
#include "pad/model_options.h"

namespace pad {

struct KvCacheOptions {
  int64_t max_slots = 8;       // sequences resident at once
  int64_t max_seq_len = 4096;  // tokens per sequence, prompt and generated
  // One more slot, index max_slots, that is never allocated: fixed-shape decode steps (DecodeGraphs) write
  // the keys and values of their padding rows there.
  bool padding_slot = false;
};

// Dense per-slot storage allocated once, so the memory a deployment needs is known at start-up and a
// request can never fail half-way for lack of it. A slot is taken by Allocate, filled by the model's
// Forward, and returned by Free. Not thread-safe: the engine thread owns it.
class KvCache {
 public:
  // Bytes of one slot: keys and values of max_seq_len tokens in every layer.
  static int64_t SlotBytes(const LlamaConfig& config, int64_t max_seq_len, const ModelOptions& model_options);
  // RESOURCE_EXHAUSTED when the tensors cannot be allocated.
  static absl::StatusOr<std::unique_ptr<KvCache>> Create(const LlamaConfig& config,
                                                         const KvCacheOptions& options,
                                                         const ModelOptions& model_options);

  // A free slot with length 0, or nullopt when every slot is taken.
  std::optional<int> Allocate();
  // Returns `slot` to the pool. Its contents are simply overwritten by the next owner.
  void Free(int slot);
  // Slots in use packed into [0, slots_in_use) let a batch of them be read in place (LlamaModel::Forward):
  // the highest slot in use and the lowest free one below it, to Move; nullopt when packed.
  std::optional<std::pair<int, int>> NextPackingMove() const;
  // Copies `from`'s keys and values into free slot `to`, which takes over its length; frees `from`.
  void Move(int from, int to);

  bool in_use(int slot) const { return in_use_[slot]; }
  int64_t length(int slot) const { return lengths_[slot]; }
  // Called by the model after writing `tokens` more positions of `slot`.
  void Advance(int slot, int64_t tokens) { lengths_[slot] += tokens; }

  int64_t max_slots() const { return options_.max_slots; }
  int64_t max_seq_len() const { return options_.max_seq_len; }
  // max_slots, or -1 without options.padding_slot.
  int64_t padding_slot() const { return options_.padding_slot ? options_.max_slots : -1; }
  int64_t slots_in_use() const;
  int64_t tokens_in_use() const;
  int64_t bytes() const;

  // [max_slots (+ 1 with the padding slot), num_key_value_heads, max_seq_len, head_dim]
  at::Tensor& keys(int64_t layer) { return keys_[layer]; }
  at::Tensor& values(int64_t layer) { return values_[layer]; }

 private:
  KvCache() = default;

  KvCacheOptions options_;
  std::vector<at::Tensor> keys_;  // per layer: [max_slots (+ 1), num_key_value_heads, max_seq_len, head_dim]
  std::vector<at::Tensor>
      values_;                    // per layer: [max_slots (+ 1), num_key_value_heads, max_seq_len, head_dim]
  std::vector<int64_t> lengths_;  // [max_slots] tokens written per slot
  std::vector<bool> in_use_;      // [max_slots]
};

}  // namespace pad

#endif  // PAD_KV_CACHE_H_
