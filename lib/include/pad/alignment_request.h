// What a caller asks of one aligned generation, independent of any wire format.
#ifndef PAD_ALIGNMENT_REQUEST_H_
#define PAD_ALIGNMENT_REQUEST_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "pad/chat_template.h"

namespace pad {

enum class DecodingMode {
  kPad,               // policy top-k rescored by the PRM's token-level reward (the paper's method)
  kVanilla,           // the policy alone on the plain instruction
  kPreferencePrompt,  // the policy alone, shown the guideline text
  kGenArm,            // the same reward over the whole vocabulary, as GenARM guides (Xu et al., ICLR 2025)
};

// "pad", "vanilla", "preference_prompt", "genarm": the name on every wire and in metric labels.
const char* DecodingModeName(DecodingMode mode);
// The mode of a name above; an error listing the names otherwise.
absl::StatusOr<DecodingMode> ParseDecodingMode(absl::string_view name);
// PAD and GENARM score tokens with a PRM; the other two run the policy alone.
inline bool UsesRewardModel(DecodingMode mode) {
  return mode == DecodingMode::kPad || mode == DecodingMode::kGenArm;
}

enum class Composition {
  kPrompt,    // the paper's: principles joined with " and " in one guideline text, one PRM row
  kWeighted,  // one PRM row per principle with its own guideline text; r = sum_i w_i r_i
};

enum class FinishReason { kStop, kLength, kCancelled };

struct AlignmentRequest {
  // Exactly one of: chat messages (rendered by the policy's chat template; the guideline wraps the last
  // user message), a raw prompt (tokenized as it is), or a prompt already tokenized (VANILLA only: the
  // guideline wraps text).
  std::vector<ChatMessage> messages;
  std::string prompt;
  std::vector<int32_t> prompt_ids;

  DecodingMode mode = DecodingMode::kPad;
  std::vector<std::string> principles;  // free text; PAD and PREFERENCE_PROMPT need at least one
  std::vector<double> weights;          // WEIGHTED only: one per principle; empty means 1/n each
  Composition composition = Composition::kPrompt;
  std::string reward_model;           // a registered PRM's name; empty is the first registered
  bool policy_sees_guideline = true;  // PAD: the official code gives both models the same ids

  // The candidates: the policy's top k (PAD, VANILLA, PREFERENCE_PROMPT: vanilla sampling is top-k sampling),
  // or the top k by score of the whole vocabulary (GENARM).
  int top_k = 10;
  double beta = 1.0;         // reward weight: score = z_b + beta * r
  double temperature = 0.0;  // 0 is greedy; else draw from softmax(score / temperature) over the top k
  // OpenAI's penalties, applied to the top k candidates' scores before the draw: score(a) - presence *
  // [c(a) > 0] - frequency * c(a), c(a) the times this request has generated token a. 0 is off.
  double presence_penalty = 0.0;
  double frequency_penalty = 0.0;
  uint64_t seed = 0;              // the request's own random stream
  int max_new_tokens = 0;         // 0: the decoder's default_max_new_tokens
  std::vector<std::string> stop;  // generation ends before the first occurrence of any of these
  bool ignore_eos = false;        // keep going past the model's end-of-sequence ids
  bool diagnostics = false;       // per token: candidates, their policy logits, rewards and scores
};

// The guideline text of docs/design.md §1 for `principles` (joined with " and ") and instruction `x`.
std::string GuidelineText(const std::vector<std::string>& principles, const std::string& instruction);

}  // namespace pad

#endif  // PAD_ALIGNMENT_REQUEST_H_
