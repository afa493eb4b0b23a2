// bench_pad: PAD decoding throughput by mode and batch size, as a table (or JSON lines).
//
// For each mode and batch size: `batch` requests with the same ~--prompt_tokens-token instruction are
// added together, prefilled in one step and decoded for --new_tokens tokens each (end-of-sequence
// ignored). Reports time to first token and decode tokens/s summed over the batch, and each mode's cost
// per token relative to vanilla at the same batch size.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <iostream>
#include <map>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "pad/model_set.h"
#include "pad/or_die.h"

ABSL_FLAG(std::string, model, "models/SmolLM2-135M-Instruct", "the policy (and PRM backbone)");
ABSL_FLAG(std::string, prm_adapter, "", "PRM LoRA adapter directory (default: none, identity PRM)");
ABSL_FLAG(std::string, modes, "vanilla,preference_prompt,pad_prompt,pad_weighted", "comma-separated");
ABSL_FLAG(std::string, batches, "1,8", "comma-separated batch sizes");
ABSL_FLAG(int, prompt_tokens, 200, "approximate instruction length in tokens");
ABSL_FLAG(int, new_tokens, 128, "generated tokens per request");
ABSL_FLAG(std::string, dtype, "float32", "float32, bfloat16 or float16");
ABSL_FLAG(std::string, device, "cpu", "cpu or cuda");
ABSL_FLAG(bool, json, false, "print one JSON object per row instead of a table");

namespace {

pad::AlignmentRequest RequestFor(const std::string& mode, const std::string& instruction) {
  pad::AlignmentRequest request;
  request.messages = {{"user", instruction}};
  request.max_new_tokens = absl::GetFlag(FLAGS_new_tokens);
  request.ignore_eos = true;
  request.principles = {"helpfulness", "harmlessness", "humor"};
  if (mode == "vanilla") {
    request.mode = pad::DecodingMode::kVanilla;
  } else if (mode == "preference_prompt") {
    request.mode = pad::DecodingMode::kPreferencePrompt;
  } else if (mode == "pad_prompt") {
    request.mode = pad::DecodingMode::kPad;
  } else if (mode == "pad_weighted") {
    request.mode = pad::DecodingMode::kPad;
    request.composition = pad::Composition::kWeighted;
    request.weights = {0.5, 0.3, 0.2};
  } else {
    std::cerr << "bench_pad: unknown mode " << mode << "\n";
    std::exit(1);
  }
  return request;
}

struct Timing {
  double ttft_ms, tokens_per_s, step_ms;
};

Timing Run(pad::PadDecoder& decoder, const pad::AlignmentRequest& request, int batch) {
  for (int b = 0; b < batch; ++b) pad::OrDie(decoder.Add(pad::OrDie(decoder.Prepare(request))));
  const auto start = std::chrono::steady_clock::now();
  pad::OrDie(decoder.Step());  // the prefill gives every request its first token
  const auto first = std::chrono::steady_clock::now();
  int steps = 0;
  while (decoder.active() > 0) {
    pad::OrDie(decoder.Step());
    ++steps;
  }
  const auto end = std::chrono::steady_clock::now();
  const double decode_s = std::chrono::duration<double>(end - first).count();
  return {std::chrono::duration<double, std::milli>(first - start).count(), batch * steps / decode_s,
          1e3 * decode_s / steps};
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  c10::InferenceMode inference;
  pad::ModelOptions options;
  options.dtype = pad::OrDie(pad::ParseDtype(absl::GetFlag(FLAGS_dtype)));
  options.device = pad::OrDie(pad::ParseDevice(absl::GetFlag(FLAGS_device)));
  const std::string model_dir = absl::GetFlag(FLAGS_model);
  pad::RewardModelSpec spec;
  spec.backbone_dir = model_dir;
  spec.adapter_dir = absl::GetFlag(FLAGS_prm_adapter);
  auto models = pad::OrDie(pad::ModelSet::Load(model_dir, {spec}, options));
  const pad::Tokenizer* tokenizer = &models->tokenizer();

  std::vector<int> batches;
  for (absl::string_view b : absl::StrSplit(absl::GetFlag(FLAGS_batches), ','))
    batches.push_back(std::stoi(std::string(b)));
  const int max_batch = *std::max_element(batches.begin(), batches.end());
  pad::DecoderOptions decoder_options;
  decoder_options.kv_slots = 4 * max_batch;  // WEIGHTED with 3 principles: 1 policy + 3 PRM rows each
  decoder_options.max_seq_len = absl::GetFlag(FLAGS_prompt_tokens) + 128 + absl::GetFlag(FLAGS_new_tokens);
  auto decoder = pad::OrDie(models->MakeDecoder(decoder_options));

  // An instruction of about --prompt_tokens tokens.
  const std::string sentence = "Describe how tides work and why there are two of them each day. ";
  const int sentence_tokens = static_cast<int>(pad::OrDie(tokenizer->Encode(sentence, false)).size());
  std::string instruction;
  for (int t = 0; t < absl::GetFlag(FLAGS_prompt_tokens); t += sentence_tokens) instruction += sentence;

  const bool json = absl::GetFlag(FLAGS_json);
  if (!json) {
    std::cout << absl::StrFormat(
        "policy %s, PRM adapter %s, %s, instruction ~%d tokens, %d new tokens, %d threads\n\n", model_dir,
        spec.adapter_dir.empty() ? "(none)" : spec.adapter_dir, absl::GetFlag(FLAGS_dtype),
        absl::GetFlag(FLAGS_prompt_tokens), absl::GetFlag(FLAGS_new_tokens), at::get_num_threads());
    std::cout << "| mode | batch | prompt tokens | TTFT ms | decode tok/s | ms / step | cost per token vs "
                 "vanilla |\n";
    std::cout << "|---|---|---|---|---|---|---|\n";
  }
  std::map<int, double> vanilla_ms_per_token;
  for (absl::string_view mode_view : absl::StrSplit(absl::GetFlag(FLAGS_modes), ',')) {
    const std::string mode(mode_view);
    const pad::AlignmentRequest request = RequestFor(mode, instruction);
    const size_t prompt_tokens = pad::OrDie(decoder->Prepare(request)).policy_ids.size();
    for (int batch : batches) {
      pad::AlignmentRequest warm_up = request;
      warm_up.max_new_tokens = 4;
      Run(*decoder, warm_up, batch);
      const Timing t = Run(*decoder, request, batch);
      const double ms_per_token = t.step_ms / batch;
      if (mode == "vanilla") vanilla_ms_per_token[batch] = ms_per_token;
      const double ratio =
          vanilla_ms_per_token.count(batch) ? ms_per_token / vanilla_ms_per_token[batch] : 0.0;
      if (json) {
        std::cout
            << absl::StrFormat(
                   R"({"mode": "%s", "batch": %d, "prompt_tokens": %d, "ttft_ms": %.2f, "decode_tokens_per_s": %.3f, "step_ms": %.2f, "cost_vs_vanilla": %.3f})",
                   mode, batch, prompt_tokens, t.ttft_ms, t.tokens_per_s, t.step_ms, ratio)
            << std::endl;
      } else {
        std::cout << absl::StrFormat("| %s | %d | %d | %.0f | %.2f | %.1f | %.2fx |\n", mode, batch,
                                     prompt_tokens, t.ttft_ms, t.tokens_per_s, t.step_ms, ratio)
                  << std::flush;
      }
    }
  }
  return 0;
}
