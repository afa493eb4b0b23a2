// The decoder as the engine sees it, without LibTorch: its limits, prepared requests, per-token events,
// and the BatchDecoder interface that PadDecoder implements (and the scheduler's tests fake). The engine's
// public API, and so the server, needs only this.
#ifndef PAD_BATCH_DECODER_H_
#define PAD_BATCH_DECODER_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "pad/alignment_request.h"

namespace pad {

class RewardModel;

// The fewest prompt tokens a step prefills beside decoding rows under DecoderOptions::prefill_stall_ratio, so
// that prompts always progress.
inline constexpr int64_t kMinPrefillChunk = 16;

struct DecoderOptions {
  // Sequences resident per backbone's cache, a limit, not memory: a request takes 1 + its PRM rows.
  int64_t kv_slots = 16;
  // Tokens per KV cache block; 0: 256 on a GPU (FlashAttention's paged kernel takes no fewer), 16 on the CPU.
  int64_t kv_block_size = 0;
  // The KV cache pool, in blocks taken as sequences grow. memory_fraction > 0: as many blocks as fit in
  // this share of the device's memory beside what is in use once the models are loaded and
  // memory_reserve_bytes (PlanKvBlocks); else kv_cache_bytes > 0: that many bytes (all caches together);
  // else every slot at max_seq_len. Either way no more than every slot at max_seq_len.
  double memory_fraction = 0.0;
  int64_t memory_reserve_bytes = int64_t{2} << 30;
  int64_t kv_cache_bytes = 0;
  // Full blocks of prompts and answers stay cached, keyed by their tokens, for later requests that begin
  // with them (vLLM's automatic prefix caching).
  bool prefix_cache = true;
  // > 0: the most tokens one step feeds the models. Decode rows (one token each) always run; prompts are
  // prefilled with what is left, in chunks across steps, so that a burst of long prompts cannot stall the
  // running streams for one long step. 0: every admitted prompt is prefilled whole in its first step.
  int64_t max_batch_tokens = 0;
  // > 0: while sequences decode, a step prefills beside them no more prompt tokens than the measured costs
  // of recent steps (StepCosts) say add about this many times the decode's own time, times max(1, waiting
  // rows / decoding rows), and at least kMinPrefillChunk, so that a step with a prefill costs about 1 + ratio
  // decode steps: the running streams' token gaps stay within that of their median while prompts arrive, on
  // any device (on a GPU, where a prompt token beside decode rows costs little, whole prompts still fit).
  // With nothing decoding, only max_batch_tokens limits a step. 0: max_batch_tokens alone, and chunks that
  // depend on nothing but the requests.
  double prefill_stall_ratio = 1.0;
  // Decode steps in fixed shapes (DecodeGraphs), recorded as CUDA graphs on a GPU; on the CPU the same
  // arithmetic runs directly (the tests' twin of the GPU path). Each cache gets one padding block more.
  bool cuda_graphs = false;
  int64_t max_seq_len = 4096;    // prompt plus generated tokens of one sequence
  int max_prompt_tokens = 2048;  // longer prompts are refused, never truncated
  int max_new_tokens_limit = 4096;
  int default_max_new_tokens = 128;  // for requests that leave it at 0; capped by the limit
  int max_top_k = 1024;
  int max_principles = 8;
  int max_stop_strings = 8;
};

// What a researcher tuning beta needs about one chosen token.
struct TokenDiagnostics {
  std::vector<int32_t> candidates;           // the policy's top k, best first
  std::vector<std::string> candidate_texts;  // each candidate alone, decoded (a partial character is U+FFFD)
  std::vector<float> policy_logits;
  std::vector<float> rewards;  // r(a); zero outside PAD
  std::vector<float> scores;   // z_b(a) + beta * r(a), less the request's penalties
};

// One sequence's progress in one step.
struct TokenEvent {
  uint64_t sequence = 0;
  int32_t token = 0;
  std::string text;                 // whole UTF-8; may be empty (held for a character or a stop string)
  float reward = 0.0f;              // r of the chosen token (PAD), else 0
  bool changed_top_choice = false;  // PAD picked other than the policy's argmax
  std::optional<TokenDiagnostics> diagnostics;
  bool finished = false;
  FinishReason finish_reason = FinishReason::kLength;
};

// The KV caches' use, summed over every cache; the counters since start.
struct KvStats {
  int64_t slots_in_use = 0;  // sequences resident (a request's policy and PRM rows each one)
  int64_t slots_total = 0;
  int64_t blocks_used = 0;  // held by sequences
  int64_t blocks_total = 0;
  int64_t blocks_cached = 0;  // holding a cached prefix, held or not
  int64_t block_size = 0;
  int64_t tokens_in_use = 0;
  int64_t bytes = 0;              // allocated at load
  int64_t preemptions = 0;        // sequences whose blocks were taken back, to be recomputed
  int64_t prefix_hit_tokens = 0;  // prompt tokens read from the prefix cache instead of computed
  int64_t prefill_tokens = 0;     // prompt tokens computed
  std::string plan;               // how the pool was sized; empty when by kv_slots and max_seq_len
};

// A request checked and tokenized, ready to take cache slots.
struct PreparedRequest {
  AlignmentRequest request;
  std::vector<int32_t> policy_ids;
  struct PrmRow {
    std::vector<int32_t> ids;
    double weight = 1.0;
  };
  std::vector<PrmRow> prm_rows;  // empty unless PAD
  const RewardModel* reward_model = nullptr;
};

// Runs many sequences together, one token each per Step, in a pool of KV cache blocks. Prepare may be
// called from any thread (it only reads); the rest from one thread at a time (the engine's). A sequence's
// result does not depend on the other sequences in its batch.
class BatchDecoder {
 public:
  virtual ~BatchDecoder() = default;

  // Checks every field (INVALID_ARGUMENT naming it) and tokenizes the policy's and the PRM rows' contexts.
  virtual absl::StatusOr<PreparedRequest> Prepare(const AlignmentRequest& request) const = 0;
  // Whether Add would find cache slots, and blocks for the prompts, for `prepared` now.
  virtual bool CanAdd(const PreparedRequest& prepared) const = 0;
  // Takes the cache slots and the prompts' blocks (RESOURCE_EXHAUSTED when they are not free) and returns
  // the sequence's id. Its prefill runs in the next Step.
  virtual absl::StatusOr<uint64_t> Add(PreparedRequest prepared) = 0;
  // One iteration: prefill of the sequences added since the last Step, one decode step for the others; one
  // event per active sequence, except a sequence whose prompt is still prefilling in chunks or which was
  // preempted (it continues later with the same tokens). Finished sequences release their slots before
  // returning.
  // On error every active sequence is dropped (their slots freed) and the error returned.
  virtual absl::StatusOr<std::vector<TokenEvent>> Step() = 0;
  // Drops a sequence now (cancel) and frees its slots; unknown ids are ignored.
  virtual void Remove(uint64_t sequence) = 0;

  virtual size_t active() const = 0;
  // Over every cache: one per distinct backbone, so a PRM on the policy's adds none.
  virtual KvStats kv_stats() const = 0;
  // With DecoderOptions::cuda_graphs: CUDA graphs recorded, and decode steps that replayed one.
  virtual int64_t graphs_recorded() const { return 0; }
  virtual int64_t graph_replays() const { return 0; }
};

}  // namespace pad

#endif  // PAD_BATCH_DECODER_H_
