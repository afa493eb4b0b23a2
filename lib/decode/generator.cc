#include "pad/generator.h"

#include <ATen/ATen.h>

#include <cmath>
#include <random>

#include "absl/strings/str_cat.h"
#include "pad/status_macros.h"

namespace pad {
namespace {

// Returns every slot taken during Generate, however it ends.
class SlotLease {
 public:
  explicit SlotLease(KvCache* cache) : cache_(cache) {}
  ~SlotLease() {
    for (int slot : slots_) cache_->Free(slot);
  }
  std::optional<int> Take() {
    std::optional<int> slot = cache_->Allocate();
    if (slot) slots_.push_back(*slot);
    return slot;
  }

 private:
  KvCache* cache_;
  std::vector<int> slots_;
};

}  // namespace

int64_t SampleIndex(const float* scores, int64_t n, float temperature, double uniform) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i) {
    if (scores[i] > scores[best]) best = i;
  }
  if (temperature <= 0.0f) return best;
  // Inverse CDF of softmax(scores / T), shifted by the maximum for stability.
  std::vector<double> weights(n);
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    weights[i] = std::exp((static_cast<double>(scores[i]) - scores[best]) / temperature);
    total += weights[i];
  }
  double target = uniform * total;
  for (int64_t i = 0; i < n; ++i) {
    target -= weights[i];
    if (target < 0.0) return i;
  }
  return best;  // only reached through rounding when uniform is close to 1
}

absl::StatusOr<std::vector<GenerationResult>> Generate(LlamaModel& model, KvCache& cache,
                                                       absl::Span<const GenerationRequest> requests,
                                                       const TokenCallback& on_token) {
  const size_t n = requests.size();
  std::vector<GenerationResult> results(n);
  if (n == 0) return results;
  SlotLease lease(&cache);
  std::vector<int> slots(n);
  std::vector<std::mt19937_64> rngs;
  for (size_t i = 0; i < n; ++i) {
    if (requests[i].prompt.empty())
      return absl::InvalidArgumentError(absl::StrCat("requests[", i, "].prompt is empty"));
    if (requests[i].sampling.max_new_tokens < 1) {
      return absl::InvalidArgumentError(absl::StrCat("requests[", i, "].max_new_tokens must be at least 1"));
    }
    std::optional<int> slot = lease.Take();
    if (!slot)
      return absl::ResourceExhaustedError(
          absl::StrCat("more requests than the ", cache.max_slots(), " cache slots"));
    slots[i] = *slot;
    rngs.emplace_back(requests[i].sampling.seed);
  }

  // rows[j] feeds request active[j]: first the prompts, then each request's latest token.
  std::vector<size_t> active(n);
  std::vector<ForwardRow> rows(n);
  for (size_t i = 0; i < n; ++i) {
    active[i] = i;
    rows[i] = ForwardRow{slots[i], requests[i].prompt};
  }
  std::vector<int32_t> next(n);
  while (!active.empty()) {
    PAD_ASSIGN_OR_RETURN(at::Tensor hidden, model.Forward(rows, &cache));  // [rows, hidden]
    PAD_ASSIGN_OR_RETURN(at::Tensor logits, model.Logits(hidden));         // [rows, vocab] float32
    const at::Tensor host = logits.to(at::kCPU).contiguous();
    const int64_t vocab = host.size(1);
    std::vector<size_t> still_active;
    std::vector<ForwardRow> next_rows;
    for (size_t j = 0; j < active.size(); ++j) {
      const size_t i = active[j];
      const SamplingParams& sampling = requests[i].sampling;
      const double uniform = std::uniform_real_distribution<double>(0.0, 1.0)(rngs[i]);
      const int32_t token = static_cast<int32_t>(
          SampleIndex(host.data_ptr<float>() + j * vocab, vocab, sampling.temperature, uniform));
      GenerationResult& result = results[i];
      result.tokens.push_back(token);
      if (on_token) on_token(i, token);
      const bool stop = std::find(sampling.stop_token_ids.begin(), sampling.stop_token_ids.end(), token) !=
                        sampling.stop_token_ids.end();
      if (stop) {
        result.finish_reason = FinishReason::kStop;
      } else if (static_cast<int>(result.tokens.size()) >= sampling.max_new_tokens ||
                 cache.length(slots[i]) >= cache.max_seq_len()) {
        result.finish_reason = FinishReason::kLength;
      } else {
        next[i] = token;
        still_active.push_back(i);
        next_rows.push_back(ForwardRow{slots[i], absl::MakeConstSpan(&next[i], 1)});
      }
    }
    active = std::move(still_active);
    rows = std::move(next_rows);
  }
  return results;
}

}  // namespace pad
