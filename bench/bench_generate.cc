// bench_generate: greedy VANILLA decoding throughput of the server's decoding loop (PadDecoder) on one
// model, as a table (or JSON lines).
//
// For each dtype and batch size: `batch` synthetic prompts of --prompt_tokens token ids are prefilled
// together, then decoded for --new_tokens steps with no early stop. Reports time to first token (the
// prefill) and decode tokens/s summed over the batch.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "pad/model_set.h"
#include "pad/or_die.h"

ABSL_FLAG(std::string, model, "models/SmolLM2-135M-Instruct", "Hugging Face model directory");
ABSL_FLAG(std::string, dtypes, "float32,bfloat16", "comma-separated dtypes");
ABSL_FLAG(std::string, batches, "1,8", "comma-separated batch sizes");
ABSL_FLAG(int, prompt_tokens, 64, "prompt length");
ABSL_FLAG(int, new_tokens, 64, "generated tokens per sequence");
ABSL_FLAG(std::string, device, "cpu", "cpu or cuda");
ABSL_FLAG(bool, cpu_kernels, true,
          "on the CPU, decode-shaped products on the project's kernels (false: LibTorch's)");
ABSL_FLAG(std::string, quantization, "none", "none or int8 (int8 weights, on the CPU kernels)");
ABSL_FLAG(int64_t, kv_block_size, 0, "tokens per KV cache block; 0: the server's default");
ABSL_FLAG(bool, prefix_cache, false,
          "reuse cached prompt blocks (the warm-up run's): off, so that TTFT measures the prefill computed");
ABSL_FLAG(bool, json, false, "print one JSON object per row instead of a table");

namespace {}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  c10::InferenceMode inference;
  const int prompt_tokens = absl::GetFlag(FLAGS_prompt_tokens), new_tokens = absl::GetFlag(FLAGS_new_tokens);
  if (!absl::GetFlag(FLAGS_json)) {
    std::cout << absl::StrFormat("model %s, prompt %d tokens, %d new tokens, %d threads\n\n",
                                 absl::GetFlag(FLAGS_model), prompt_tokens, new_tokens,
                                 at::get_num_threads());
    std::cout << absl::StrFormat("| %-8s | %5s | %9s | %14s | %12s |\n", "dtype", "batch", "TTFT ms",
                                 "decode tok/s", "ms / step");
    std::cout << "|----------|-------|-----------|----------------|--------------|\n";
  }
  for (absl::string_view dtype_name : absl::StrSplit(absl::GetFlag(FLAGS_dtypes), ',')) {
    pad::ModelOptions options;
    options.dtype = pad::OrDie(pad::ParseDtype(dtype_name));
    options.device = pad::OrDie(pad::ParseDevice(absl::GetFlag(FLAGS_device)));
    options.cpu_kernels = absl::GetFlag(FLAGS_cpu_kernels);
    options.quantization = pad::OrDie(pad::ParseQuantization(absl::GetFlag(FLAGS_quantization)));
    auto models = pad::OrDie(pad::ModelSet::Load(absl::GetFlag(FLAGS_model), {}, options));
    // The weights' format as the table names it: the dtype, or int8 with the dtype of the activations.
    const std::string weights = options.quantization == pad::Quantization::kInt8
                                    ? absl::StrCat("int8/", dtype_name)
                                    : std::string(dtype_name);
    for (absl::string_view batch_text : absl::StrSplit(absl::GetFlag(FLAGS_batches), ',')) {
      const int batch = std::stoi(std::string(batch_text));
      pad::DecoderOptions decoder_options;
      decoder_options.kv_slots = batch;
      decoder_options.max_seq_len = prompt_tokens + new_tokens;
      decoder_options.max_prompt_tokens = prompt_tokens;
      decoder_options.kv_block_size = absl::GetFlag(FLAGS_kv_block_size);
      decoder_options.prefix_cache = absl::GetFlag(FLAGS_prefix_cache);
      auto decoder = pad::OrDie(models->MakeDecoder(decoder_options));
      std::vector<pad::AlignmentRequest> requests(batch);
      for (int b = 0; b < batch; ++b) {
        for (int t = 0; t < prompt_tokens; ++t) requests[b].prompt_ids.push_back(100 + (t * 7 + b) % 1000);
        requests[b].mode = pad::DecodingMode::kVanilla;
        requests[b].max_new_tokens = new_tokens;
        requests[b].ignore_eos = true;
      }
      // Prefill (the first Step gives every request its first token), then decode to the end.
      auto run = [&] {
        for (const pad::AlignmentRequest& r : requests)
          pad::OrDie(decoder->Add(pad::OrDie(decoder->Prepare(r))));
        pad::OrDie(decoder->Step());
        const auto first = std::chrono::steady_clock::now();
        while (decoder->active() > 0) pad::OrDie(decoder->Step());
        return first;
      };
      run();  // warm-up
      const auto start = std::chrono::steady_clock::now();
      const auto first = run();
      const auto end = std::chrono::steady_clock::now();
      const double ttft_ms = std::chrono::duration<double, std::milli>(first - start).count();
      const double decode_s = std::chrono::duration<double>(end - first).count();
      const double tokens_per_s = batch * (new_tokens - 1) / decode_s;
      const double step_ms = 1e3 * decode_s / (new_tokens - 1);
      if (absl::GetFlag(FLAGS_json)) {
        std::cout
            << absl::StrFormat(
                   R"({"dtype": "%s", "batch": %d, "ttft_ms": %.2f, "decode_tokens_per_s": %.2f, "step_ms": %.2f})",
                   weights, batch, ttft_ms, tokens_per_s, step_ms)
            << std::endl;
      } else {
        std::cout << absl::StrFormat("| %-8s | %5d | %9.1f | %14.1f | %12.2f |\n", weights, batch, ttft_ms,
                                     tokens_per_s, step_ms)
                  << std::flush;
      }
    }
  }
  return 0;
}
