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
#include "pad/batch_decoder.h"
#include "pad/chat_template.h"
#include "pad/decode_graphs.h"
#include "pad/kv_cache.h"
#include "pad/llama.h"
#include "pad/reward_model.h"
#include "pad/step_costs.h"
#include "pad/tokenizer.h"

namespace pad {

// PAD (and VANILLA and PREFERENCE_PROMPT) decoding on LibTorch models. Owns the KV caches of the policy and
// of every PRM whose backbone is not the policy's.
class PadDecoder final : public BatchDecoder {
 public:
  // `policy`, `tokenizer`, `chat_template` and the reward models must outlive the decoder. The first
  // reward model is the default.
  static absl::StatusOr<std::unique_ptr<PadDecoder>> Create(const LlamaModel* policy,
                                                            const Tokenizer* tokenizer,
                                                            const ChatTemplate* chat_template,
                                                            std::vector<const RewardModel*> reward_models,
                                                            const DecoderOptions& options);
  ~PadDecoder() override;

  absl::StatusOr<PreparedRequest> Prepare(const AlignmentRequest& request) const override;
  bool CanAdd(const PreparedRequest& prepared) const override;
  absl::StatusOr<uint64_t> Add(PreparedRequest prepared) override;
  absl::StatusOr<std::vector<TokenEvent>> Step() override;
  void Remove(uint64_t sequence) override;

  size_t active() const override { return sequences_.size(); }
  KvStats kv_stats() const override;
  const DecoderOptions& options() const { return options_; }
  // With options.cuda_graphs: forwards run as fixed-shape decode steps, and graphs recorded, over all caches.
  int64_t fixed_shape_steps() const;
  int64_t graphs_recorded() const override;
  int64_t graph_replays() const override;

 private:
  struct Sequence;
  PadDecoder() = default;
  KvCache* CacheFor(const LlamaModel& backbone) const;
  size_t BackboneOf(const RewardModel& prm) const;  // index into caches_
  // What a request's rows take of each cache (caches_ order) to be admitted: a slot per row, and blocks for
  // its prompt less what the prefix cache holds.
  struct Needs {
    int64_t slots = 0;
    int64_t blocks = 0;
  };
  std::vector<Needs> NeedsOf(const PreparedRequest& prepared) const;
  bool Fits(const PreparedRequest& prepared) const;
  // Takes the slots, cached prefixes and prompt blocks of a sequence that Fits.
  void Admit(Sequence& sequence);
  // Gives back a sequence's blocks and slots, to recompute it from its tokens when it is admitted again.
  void Preempt(Sequence& sequence);
  // Takes the blocks every row of a decoding sequence needs for one more token; false when too few are free.
  bool ReserveNextToken(Sequence& sequence);
  // One row of a prompt still to prefill: where it goes and how much of it the cache holds.
  struct PrefillRow {
    size_t backbone;  // index into caches_
    int slot;
    absl::Span<const int32_t> ids;
    const LoraAdapter* adapter;
    int64_t cached;
    int64_t remaining() const { return static_cast<int64_t>(ids.size()) - cached; }
  };
  std::vector<PrefillRow> PrefillRows(const Sequence& sequence) const;
  // One forward per backbone for `batch` (a decoding sequence's last token, or what a prompt's cache lacks of
  // it), then the scoring of each one's next token; `chunks` (prompt chunks per backbone) ride along
  // unscored.
  absl::Status RunPass(std::vector<Sequence*>& batch, const std::vector<std::vector<ForwardRow>>& chunks,
                       std::vector<TokenEvent>* events);
  void Finish(Sequence& sequence, TokenEvent* event, FinishReason reason);
  void Release(Sequence& sequence);

  const LlamaModel* policy_ = nullptr;
  const Tokenizer* tokenizer_ = nullptr;
  const ChatTemplate* chat_template_ = nullptr;
  std::vector<const RewardModel*> reward_models_;
  DecoderOptions options_;
  // One cache per distinct backbone, the policy's first.
  std::vector<std::pair<const LlamaModel*, std::unique_ptr<KvCache>>> caches_;
  // With options.cuda_graphs, the decode steps of each cache (same order), else empty.
  std::vector<std::unique_ptr<DecodeGraphs>> graphs_;
  std::map<uint64_t, std::unique_ptr<Sequence>> sequences_;
  uint64_t next_id_ = 1;
  std::string kv_plan_;
  int64_t preemptions_ = 0;
  int64_t prefill_tokens_ = 0;
  // What recent steps cost for the tokens they fed, for options.prefill_stall_ratio.
  StepCosts step_costs_;
};

}  // namespace pad

#endif  // PAD_PAD_DECODER_H_
