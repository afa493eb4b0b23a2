// Runs PAD decoding for the Python parity tests: one JSON request on stdin, one JSON answer on stdout.
//
//   {"command": "generate", "policy": DIR, "dtype": "float32", "device": "cpu", "quantization": "none",
//    "reward_models": [{"name", "backbone", "adapter", "value_head"}], "requests": [REQUEST...],
//    "batched": true, "kv_slots": 24, "max_seq_len": 2560, "max_batch_tokens": 0, "prefill_stall_ratio": 0,
//    "cuda_graphs": false, "kv_cache_bytes": 0, "kv_block_size": 0, "prefix_cache": true}
//     REQUEST holds AlignmentRequest's fields by name ("mode": "pad" | "vanilla" | "preference_prompt" |
//     "genarm", "composition": "prompt" | "weighted"; beta and temperature may be "nan", "inf" or "-inf").
//     Answers {"results": [{"tokens", "text", "finish_reason", "prompt_tokens", "first_token_step",
//     "diagnostics"} |
//     {"error": {"code", "message"}}]}, all requests decoded in one batch (admitted first come, first served
//     as the cache has room, as the engine admits them) or one at a time, and "kv": the decoder's
//     preemptions, prefix_hit_tokens and prefill_tokens; with cuda_graphs also "fixed_shape_steps" and
//     "graphs_recorded" (PadDecoder's).
//   {"command": "prm_logits", ..., "reward_model": NAME, "sequences": [[ids]], "output": PATH}
//     The PRM's full-vocabulary logits at every position, float32, to PATH. Answers {"rows", "vocab"}.
//   {"command": "sample", ..., "requests": [REQUEST], "draws": N}
//     One step at the request's prompt; answers its candidates, scores and N draws (seeds 0..N-1) by the
//     decoder's own sampler.
//   {"command": "prepare", ..., "requests": [REQUEST...]}
//     The ids each model would see, without decoding: {"results": [{"policy_ids", "prm_ids": [[ids]]} |
//     {"error": ...}]}.
#include <ATen/ATen.h>

#include <cmath>
#include <fstream>
#include <iostream>
#include <iterator>
#include <limits>
#include <random>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"
#include "pad/model_set.h"
#include "pad/or_die.h"
#include "pad/sampling.h"

namespace {

using Json = nlohmann::json;

[[noreturn]] void Fail(const std::string& message) {
  std::cerr << "pad_probe: " << message << "\n";
  std::exit(1);
}

double Number(const Json& value) {
  if (value.is_string()) {
    const std::string text = value.get<std::string>();
    if (text == "nan") return std::numeric_limits<double>::quiet_NaN();
    if (text == "inf") return std::numeric_limits<double>::infinity();
    if (text == "-inf") return -std::numeric_limits<double>::infinity();
    Fail("not a number: " + text);
  }
  return value.get<double>();
}

pad::AlignmentRequest ParseRequest(const Json& j) {
  pad::AlignmentRequest r;
  r.prompt = j.value("prompt", "");
  r.prompt_ids = j.value("prompt_ids", std::vector<int32_t>{});
  for (const Json& m : j.value("messages", Json::array())) r.messages.push_back({m["role"], m["content"]});
  absl::StatusOr<pad::DecodingMode> mode = pad::ParseDecodingMode(j.value("mode", "pad"));
  if (!mode.ok()) Fail(std::string(mode.status().message()));
  r.mode = *mode;
  r.principles = j.value("principles", std::vector<std::string>{});
  r.weights = j.value("weights", std::vector<double>{});
  r.composition = j.value("composition", "prompt") == "weighted" ? pad::Composition::kWeighted
                                                                 : pad::Composition::kPrompt;
  r.reward_model = j.value("reward_model", "");
  r.policy_sees_guideline = j.value("policy_sees_guideline", true);
  r.top_k = j.value("top_k", 10);
  if (j.contains("beta")) r.beta = Number(j["beta"]);
  if (j.contains("temperature")) r.temperature = Number(j["temperature"]);
  if (j.contains("presence_penalty")) r.presence_penalty = Number(j["presence_penalty"]);
  if (j.contains("frequency_penalty")) r.frequency_penalty = Number(j["frequency_penalty"]);
  r.seed = j.value("seed", uint64_t{0});
  r.max_new_tokens = j.value("max_new_tokens", 128);
  r.stop = j.value("stop", std::vector<std::string>{});
  r.ignore_eos = j.value("ignore_eos", false);
  r.diagnostics = j.value("diagnostics", false);
  return r;
}

Json Error(const absl::Status& status) {
  return {{"error",
           {{"code", absl::StatusCodeToString(status.code())}, {"message", std::string(status.message())}}}};
}

// Decodes `requests` (one batch, or one at a time) to completion.
Json Generate(pad::PadDecoder& decoder, const std::vector<pad::AlignmentRequest>& requests, bool batched) {
  std::vector<Json> results(requests.size());
  std::map<uint64_t, size_t> owner;
  int64_t steps = 0;
  auto owner_events = [&](const pad::TokenEvent& e) {
    Json& r = results[owner[e.sequence]];
    if (!r.contains("first_token_step")) r["first_token_step"] = steps;
    r["tokens"].push_back(e.token);
    r["text"] = r["text"].get<std::string>() + e.text;
    if (e.diagnostics) {
      r["diagnostics"].push_back({{"token", e.token},
                                  {"reward", e.reward},
                                  {"candidates", e.diagnostics->candidates},
                                  {"policy_logits", e.diagnostics->policy_logits},
                                  {"rewards", e.diagnostics->rewards},
                                  {"scores", e.diagnostics->scores}});
    }
    if (e.finished) r["finish_reason"] = e.finish_reason == pad::FinishReason::kStop ? "stop" : "length";
  };
  auto drain = [&] {
    while (decoder.active() > 0) {
      for (const pad::TokenEvent& e : pad::OrDie(decoder.Step())) owner_events(e);
      ++steps;
    }
  };
  for (size_t i = 0; i < requests.size(); ++i) {
    auto prepared = decoder.Prepare(requests[i]);
    if (!prepared.ok()) {
      results[i] = Error(prepared.status());
      continue;
    }
    results[i] = {{"tokens", Json::array()}, {"text", ""}, {"prompt_tokens", prepared->policy_ids.size()}};
    while (!decoder.CanAdd(*prepared)) {  // steps until the cache has room, as the engine waits
      for (const pad::TokenEvent& e : pad::OrDie(decoder.Step())) owner_events(e);
      ++steps;
    }
    owner[pad::OrDie(decoder.Add(*std::move(prepared)))] = i;
    if (!batched) drain();
  }
  drain();
  const pad::KvStats kv = decoder.kv_stats();
  return {{"results", results},
          {"kv",
           {{"preemptions", kv.preemptions},
            {"prefix_hit_tokens", kv.prefix_hit_tokens},
            {"prefill_tokens", kv.prefill_tokens},
            {"blocks_total", kv.blocks_total}}}};
}

// The contexts PadDecoder::Prepare renders: the policy's ids and one id list per PRM row.
Json Prepare(const pad::PadDecoder& decoder, const std::vector<pad::AlignmentRequest>& requests) {
  Json results = Json::array();
  for (const pad::AlignmentRequest& request : requests) {
    auto prepared = decoder.Prepare(request);
    if (!prepared.ok()) {
      results.push_back(Error(prepared.status()));
      continue;
    }
    Json prm_ids = Json::array();
    for (const pad::PreparedRequest::PrmRow& row : prepared->prm_rows) prm_ids.push_back(row.ids);
    results.push_back({{"policy_ids", prepared->policy_ids}, {"prm_ids", prm_ids}});
  }
  return {{"results", results}};
}

Json PrmLogits(const pad::RewardModel& prm, const Json& request) {
  pad::KvCacheOptions cache_options;
  cache_options.max_slots = 1;
  cache_options.max_seq_len = 4096;
  auto cache =
      pad::OrDie(pad::KvCache::Create(prm.backbone().config(), cache_options, prm.backbone().options()));
  std::ofstream out(request["output"].get<std::string>(), std::ios::binary);
  Json answer = {{"vocab", prm.backbone().config().vocab_size}, {"rows", Json::array()}};
  for (const auto& sequence : request["sequences"]) {
    const auto ids = sequence.get<std::vector<int32_t>>();
    const int slot = *cache->Allocate();
    pad::ForwardRow row{slot, ids, prm.adapter()};
    at::Tensor hidden = pad::OrDie(prm.backbone().Forward({row}, cache.get(), /*all_positions=*/true));
    at::Tensor logits = pad::OrDie(prm.Logits(hidden)).to(at::kCPU).contiguous();  // [len, vocab]
    out.write(static_cast<const char*>(logits.data_ptr()), logits.nbytes());
    answer["rows"].push_back(logits.size(0));
    cache->Free(slot);
  }
  return answer;
}

Json Sample(pad::PadDecoder& decoder, const pad::AlignmentRequest& request, int draws) {
  pad::AlignmentRequest one = request;
  one.max_new_tokens = 1;
  one.diagnostics = true;
  pad::OrDie(decoder.Add(pad::OrDie(decoder.Prepare(one))));
  const pad::TokenEvent event = pad::OrDie(decoder.Step()).at(0);
  const pad::TokenDiagnostics& d = *event.diagnostics;
  Json answer = {{"candidates", d.candidates}, {"scores", d.scores}, {"draws", Json::array()}};
  // The decoder draws one uniform per step from the request's seeded stream; do the same per seed.
  for (int seed = 0; seed < draws; ++seed) {
    std::mt19937_64 rng(seed);
    const double uniform = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
    const int64_t choice = pad::SampleIndex(d.scores.data(), static_cast<int64_t>(d.scores.size()),
                                            static_cast<float>(request.temperature), uniform);
    answer["draws"].push_back(d.candidates[choice]);
  }
  return answer;
}

}  // namespace

int main() {
  const std::string input((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  const Json request = Json::parse(input, nullptr, /*allow_exceptions=*/false);
  if (request.is_discarded()) Fail("stdin is not JSON");
  c10::InferenceMode inference;
  pad::ModelOptions options;
  options.dtype = pad::OrDie(pad::ParseDtype(request.value("dtype", "float32")));
  options.device = pad::OrDie(pad::ParseDevice(request.value("device", "cpu")));
  options.quantization = pad::OrDie(pad::ParseQuantization(request.value("quantization", "none")));
  const std::string policy_dir = request["policy"].get<std::string>();
  std::vector<pad::RewardModelSpec> specs;
  for (const Json& spec_json : request.value("reward_models", Json::array())) {
    pad::RewardModelSpec spec;
    spec.name = spec_json.value("name", "default");
    spec.backbone_dir = spec_json.value("backbone", policy_dir);
    spec.adapter_dir = spec_json.value("adapter", "");
    spec.value_head_path = spec_json.value("value_head", "");
    specs.push_back(spec);
  }
  auto models = pad::OrDie(pad::ModelSet::Load(policy_dir, specs, options));
  const std::string command = request.value("command", "generate");
  Json answer;
  if (command == "prm_logits") {
    const std::string name = request.value("reward_model", "default");
    const pad::RewardModel* prm = models->reward_model(name);
    if (prm == nullptr) Fail("no reward model named " + name);
    std::cout << PrmLogits(*prm, request).dump() << "\n";
    return 0;
  }

  pad::DecoderOptions decoder_options;
  decoder_options.kv_slots = request.value("kv_slots", 24);
  decoder_options.max_seq_len = request.value("max_seq_len", 2560);
  decoder_options.max_batch_tokens = request.value("max_batch_tokens", int64_t{0});
  decoder_options.prefill_stall_ratio = request.value("prefill_stall_ratio", 0.0);
  decoder_options.cuda_graphs = request.value("cuda_graphs", false);
  decoder_options.kv_cache_bytes = request.value("kv_cache_bytes", int64_t{0});
  decoder_options.kv_block_size = request.value("kv_block_size", int64_t{0});
  decoder_options.prefix_cache = request.value("prefix_cache", true);
  auto decoder = pad::OrDie(models->MakeDecoder(decoder_options));
  if (command == "generate" || command == "prepare") {
    std::vector<pad::AlignmentRequest> requests;
    for (const Json& r : request["requests"]) requests.push_back(ParseRequest(r));
    answer = command == "prepare" ? Prepare(*decoder, requests)
                                  : Generate(*decoder, requests, request.value("batched", true));
    if (decoder_options.cuda_graphs) {
      answer["fixed_shape_steps"] = decoder->fixed_shape_steps();
      answer["graphs_recorded"] = decoder->graphs_recorded();
    }
  } else if (command == "sample") {
    answer = Sample(*decoder, ParseRequest(request["requests"].at(0)), request.value("draws", 1000));
  } else {
    Fail("unknown command " + command);
  }
  std::cout << answer.dump() << "\n";
  return 0;
}
