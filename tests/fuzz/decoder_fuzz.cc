// The wire bytes of a GenerateAligned request through everything the engine does with them: parsed and
// converted (ParseRequest, FromProto), checked and tokenized by PadDecoder::Prepare (ok, or INVALID_ARGUMENT
// naming a field), then decoded for a few steps by a tiny random-weight model with SmolLM2's tokenizer and
// chat template, with chunked prefill and a small slot pool. Holds: what Prepare accepts is within the
// limits and the vocabulary, every step gives at most one event (none while a chunk prefills) with a token
// in the vocabulary, and every slot is free once the sequence finishes or is removed.
#include <google/protobuf/stubs/logging.h>
#include <stdlib.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "pad/model_set.h"
#include "pad/pad_decoder.h"
#include "server/api_conversion.h"

namespace {

pad::DecoderOptions FuzzOptions() {
  pad::DecoderOptions options;
  options.kv_slots = 6;
  options.max_batch_tokens = 24;  // prompts longer than this prefill in chunks
  options.max_seq_len = 128;
  options.max_prompt_tokens = 100;
  options.max_new_tokens_limit = 64;
  options.default_max_new_tokens = 4;
  options.max_top_k = 32;
  options.max_principles = 4;
  options.max_stop_strings = 4;
  return options;
}

// SmolLM2's tokenizer and chat template beside a config.json of its vocabulary with tiny layers, in a
// temporary directory: ModelSet::Random makes the weights.
std::string TinyModelDir() {
  const char* env = std::getenv("PAD_FUZZ_MODEL");
  const std::filesystem::path smollm2 =
      std::filesystem::absolute(env != nullptr ? env : "models/SmolLM2-135M-Instruct");
  char dir_template[] = "/tmp/pad-decoder-fuzz-XXXXXX";
  if (mkdtemp(dir_template) == nullptr) std::abort();
  const std::filesystem::path dir = dir_template;
  for (const char* name : {"tokenizer.json", "tokenizer_config.json"}) {
    std::filesystem::create_symlink(smollm2 / name, dir / name);
  }
  std::ofstream(dir / "config.json") << R"({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
    "vocab_size": 49152, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
    "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32, "rms_norm_eps": 1e-5,
    "rope_theta": 100000.0, "max_position_embeddings": 8192, "tie_word_embeddings": true,
    "bos_token_id": 1, "eos_token_id": 2})";
  return dir.string();
}

struct Fixture {
  std::unique_ptr<pad::ModelSet> models;
  std::unique_ptr<pad::PadDecoder> decoder;
};

Fixture* TheFixture() {
  static Fixture* fixture = [] {
    auto* made = new Fixture();
    const std::string dir = TinyModelDir();
    auto models = pad::ModelSet::Random(dir, /*lora_rank=*/2, /*separate_prm_backbone=*/false, {});
    if (!models.ok()) std::abort();
    made->models = std::move(*models);
    auto decoder = made->models->MakeDecoder(FuzzOptions());
    if (!decoder.ok()) std::abort();
    made->decoder = std::move(*decoder);
    std::filesystem::remove_all(dir);  // loaded: the files are no longer read
    return made;
  }();
  return fixture;
}

void Check(bool condition) {
  if (!condition) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  google::protobuf::SetLogHandler(nullptr);  // a line per invalid string would be most of the run
  TheFixture();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto proto = pad::server::ParseRequest(absl::string_view(reinterpret_cast<const char*>(data), size));
  if (!proto.ok()) return 0;
  auto request = pad::server::FromProto(*proto);
  if (!request.ok()) return 0;

  pad::PadDecoder& decoder = *TheFixture()->decoder;
  const pad::DecoderOptions options = FuzzOptions();
  const int64_t vocab_size = TheFixture()->models->policy().config().vocab_size;
  auto prepared = decoder.Prepare(*request);
  if (!prepared.ok()) {
    // "field: why", with a field that is a name, not a sentence.
    Check(prepared.status().code() == absl::StatusCode::kInvalidArgument);
    const absl::string_view message = prepared.status().message();
    const size_t colon = message.find(": ");
    Check(colon != absl::string_view::npos && colon > 0);
    Check(message.substr(0, colon).find(' ') == absl::string_view::npos);
    return 0;
  }

  const pad::AlignmentRequest& accepted = prepared->request;
  Check(!prepared->policy_ids.empty());
  Check(static_cast<int64_t>(prepared->policy_ids.size()) <= options.max_prompt_tokens);
  Check(accepted.max_new_tokens >= 1 && accepted.max_new_tokens <= options.max_new_tokens_limit);
  Check(static_cast<int64_t>(prepared->policy_ids.size()) + accepted.max_new_tokens <= options.max_seq_len);
  for (int32_t id : prepared->policy_ids) Check(id >= 0 && id < vocab_size);
  const bool pad_mode = accepted.mode == pad::DecodingMode::kPad;
  const size_t expected_rows =
      !pad_mode ? 0 : (accepted.composition == pad::Composition::kWeighted ? accepted.principles.size() : 1);
  Check(prepared->prm_rows.size() == expected_rows);
  for (const auto& row : prepared->prm_rows) {
    Check(!row.ids.empty() && static_cast<int64_t>(row.ids.size()) <= options.max_prompt_tokens);
    for (int32_t id : row.ids) Check(id >= 0 && id < vocab_size);
  }

  // Every row fits the pool (Prepare refuses what never could), and the pool is empty between inputs.
  Check(decoder.CanAdd(*prepared));
  auto sequence = decoder.Add(std::move(*prepared));
  Check(sequence.ok());
  // Chunked prefill of up to 100 tokens in 24-token steps, then a few tokens, then the rest is cancelled.
  for (int step = 0; step < 8 && decoder.active() > 0; ++step) {
    auto events = decoder.Step();
    Check(events.ok() && events->size() <= 1);  // a step that prefills only a chunk scores no token
    if (events->empty()) continue;
    const pad::TokenEvent& event = events->front();
    Check(event.sequence == *sequence);
    Check(event.token >= 0 && event.token < vocab_size);
    if (event.finished) Check(decoder.active() == 0 && decoder.kv_stats().slots_in_use == 0);
  }
  decoder.Remove(*sequence);
  Check(decoder.active() == 0 && decoder.kv_stats().slots_in_use == 0 &&
        decoder.kv_stats().blocks_used == 0 && decoder.kv_stats().tokens_in_use == 0);
  return 0;
}
