// Decode steps in a few fixed shapes, recorded once each as CUDA graphs and replayed: a step of a large
// model is some thousand small kernels, whose launches cost more than their work at small batches.
#ifndef PAD_DECODE_GRAPHS_H_
#define PAD_DECODE_GRAPHS_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "pad/kv_cache.h"
#include "pad/llama.h"
#include "pad/lora.h"

namespace pad {

// One model's decode steps over one cache (LlamaModel::DecodeFixed). A step's shape is its row bucket alone
// (its rows rounded up to 1, 2, 4, 8 or a multiple of 8, capped by the cache's slots): every row reads its
// keys through a block table as long as max_seq_len allows, so the key length is no part of the shape. On
// a CUDA device every bucket's graph is recorded at Create (as vLLM does at start-up), and each step
// replays its bucket's with the inputs rewritten in place; on the CPU every step runs directly, the same
// arithmetic, so that the tests prove it. Not thread-safe: the engine thread owns it, as it owns the cache.
class DecodeGraphs {
 public:
  // The buckets for up to `max_rows` rows, and the one `rows` rows run in.
  static std::vector<int64_t> RowBuckets(int64_t max_rows);
  static int64_t RowBucket(int64_t rows, int64_t max_rows);

  // `cache` must have a padding block; `adapters` are all the adapters a row may run with. The model, the
  // cache and the adapters must outlive it. UNIMPLEMENTED on a CUDA device when this build has no CUDA
  // graphs.
  static absl::StatusOr<std::unique_ptr<DecodeGraphs>> Create(const LlamaModel* model, KvCache* cache,
                                                              std::vector<const LoraAdapter*> adapters);
  ~DecodeGraphs();

  // As LlamaModel::Forward for rows of one token each: hidden [rows, hidden] in row order, and the cache
  // appended to. INVALID_ARGUMENT for a bad row (naming it), OUT_OF_RANGE past max_seq_len,
  // RESOURCE_EXHAUSTED when the cache lacks blocks.
  absl::StatusOr<at::Tensor> Forward(absl::Span<const ForwardRow> rows);

  // Graphs recorded (0 on the CPU), steps run, and steps that replayed a graph.
  int64_t graphs() const;
  int64_t steps() const { return steps_; }
  int64_t replays() const { return replays_; }

 private:
  struct Graph;
  DecodeGraphs() = default;
  // Runs `step` once and records it into `graph`.
  absl::StatusOr<at::Tensor> Capture(const FixedDecodeStep& step, Graph* graph);
  // The step of `bucket` rows over inputs_[bucket] (made on first use).
  FixedDecodeStep StepFor(int64_t bucket);

  const LlamaModel* model_ = nullptr;
  KvCache* cache_ = nullptr;
  std::vector<const LoraAdapter*> adapters_;
  int64_t max_blocks_ = 0;  // M: blocks of a sequence at max_seq_len
  bool capture_ = false;
  int64_t steps_ = 0;
  int64_t replays_ = 0;
  std::map<int64_t, at::Tensor> inputs_;              // per row bucket S: [5 + M, S] int64, on the device
  std::map<int64_t, std::unique_ptr<Graph>> graphs_;  // per row bucket S
};

}  // namespace pad

#endif  // PAD_DECODE_GRAPHS_H_
