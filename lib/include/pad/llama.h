// LlamaForCausalLM in LibTorch: batched prefill and decode over a paged KV cache.
#ifndef PAD_LLAMA_H_
#define PAD_LLAMA_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "pad/kv_cache.h"
#include "pad/lora.h"
#include "pad/model_config.h"
#include "pad/model_options.h"
#include "pad/tensor_source.h"

namespace pad {

// One row of a forward batch: `tokens` to append to the sequence held in cache slot `slot`. A prompt is
// one row with all its tokens (prefill), or a chunk of them; a decode step is one row per sequence with one
// token each. Rows of any lengths run together, packed: none is padded to another's length.
// Rows with an `adapter` run with its LoRA updates (a reward model sharing this backbone); rows without
// run the plain weights, in the same batch.
struct ForwardRow {
  int slot = 0;
  absl::Span<const int32_t> tokens;
  const LoraAdapter* adapter = nullptr;
};

// A decode step in fixed shapes, so that it can be recorded once and replayed as a CUDA graph
// (DecodeGraphs): S rows of one token each, whose keys are read through block tables of M blocks; rows that
// do not decode this step write into the cache's padding block and their output is not used. Every per-step
// value is read from device tensors by kernels, so that the step's inputs can be rewritten in place between
// replays.
struct FixedDecodeStep {
  int64_t rows = 0;    // S
  int64_t blocks = 0;  // M: every row's key end is <= M * block_size
  // [5 + M, S] int64: token id, position, cache row written (KvCache::CacheRow: of key head 0),
  // key end (the keys it sees: position + 1), adapter (index into `adapters`, or -1), then the row's M
  // blocks (the padding block past its own)
  at::Tensor inputs;
  std::vector<const LoraAdapter*> adapters;
};

struct LlamaLayer;
enum class CpuIsa;

// The weights of one causal LM, resident on one device; immutable after loading, so every method is const
// (Forward writes only the cache it is given, which one thread at a time owns). Errors, including LibTorch's,
// come back as Status.
class LlamaModel {
 public:
  // Loads <model_dir>/config.json and its safetensors weights.
  static absl::StatusOr<std::unique_ptr<LlamaModel>> Load(const std::string& model_dir,
                                                          const ModelOptions& options);
  // From any source of the Hugging Face tensor names: a checkpoint, or random weights for benchmarks.
  static absl::StatusOr<std::unique_ptr<LlamaModel>> FromTensors(const LlamaConfig& config,
                                                                 const TensorSource& tensors,
                                                                 const ModelOptions& options);
  ~LlamaModel();

  // Runs every row's tokens through the model in one batch, writing their keys and values into `cache`
  // after what each slot already holds (taking the blocks they need). Returns the final hidden states
  // (after the last RMSNorm): [rows, hidden] at each row's last token, or with `all_positions`
  // [total tokens, hidden] in row order. INVALID_ARGUMENT for a bad slot or token id; OUT_OF_RANGE when a
  // slot would exceed max_seq_len; RESOURCE_EXHAUSTED, before anything runs, when the cache lacks blocks.
  absl::StatusOr<at::Tensor> Forward(absl::Span<const ForwardRow> rows, KvCache* cache,
                                     bool all_positions = false) const;
  // Forward's checks of `rows`, errors prefixed by `caller`, then the blocks they need taken.
  absl::Status PrepareRows(absl::Span<const ForwardRow> rows, KvCache* cache, absl::string_view caller) const;

  // The decode step `step` describes, over `cache` (which has a padding block): hidden [S, hidden] after
  // the final norm. Writes every row's key and value; does not Append to the cache.
  // LibTorch's operations only, none that waits for the device, so that it can be captured.
  absl::StatusOr<at::Tensor> DecodeFixed(const FixedDecodeStep& step, KvCache* cache) const;

  // hidden [n, hidden] -> logits [n, vocab], float32.
  absl::StatusOr<at::Tensor> Logits(const at::Tensor& hidden) const;
  // hidden [n, hidden], token_ids [n, k] (int64) -> logits [n, k] of just those vocabulary rows, float32.
  absl::StatusOr<at::Tensor> LogitsAt(const at::Tensor& hidden, const at::Tensor& token_ids) const;

  const LlamaConfig& config() const { return config_; }
  const ModelOptions& options() const { return options_; }
  // The directory it was loaded from; empty when built from a checkpoint.
  const std::string& dir() const { return dir_; }
  int64_t parameter_bytes() const;
  // The instruction set of the CPU kernels the products run on ("avx2", "avx512", "avx512_bf16"), or "none"
  // when LibTorch's run them all (off the CPU, cpu_kernels off, or no AVX2).
  const char* cpu_kernels() const;

 private:
  LlamaModel(LlamaConfig config, ModelOptions options);
  at::Tensor ForwardUnchecked(absl::Span<const ForwardRow> rows, KvCache* cache, bool all_positions) const;
  struct PackedRows;
  // Attention of the packed query tokens over the cache through the rows' block tables: the one function
  // every forward's attention runs (PackedRows tells). q [tokens, heads, head_dim] (a view into qkv, rows
  // contiguous) -> [tokens, heads * head_dim].
  at::Tensor Attention(const at::Tensor& q, const at::Tensor& cache_k, const at::Tensor& cache_v,
                       const PackedRows& packed, const KvCache& cache) const;

  LlamaConfig config_;
  ModelOptions options_;
  CpuIsa kernel_isa_;  // the CPU kernels' instruction set; kNone: LibTorch's products only
  std::string dir_;
  at::Tensor embed_tokens_;  // [vocab, hidden]
  std::vector<LlamaLayer> layers_;
  at::Tensor final_norm_;      // [hidden]
  at::Tensor lm_head_;         // [vocab, hidden]; the embedding itself when tied (int8 with quantization)
  at::Tensor lm_head_scales_;  // [vocab, hidden / 32] float32 with int8 quantization, else undefined
  at::Tensor inv_freq_;        // [head_dim / 2] float32 rotary frequencies
};

}  // namespace pad

#endif  // PAD_LLAMA_H_
