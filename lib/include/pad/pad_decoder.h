// PAD decoding for a batch of requests: one policy forward and one PRM forward per step for all of them.
#ifndef PAD_PAD_DECODER_H_
#define PAD_PAD_DECODER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "pad/alignment_request.h"
#include "pad/chat_template.h"
#include "pad/decoder_types.h"
#include "pad/kv_cache.h"
#include "pad/llama.h"
#include "pad/reward_model.h"
#include "pad/tokenizer.h"

namespace pad {

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

// Owns the KV caches of the policy and of every PRM whose backbone is not the policy's. Prepare may be
// called from any thread (it only reads); Add, Step and Remove from one thread at a time (the engine's).
// A sequence's result does not depend on the other sequences in its batch.
class PadDecoder {
 public:
  // `policy`, `tokenizer`, `chat_template` and the reward models must outlive the decoder. The first
  // reward model is the default.
  static absl::StatusOr<std::unique_ptr<PadDecoder>> Create(const LlamaModel* policy,
                                                            const Tokenizer* tokenizer,
                                                            const ChatTemplate* chat_template,
                                                            std::vector<const RewardModel*> reward_models,
                                                            const DecoderOptions& options);
  ~PadDecoder();

  // Checks every field (INVALID_ARGUMENT naming it) and tokenizes the policy's and the PRM rows' contexts.
  absl::StatusOr<PreparedRequest> Prepare(const AlignmentRequest& request) const;
  // Whether Add would find cache slots for `prepared` now.
  bool CanAdd(const PreparedRequest& prepared) const;
  // Takes the cache slots (RESOURCE_EXHAUSTED when they are not free) and returns the sequence's id. Its
  // prefill runs in the next Step.
  absl::StatusOr<uint64_t> Add(PreparedRequest prepared);
  // One iteration: prefill of the sequences added since the last Step, one decode step for the others;
  // exactly one event per active sequence. Finished sequences release their slots before returning.
  // On error every active sequence is dropped (their slots freed) and the error returned.
  absl::StatusOr<std::vector<TokenEvent>> Step();
  // Drops a sequence now (cancel) and frees its slots; unknown ids are ignored.
  void Remove(uint64_t sequence);

  size_t active() const { return sequences_.size(); }
  int64_t slots_in_use() const;
  // Slots in every cache allocated: one cache per distinct backbone, so a PRM on the policy's adds none.
  int64_t slots_total() const;
  int64_t kv_tokens_in_use() const;
  const DecoderOptions& options() const { return options_; }

 private:
  struct Sequence;
  PadDecoder() = default;
  KvCache* CacheFor(const LlamaModel& backbone) const;
  absl::Status RunPass(std::vector<Sequence*>& batch, bool prefill, std::vector<TokenEvent>* events);
  void Finish(Sequence& sequence, TokenEvent* event, FinishReason reason);
  void Release(Sequence& sequence);

  const LlamaModel* policy_ = nullptr;
  const Tokenizer* tokenizer_ = nullptr;
  const ChatTemplate* chat_template_ = nullptr;
  std::vector<const RewardModel*> reward_models_;
  DecoderOptions options_;
  // One cache per distinct backbone, the policy's first.
  std::vector<std::pair<const LlamaModel*, std::unique_ptr<KvCache>>> caches_;
  std::map<uint64_t, std::unique_ptr<Sequence>> sequences_;
  uint64_t next_id_ = 1;
};

}  // namespace pad

#endif  // PAD_PAD_DECODER_H_
