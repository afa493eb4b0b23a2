// Vanilla decoding: a batch of prompts run to completion together on one model.
#ifndef PAD_GENERATOR_H_
#define PAD_GENERATOR_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "pad/alignment_request.h"
#include "pad/kv_cache.h"
#include "pad/llama.h"

namespace pad {

struct SamplingParams {
  float temperature = 0.0f;  // 0 is greedy; otherwise draw from softmax(logits / temperature)
  uint64_t seed = 0;         // the request's own random stream: results do not depend on the batch
  int max_new_tokens = 128;
  std::vector<int32_t> stop_token_ids;  // end-of-sequence ids; the stop token is returned, then decoding ends
};

struct GenerationRequest {
  std::vector<int32_t> prompt;
  SamplingParams sampling;
};

struct GenerationResult {
  std::vector<int32_t> tokens;  // generated tokens, the stop token included
  FinishReason finish_reason = FinishReason::kLength;
};

// Called on the calling thread as each request's next token is chosen.
using TokenCallback = std::function<void(size_t request_index, int32_t token)>;

// Prefills every prompt in one forward, then decodes all unfinished requests in one batched step per
// token. Takes a cache slot per request and frees it before returning, on success and on failure.
absl::StatusOr<std::vector<GenerationResult>> Generate(LlamaModel& model, KvCache& cache,
                                                       absl::Span<const GenerationRequest> requests,
                                                       const TokenCallback& on_token = nullptr);

// One draw from float32 `scores` [n] (host memory): the argmax (lowest index on ties) when temperature is
// 0, else a sample from softmax(scores / temperature) using `uniform`, a number in [0, 1).
int64_t SampleIndex(const float* scores, int64_t n, float temperature, double uniform);

}  // namespace pad

#endif  // PAD_GENERATOR_H_
