// pad_generate: answers one prompt with a local policy, optionally steered by a PRM, streaming the text.
//
//   pad_generate --prompt="Tell me about owls" --mode=pad --principles=humor --prm_adapter=DIR --beta=1
//   pad_generate --prompt="..." --principles=harmless --compare   # vanilla, then PAD, one after the other
#include <ATen/ATen.h>

#include <chrono>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "pad/model_set.h"
#include "pad/or_die.h"

ABSL_FLAG(std::string, model, "models/SmolLM2-135M-Instruct", "the policy: a Hugging Face model directory");
ABSL_FLAG(std::string, prompt, "", "the user's message");
ABSL_FLAG(std::string, system, "", "a system message (else the template's default, if any)");
ABSL_FLAG(bool, raw, false, "tokenize --prompt as it is, without the chat template");
ABSL_FLAG(std::string, mode, "vanilla", "vanilla, pad, preference_prompt or genarm");
ABSL_FLAG(std::vector<std::string>, principles, {}, "comma-separated principles, e.g. helpful,humorous");
ABSL_FLAG(std::vector<std::string>, weights, {}, "per-principle weights for --composition=weighted");
ABSL_FLAG(std::string, composition, "prompt", "prompt (principles joined in one guideline) or weighted");
ABSL_FLAG(std::string, prm_backbone, "", "PRM backbone directory (default: the policy's, shared in memory)");
ABSL_FLAG(std::string, prm_adapter, "", "PRM PEFT LoRA adapter directory (with value_head.safetensors)");
ABSL_FLAG(std::string, prm_value_head, "",
          "value_head.safetensors (default: beside the adapter, else identity)");
ABSL_FLAG(bool, policy_sees_guideline, true, "PAD: the policy also sees the guideline text");
ABSL_FLAG(int, top_k, 10, "candidates from the policy per step");
ABSL_FLAG(double, beta, 1.0, "reward weight: score = policy logit + beta * reward");
ABSL_FLAG(double, temperature, 0.0, "0 is greedy; otherwise sample from softmax(score / temperature)");
ABSL_FLAG(uint64_t, seed, 0, "random seed for sampling");
ABSL_FLAG(int, max_new_tokens, 128, "most tokens to generate");
ABSL_FLAG(std::vector<std::string>, stop, {}, "comma-separated stop strings");
ABSL_FLAG(bool, diagnostics, false, "print each token's candidates, rewards and scores to stderr");
ABSL_FLAG(bool, compare, false, "answer twice: vanilla, then PAD");
ABSL_FLAG(std::string, dtype, "float32", "float32, bfloat16 or float16");
ABSL_FLAG(std::string, device, "cpu", "cpu or cuda[:N]");

namespace {

pad::AlignmentRequest RequestFromFlags() {
  pad::AlignmentRequest request;
  if (absl::GetFlag(FLAGS_raw)) {
    request.prompt = absl::GetFlag(FLAGS_prompt);
  } else {
    if (!absl::GetFlag(FLAGS_system).empty())
      request.messages.push_back({"system", absl::GetFlag(FLAGS_system)});
    request.messages.push_back({"user", absl::GetFlag(FLAGS_prompt)});
  }
  request.mode = pad::OrDie(pad::ParseDecodingMode(absl::GetFlag(FLAGS_mode)));
  request.principles = absl::GetFlag(FLAGS_principles);
  for (const std::string& weight : absl::GetFlag(FLAGS_weights)) request.weights.push_back(std::stod(weight));
  request.composition = absl::GetFlag(FLAGS_composition) == "weighted" ? pad::Composition::kWeighted
                                                                       : pad::Composition::kPrompt;
  request.policy_sees_guideline = absl::GetFlag(FLAGS_policy_sees_guideline);
  request.top_k = absl::GetFlag(FLAGS_top_k);
  request.beta = absl::GetFlag(FLAGS_beta);
  request.temperature = absl::GetFlag(FLAGS_temperature);
  request.seed = absl::GetFlag(FLAGS_seed);
  request.max_new_tokens = absl::GetFlag(FLAGS_max_new_tokens);
  request.stop = absl::GetFlag(FLAGS_stop);
  request.diagnostics = absl::GetFlag(FLAGS_diagnostics);
  return request;
}

// Streams one answer to stdout; usage and timing to stderr.
void Answer(pad::PadDecoder& decoder, const pad::Tokenizer& tokenizer, const pad::AlignmentRequest& request) {
  pad::PreparedRequest prepared = pad::OrDie(decoder.Prepare(request));
  const size_t prompt_tokens = prepared.policy_ids.size();
  pad::OrDie(decoder.Add(std::move(prepared)));
  const auto start = std::chrono::steady_clock::now();
  auto first = start;
  int generated = 0, changed = 0;
  double reward_sum = 0;
  pad::FinishReason reason = pad::FinishReason::kLength;
  while (decoder.active() > 0) {
    for (const pad::TokenEvent& event : pad::OrDie(decoder.Step())) {
      if (generated++ == 0) first = std::chrono::steady_clock::now();
      changed += event.changed_top_choice;
      reward_sum += event.reward;
      std::cout << event.text << std::flush;
      if (event.diagnostics) {
        const pad::TokenDiagnostics& d = *event.diagnostics;
        std::cerr << absl::StrFormat("\n  [%d %s reward %+.3f]", event.token,
                                     absl::CHexEscape(tokenizer.Decode({event.token}, false)), event.reward);
        for (size_t j = 0; j < d.candidates.size(); ++j) {
          std::cerr << absl::StrFormat(" %s:%.2f%+.2f",
                                       absl::CHexEscape(tokenizer.Decode({d.candidates[j]}, false)),
                                       d.policy_logits[j], d.rewards[j]);
        }
        std::cerr << "\n";
      }
      if (event.finished) reason = event.finish_reason;
    }
  }
  const auto end = std::chrono::steady_clock::now();
  const double decode_s = std::chrono::duration<double>(end - first).count();
  std::cout << "\n";
  std::cerr << absl::StrFormat(
      "[%d prompt tokens, %d generated (%s); PAD changed the policy's choice %d times, mean reward %+.3f; "
      "first token %.0f ms, %.1f tokens/s after]\n",
      prompt_tokens, generated, reason == pad::FinishReason::kStop ? "stop" : "length", changed,
      generated ? reward_sum / generated : 0.0, 1e3 * std::chrono::duration<double>(first - start).count(),
      generated > 1 ? (generated - 1) / decode_s : 0.0);
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Answers --prompt with a local policy, vanilla or steered by a personalized reward model (PAD).");
  absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_prompt).empty()) {
    std::cerr << "pad_generate: --prompt is empty\n";
    return 2;
  }
  c10::InferenceMode inference;
  const std::string model_dir = absl::GetFlag(FLAGS_model);
  pad::ModelOptions options;
  options.dtype = pad::OrDie(pad::ParseDtype(absl::GetFlag(FLAGS_dtype)));
  options.device = pad::OrDie(pad::ParseDevice(absl::GetFlag(FLAGS_device)));
  pad::AlignmentRequest request = RequestFromFlags();
  std::vector<pad::RewardModelSpec> reward_models;
  if (pad::UsesRewardModel(request.mode) || absl::GetFlag(FLAGS_compare)) {
    pad::RewardModelSpec spec;
    spec.backbone_dir =
        absl::GetFlag(FLAGS_prm_backbone).empty() ? model_dir : absl::GetFlag(FLAGS_prm_backbone);
    spec.adapter_dir = absl::GetFlag(FLAGS_prm_adapter);
    spec.value_head_path = absl::GetFlag(FLAGS_prm_value_head);
    reward_models.push_back(spec);
  }
  auto models = pad::OrDie(pad::ModelSet::Load(model_dir, reward_models, options));
  pad::DecoderOptions decoder_options;
  decoder_options.kv_slots = 1 + std::max<int64_t>(1, request.principles.size());
  decoder_options.max_seq_len = 2048 + request.max_new_tokens;
  auto decoder = pad::OrDie(models->MakeDecoder(decoder_options));
  const pad::Tokenizer& tokenizer = models->tokenizer();

  if (absl::GetFlag(FLAGS_compare)) {
    for (pad::DecodingMode mode : {pad::DecodingMode::kVanilla, pad::DecodingMode::kPad}) {
      request.mode = mode;
      std::cout << (mode == pad::DecodingMode::kPad
                        ? "\n== PAD (" + absl::StrJoin(request.principles, " and ") + ")"
                        : std::string("== vanilla"))
                << " ==\n";
      Answer(*decoder, tokenizer, request);
    }
  } else {
    Answer(*decoder, tokenizer, request);
  }
  return 0;
}
