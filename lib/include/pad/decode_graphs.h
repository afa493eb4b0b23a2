// Decode steps in a few fixed shapes, recorded once each as CUDA graphs and replayed: a step of a large
// model is some thousand small kernels, whose launches cost more than their work at small batches.
#ifndef PAD_DECODE_GRAPHS_H_
#define PAD_DECODE_GRAPHS_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "pad/kv_cache.h"
#include "pad/llama.h"
#include "pad/lora.h"

namespace pad {

// One model's decode steps over one cache (LlamaModel::DecodeFixed). A step's shape is its slot bucket (the
// highest decoding slot + 1, rounded up to 1, 2, 4, 8 or a multiple of 8) and its key bucket (the longest
// sequence after this token, rounded up to a multiple of 256), each capped by the cache. On a CUDA device
// the first step of each shape runs directly and is then recorded as a graph, which later steps replay with
// their inputs rewritten in place; on the CPU every step runs directly, the same arithmetic, so that the
// tests prove it. Not thread-safe: the engine thread owns it, as it owns the cache.
class DecodeGraphs {
 public:
  static int64_t SlotBucket(int64_t slots, int64_t max_slots);
  static int64_t KeyBucket(int64_t keys, int64_t max_seq_len);

  // `cache` must have a padding slot; `adapters` are all the adapters a row may run with. The model, the
  // cache and the adapters must outlive it. UNIMPLEMENTED on a CUDA device when this build has no CUDA
  // graphs.
  static absl::StatusOr<std::unique_ptr<DecodeGraphs>> Create(const LlamaModel* model, KvCache* cache,
                                                              std::vector<const LoraAdapter*> adapters);
  ~DecodeGraphs();

  // As LlamaModel::Forward for rows of one token each: hidden [rows, hidden] in row order, and the cache
  // advanced. INVALID_ARGUMENT for a bad row (naming it), OUT_OF_RANGE past max_seq_len.
  absl::StatusOr<at::Tensor> Forward(absl::Span<const ForwardRow> rows);

  // Graphs recorded so far (0 on the CPU), and steps run.
  int64_t graphs() const;
  int64_t steps() const { return steps_; }

 private:
  struct Graph;
  DecodeGraphs() = default;
  absl::StatusOr<at::Tensor> Capture(const FixedDecodeStep& step, Graph* graph);

  const LlamaModel* model_ = nullptr;
  KvCache* cache_ = nullptr;
  std::vector<const LoraAdapter*> adapters_;
  bool capture_ = false;
  int64_t steps_ = 0;
  std::map<int64_t, at::Tensor> inputs_;  // per slot bucket S: [5, S] int64, on the device
  std::map<std::pair<int64_t, int64_t>, std::unique_ptr<Graph>> graphs_;  // per (S, L)
};

}  // namespace pad

#endif  // PAD_DECODE_GRAPHS_H_
