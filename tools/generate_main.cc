// pad_generate: answers one prompt with a local model, streaming the text to the terminal.
#include <ATen/ATen.h>

#include <chrono>
#include <cstdio>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_format.h"
#include "pad/chat_template.h"
#include "pad/generator.h"
#include "pad/llama.h"
#include "pad/tokenizer.h"

ABSL_FLAG(std::string, model, "models/SmolLM2-135M-Instruct", "Hugging Face model directory");
ABSL_FLAG(std::string, prompt, "", "the user's message");
ABSL_FLAG(std::string, system, "", "a system message (else the template's default, if any)");
ABSL_FLAG(bool, raw, false, "tokenize --prompt as it is, without the chat template");
ABSL_FLAG(int, max_new_tokens, 128, "most tokens to generate");
ABSL_FLAG(double, temperature, 0.0, "0 is greedy; otherwise sample from softmax(logits / temperature)");
ABSL_FLAG(uint64_t, seed, 0, "random seed for sampling");
ABSL_FLAG(std::string, dtype, "float32", "float32, bfloat16 or float16");
ABSL_FLAG(std::string, device, "cpu", "cpu or cuda[:N]");

namespace {

template <typename T>
T OrDie(absl::StatusOr<T> value) {
  if (!value.ok()) {
    std::cerr << "pad_generate: " << value.status() << "\n";
    std::exit(1);
  }
  return std::move(value).value();
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Answers --prompt with a local causal LM, streaming to stdout.");
  absl::ParseCommandLine(argc, argv);
  const std::string model_dir = absl::GetFlag(FLAGS_model);
  if (absl::GetFlag(FLAGS_prompt).empty()) {
    std::cerr << "pad_generate: --prompt is empty\n";
    return 2;
  }

  pad::ModelOptions options;
  options.dtype = OrDie(pad::ParseDtype(absl::GetFlag(FLAGS_dtype)));
  options.device = OrDie(pad::ParseDevice(absl::GetFlag(FLAGS_device)));
  auto tokenizer = OrDie(pad::Tokenizer::FromFile(model_dir + "/tokenizer.json"));
  std::string text = absl::GetFlag(FLAGS_prompt);
  if (!absl::GetFlag(FLAGS_raw)) {
    auto chat = OrDie(pad::ChatTemplate::FromModelDir(model_dir));
    std::vector<pad::ChatMessage> messages;
    if (!absl::GetFlag(FLAGS_system).empty()) messages.push_back({"system", absl::GetFlag(FLAGS_system)});
    messages.push_back({"user", text});
    text = OrDie(chat.Apply(messages, /*add_generation_prompt=*/true));
  }
  pad::GenerationRequest request;
  request.prompt = OrDie(tokenizer->Encode(text, /*add_special_tokens=*/true));
  request.sampling.max_new_tokens = absl::GetFlag(FLAGS_max_new_tokens);
  request.sampling.temperature = static_cast<float>(absl::GetFlag(FLAGS_temperature));
  request.sampling.seed = absl::GetFlag(FLAGS_seed);

  c10::InferenceMode inference;
  auto model = OrDie(pad::LlamaModel::Load(model_dir, options));
  request.sampling.stop_token_ids = model->config().eos_token_ids;
  pad::KvCacheOptions cache_options;
  cache_options.max_slots = 1;
  cache_options.max_seq_len = static_cast<int64_t>(request.prompt.size()) + request.sampling.max_new_tokens;
  auto cache = OrDie(pad::KvCache::Create(model->config(), cache_options, options));

  pad::IncrementalDecoder decoder(tokenizer.get(), /*skip_special_tokens=*/true);
  const auto start = std::chrono::steady_clock::now();
  auto first_token = start;
  auto results = OrDie(pad::Generate(*model, *cache, {request}, [&](size_t, int32_t token) {
    if (first_token == start) first_token = std::chrono::steady_clock::now();
    std::cout << decoder.Add(token) << std::flush;
  }));
  std::cout << decoder.Finish() << "\n";
  const auto end = std::chrono::steady_clock::now();
  const double total_s = std::chrono::duration<double>(end - start).count();
  const double first_s = std::chrono::duration<double>(first_token - start).count();
  const size_t generated = results[0].tokens.size();
  std::cerr << absl::StrFormat(
      "[%d prompt tokens, %d generated (%s), first token %.0f ms, %.1f tokens/s after it]\n",
      request.prompt.size(), generated,
      results[0].finish_reason == pad::FinishReason::kStop ? "stop" : "length", first_s * 1e3,
      generated > 1 ? (generated - 1) / (total_s - first_s) : 0.0);
  return 0;
}
