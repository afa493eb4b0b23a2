// What the PAD decoder takes and gives, without LibTorch: its limits and the per-token events. The engine's
// public API (and so the server) needs only these.
#ifndef PAD_DECODER_TYPES_H_
#define PAD_DECODER_TYPES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "pad/alignment_request.h"

namespace pad {

struct DecoderOptions {
  int64_t kv_slots = 16;         // cache slots per backbone; a request takes 1 + its PRM rows
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
  std::vector<int32_t> candidates;  // the policy's top k, best first
  std::vector<float> policy_logits;
  std::vector<float> rewards;  // r(a); zero outside PAD
  std::vector<float> scores;   // z_b(a) + beta * r(a)
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

}  // namespace pad

#endif  // PAD_DECODER_TYPES_H_
