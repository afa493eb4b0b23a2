// bench_pad: PAD decoding throughput by mode and batch size, as a table (or JSON lines).
//
// For each mode and batch size: `batch` requests with the same ~--prompt_tokens-token instruction are
// added together, prefilled in one step and decoded for --new_tokens tokens each (end-of-sequence
// ignored). Reports time to first token and decode tokens/s summed over the batch, and each mode's cost
// per token relative to vanilla at the same batch size, beside each step's bandwidth floor: the bytes a step
// must read (every weight the step uses once, and the KV cache each row attends over) divided by this
// device's measured copy bandwidth. With --random_weights the weights are made on the device from
// --model's config.json (bench/gpu/run.sh: Llama-3-8B shapes on a GPU, where no weight files exist).
#include <ATen/ATen.h>
#include <ATen/DeviceAccelerator.h>
#include <ATen/Parallel.h>
#include <torch/version.h>

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
ABSL_FLAG(bool, random_weights, false,
          "random weights made on the device from --model's config.json (its tokenizer files are read), "
          "with a random rank --lora_rank PRM adapter and value head");
ABSL_FLAG(bool, separate_prm_backbone, false, "with --random_weights: the PRM gets a backbone of its own");
ABSL_FLAG(int, lora_rank, 8, "with --random_weights: the PRM adapter's rank");
ABSL_FLAG(std::string, modes, "vanilla,preference_prompt,pad_prompt,pad_weighted", "comma-separated");
ABSL_FLAG(std::string, batches, "1,8", "comma-separated batch sizes");
ABSL_FLAG(int, prompt_tokens, 200, "approximate instruction length in tokens");
ABSL_FLAG(int, new_tokens, 128, "generated tokens per request");
ABSL_FLAG(std::string, dtype, "float32", "float32, bfloat16 or float16");
ABSL_FLAG(double, frequency_penalty, 0.0, "every request's frequency penalty (0: off, the paper's rule)");
ABSL_FLAG(std::string, device, "cpu", "cpu or cuda");
ABSL_FLAG(bool, cpu_kernels, true,
          "on the CPU, decode-shaped products on the project's kernels (false: LibTorch's)");
ABSL_FLAG(std::string, quantization, "none", "none or int8 (int8 weights, on the CPU kernels)");
ABSL_FLAG(bool, cuda_graphs, false,
          "decode steps as CUDA graphs (DecodeGraphs); on the CPU, in fixed shapes");
ABSL_FLAG(bool, json, false, "print one JSON object per row instead of a table");

namespace {

pad::AlignmentRequest RequestFor(const std::string& mode, const std::string& instruction) {
  pad::AlignmentRequest request;
  request.messages = {{"user", instruction}};
  request.max_new_tokens = absl::GetFlag(FLAGS_new_tokens);
  request.ignore_eos = true;
  request.frequency_penalty = absl::GetFlag(FLAGS_frequency_penalty);
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

// PAD rows per request beside the policy's: one per principle with WEIGHTED, else one.
int PrmRows(const pad::AlignmentRequest& request) {
  if (request.mode != pad::DecodingMode::kPad) return 0;
  return request.composition == pad::Composition::kWeighted ? static_cast<int>(request.principles.size()) : 1;
}

// Bytes per second of a device-to-device copy of 256 MiB, counting what is read and what is written.
double CopyBandwidth(const c10::Device& device) {
  const int64_t elements = int64_t{64} << 20;  // float32: 256 MiB
  const auto options = at::TensorOptions().dtype(at::kFloat).device(device);
  at::Tensor from = at::ones({elements}, options), to = at::empty({elements}, options);
  to.copy_(from);
  to[0].item<float>();  // waits for the device
  const int repeats = 10;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < repeats; ++i) to.copy_(from);
  to[0].item<float>();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return 2.0 * repeats * from.nbytes() / seconds;
}

// The device allocator's peak reserved bytes since the last reset; 0 on the CPU, and with a LibTorch older
// than 2.9, whose device-generic allocator API lacks it (run.sh also samples nvidia-smi).
#define PAD_HAS_ACCELERATOR_STATS (TORCH_VERSION_MAJOR > 2 || TORCH_VERSION_MINOR >= 9)
void ResetPeakMemory(const c10::Device& device) {
#if PAD_HAS_ACCELERATOR_STATS
  if (device.is_cuda()) at::accelerator::resetPeakStats(device.has_index() ? device.index() : 0);
#endif
}

int64_t PeakMemory(const c10::Device& device) {
#if PAD_HAS_ACCELERATOR_STATS
  if (device.is_cuda()) {
    return at::accelerator::getDeviceStats(device.has_index() ? device.index() : 0).reserved_bytes[0].peak;
  }
#endif
  return 0;
}

struct Timing {
  double ttft_ms, tokens_per_s, step_ms;
  int64_t kv_tokens;  // resident in every cache half-way through the decode
};

Timing Run(pad::PadDecoder& decoder, const pad::AlignmentRequest& request, int batch) {
  for (int b = 0; b < batch; ++b) pad::OrDie(decoder.Add(pad::OrDie(decoder.Prepare(request))));
  const auto start = std::chrono::steady_clock::now();
  pad::OrDie(decoder.Step());  // the prefill gives every request its first token
  const auto first = std::chrono::steady_clock::now();
  int steps = 0;
  int64_t kv_tokens = 0;
  while (decoder.active() > 0) {
    if (steps == request.max_new_tokens / 2) kv_tokens = decoder.kv_stats().tokens_in_use;
    pad::OrDie(decoder.Step());
    ++steps;
  }
  const auto end = std::chrono::steady_clock::now();
  const double decode_s = std::chrono::duration<double>(end - first).count();
  return {std::chrono::duration<double, std::milli>(first - start).count(), batch * steps / decode_s,
          1e3 * decode_s / steps, kv_tokens};
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  c10::InferenceMode inference;
  pad::ModelOptions options;
  options.dtype = pad::OrDie(pad::ParseDtype(absl::GetFlag(FLAGS_dtype)));
  options.device = pad::OrDie(pad::ParseDevice(absl::GetFlag(FLAGS_device)));
  options.cpu_kernels = absl::GetFlag(FLAGS_cpu_kernels);
  options.quantization = pad::OrDie(pad::ParseQuantization(absl::GetFlag(FLAGS_quantization)));
  const std::string model_dir = absl::GetFlag(FLAGS_model);
  const bool random = absl::GetFlag(FLAGS_random_weights);
  pad::RewardModelSpec spec;
  spec.backbone_dir = model_dir;
  spec.adapter_dir = absl::GetFlag(FLAGS_prm_adapter);
  at::manual_seed(0);
  auto models = random
                    ? pad::OrDie(pad::ModelSet::Random(model_dir, absl::GetFlag(FLAGS_lora_rank),
                                                       absl::GetFlag(FLAGS_separate_prm_backbone), options))
                    : pad::OrDie(pad::ModelSet::Load(model_dir, {spec}, options));
  const pad::Tokenizer* tokenizer = &models->tokenizer();
  const pad::LlamaConfig& config = models->policy().config();

  std::vector<int> batches;
  for (absl::string_view b : absl::StrSplit(absl::GetFlag(FLAGS_batches), ','))
    batches.push_back(std::stoi(std::string(b)));
  std::vector<std::string> modes = absl::StrSplit(absl::GetFlag(FLAGS_modes), ',');
  // An instruction of about --prompt_tokens tokens.
  const std::string sentence = "Describe how tides work and why there are two of them each day. ";
  const int sentence_tokens = static_cast<int>(pad::OrDie(tokenizer->Encode(sentence, false)).size());
  std::string instruction;
  for (int t = 0; t < absl::GetFlag(FLAGS_prompt_tokens); t += sentence_tokens) instruction += sentence;

  const int max_batch = *std::max_element(batches.begin(), batches.end());
  int max_rows = 1;  // KV slots a request holds
  for (const std::string& mode : modes) max_rows = std::max(max_rows, 1 + PrmRows(RequestFor(mode, "")));
  pad::DecoderOptions decoder_options;
  decoder_options.kv_slots = max_rows * max_batch;
  decoder_options.max_seq_len = absl::GetFlag(FLAGS_prompt_tokens) + 128 + absl::GetFlag(FLAGS_new_tokens);
  decoder_options.cuda_graphs = absl::GetFlag(FLAGS_cuda_graphs);
  auto decoder = pad::OrDie(models->MakeDecoder(decoder_options));

  const double bandwidth = CopyBandwidth(options.device);
  const int64_t policy_bytes = models->policy().parameter_bytes();
  const pad::RewardModel& prm = *models->reward_models()[0];
  const int64_t prm_bytes = prm.parameter_bytes();
  // What a step reads: not the embedding table (a row per token) and, of a PRM's own backbone, not its
  // lm_head either (k rows per row); every other weight once.
  const int64_t table_bytes = config.vocab_size * config.hidden_size * c10::elementSize(options.dtype);
  const int64_t policy_read = policy_bytes - (config.tie_word_embeddings ? 0 : table_bytes);
  const int64_t prm_read =
      prm_bytes - (prm.shares_policy_backbone() ? 0 : (config.tie_word_embeddings ? 1 : 2) * table_bytes);
  const int64_t kv_bytes_per_token = 2 * config.num_hidden_layers * config.num_key_value_heads *
                                     config.head_dim * c10::elementSize(options.dtype);
  const std::string prm_name =
      random ? absl::StrFormat("random rank-%d LoRA, %s backbone", absl::GetFlag(FLAGS_lora_rank),
                               absl::GetFlag(FLAGS_separate_prm_backbone) ? "separate" : "shared")
             : (spec.adapter_dir.empty() ? "identity PRM" : spec.adapter_dir);
  const bool json = absl::GetFlag(FLAGS_json);
  if (!json) {
    std::cout << absl::StrFormat(
        "policy %s%s, PRM %s, %s on %s, instruction ~%d tokens, %d new tokens, %d threads; weights: policy "
        "%.2f GB, PRM adds %.3f GB; copy bandwidth %.1f GB/s\n\n",
        model_dir, random ? " (random weights)" : "", prm_name, absl::GetFlag(FLAGS_dtype),
        options.device.str(), absl::GetFlag(FLAGS_prompt_tokens), absl::GetFlag(FLAGS_new_tokens),
        at::get_num_threads(), policy_bytes / 1e9, prm_bytes / 1e9, bandwidth / 1e9);
    std::cout
        << "| mode | batch | prompt tokens | TTFT ms | decode tok/s | ms / step | floor ms / step | floor / "
           "step | cost per token vs vanilla | peak device GB |\n";
    std::cout << "|---|---|---|---|---|---|---|---|---|---|\n";
  }
  std::map<int, double> vanilla_ms_per_token;
  for (const std::string& mode : modes) {
    const pad::AlignmentRequest request = RequestFor(mode, instruction);
    const size_t prompt_tokens = pad::OrDie(decoder->Prepare(request)).policy_ids.size();
    for (int batch : batches) {
      pad::AlignmentRequest warm_up = request;
      warm_up.max_new_tokens = 4;
      Run(*decoder, warm_up, batch);
      ResetPeakMemory(options.device);
      const Timing t = Run(*decoder, request, batch);
      const double peak_gb = PeakMemory(options.device) / 1e9;
      // A step reads the policy's weights, the PRM's (adapter, value head, own backbone) when PAD runs,
      // and every resident key and value once.
      const double step_bytes = policy_read + (PrmRows(request) > 0 ? prm_read : 0) +
                                static_cast<double>(t.kv_tokens) * kv_bytes_per_token;
      const double floor_ms = 1e3 * step_bytes / bandwidth;
      const double ms_per_token = t.step_ms / batch;
      if (mode == "vanilla") vanilla_ms_per_token[batch] = ms_per_token;
      const double ratio =
          vanilla_ms_per_token.count(batch) ? ms_per_token / vanilla_ms_per_token[batch] : 0.0;
      if (json) {
        std::cout
            << absl::StrFormat(
                   R"({"mode": "%s", "prm": "%s", "batch": %d, "prompt_tokens": %d, "ttft_ms": %.2f, "decode_tokens_per_s": %.3f, "step_ms": %.3f, "floor_ms": %.3f, "cost_vs_vanilla": %.3f, "peak_device_gb": %.2f, "copy_gb_per_s": %.1f})",
                   mode, prm_name, batch, prompt_tokens, t.ttft_ms, t.tokens_per_s, t.step_ms, floor_ms,
                   ratio, peak_gb, bandwidth / 1e9)
            << std::endl;
      } else {
        std::cout << absl::StrFormat("| %s | %d | %d | %.0f | %.2f | %.2f | %.2f | %.2f | %.2fx | %.1f |\n",
                                     mode, batch, prompt_tokens, t.ttft_ms, t.tokens_per_s, t.step_ms,
                                     floor_ms, floor_ms / t.step_ms, ratio, peak_gb)
                  << std::flush;
      }
    }
  }
  return 0;
}
