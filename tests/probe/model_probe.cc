// Runs the model for the Python parity tests: one JSON request on stdin, one JSON answer on stdout.
//
//   {"command": "logits", "model": DIR, "dtype": "float32", "device": "cpu", "quantization": "none",
//    "sequences": [[ids...], ...],
//    "prefill": N (optional), "chunk": C (optional), "slots": [slot, ...] (optional), "output": PATH}
//     All-position logits of every sequence, run as one batch, written to PATH as float32 in sequence
//     order. With "prefill", each sequence's first N tokens go in as one prefill and the rest C tokens (1)
//     per forward. "slots" places the sequences in those cache slots, in any order. "block_size" (16) sets
//     the cache's blocks; "fragment": B takes B blocks for another sequence and gives them back first, so
//     the sequences' blocks come from the pool out of order. "one_at_a_time": each sequence alone, its
//     slot freed before the next, reusing what the prefix cache holds of it ("prefix_cache", default true):
//     only the positions it computed have logits. Answers {"rows": [len, ...], "first": [first position
//     computed, ...], "prefix_hit_tokens": n, "vocab": V, "cpu_kernels": "avx2" (the kernels' instruction
//     set, or "none")}.
#include <ATen/ATen.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <iterator>

#include "nlohmann/json.hpp"
#include "pad/llama.h"
#include "pad/or_die.h"

namespace {

using Json = nlohmann::json;

[[noreturn]] void Fail(const std::string& message) {
  std::cerr << "model_probe: " << message << "\n";
  std::exit(1);
}

// Each sequence alone, as a server runs requests one after another: the prefix cache supplies what it holds.
Json LogitsOneAtATime(pad::LlamaModel& model, pad::KvCache& cache, const Json& request) {
  const auto sequences = request["sequences"].get<std::vector<std::vector<int32_t>>>();
  std::ofstream out(request["output"].get<std::string>(), std::ios::binary);
  Json answer = {{"vocab", model.config().vocab_size}, {"cpu_kernels", model.cpu_kernels()}};
  for (const auto& sequence : sequences) {
    const int slot = *cache.Allocate();
    const int64_t first = cache.MatchPrefix(slot, sequence);
    const pad::ForwardRow row{slot, absl::MakeConstSpan(sequence).subspan(first)};
    at::Tensor hidden = pad::OrDie(model.Forward({row}, &cache, /*all_positions=*/true));
    at::Tensor logits = pad::OrDie(model.Logits(hidden)).to(at::kCPU).contiguous();  // [computed, vocab]
    out.write(static_cast<const char*>(logits.data_ptr()), logits.nbytes());
    answer["rows"].push_back(logits.size(0));
    answer["first"].push_back(first);
    cache.Free(slot);
  }
  answer["prefix_hit_tokens"] = cache.prefix_hit_tokens();
  return answer;
}

Json Logits(pad::LlamaModel& model, pad::KvCache& cache, const Json& request) {
  if (request.value("one_at_a_time", false)) return LogitsOneAtATime(model, cache, request);
  const auto sequences = request["sequences"].get<std::vector<std::vector<int32_t>>>();
  const int64_t prefill = request.value("prefill", int64_t{0});
  const int64_t chunk = request.value("chunk", int64_t{1});
  if (const int64_t fragment = request.value("fragment", int64_t{0}); fragment > 0) {
    // Blocks given back in table order are taken again last first: every sequence's table runs backwards
    // through the pool, interleaved with the others' as they grow.
    const int other = *cache.Allocate();
    cache.Reserve(other, fragment * cache.block_size());
    cache.Free(other);
  }
  // "slots": the cache slot of each sequence (default 0, 1, 2, ...); every slot is taken, so any may be
  // named.
  while (cache.Allocate().has_value()) {
  }
  std::vector<int> slots;
  for (size_t i = 0; i < sequences.size(); ++i) slots.push_back(static_cast<int>(i));
  if (request.contains("slots")) slots = request["slots"].get<std::vector<int>>();

  // Per sequence, the logits of each position, gathered across the forwards that produce them.
  std::vector<std::vector<at::Tensor>> per_sequence(sequences.size());
  int64_t offset = 0;
  while (true) {
    std::vector<pad::ForwardRow> rows;
    std::vector<size_t> owners;
    for (size_t i = 0; i < sequences.size(); ++i) {
      const int64_t len = static_cast<int64_t>(sequences[i].size());
      if (offset >= len) continue;
      // First call: the prefill (or the whole sequence); then "chunk" tokens at a time.
      const int64_t take =
          offset == 0 ? (prefill > 0 ? std::min(prefill, len) : len) : std::min(chunk, len - offset);
      rows.push_back(pad::ForwardRow{slots[i], absl::MakeConstSpan(sequences[i]).subspan(offset, take)});
      owners.push_back(i);
    }
    if (rows.empty()) break;
    at::Tensor hidden = pad::OrDie(model.Forward(rows, &cache, /*all_positions=*/true));
    at::Tensor logits = pad::OrDie(model.Logits(hidden)).to(at::kCPU);  // [tokens, vocab]
    int64_t row_start = 0;
    for (size_t r = 0; r < rows.size(); ++r) {
      const int64_t n = static_cast<int64_t>(rows[r].tokens.size());
      per_sequence[owners[r]].push_back(logits.narrow(0, row_start, n));
      row_start += n;
    }
    offset += offset == 0 ? (prefill > 0 ? prefill : 1 << 30) : chunk;
    if (prefill == 0) break;
  }
  std::ofstream out(request["output"].get<std::string>(), std::ios::binary);
  Json answer;
  answer["vocab"] = model.config().vocab_size;
  answer["prefix_hit_tokens"] = 0;
  answer["cpu_kernels"] = model.cpu_kernels();
  for (const auto& parts : per_sequence) {
    at::Tensor all = at::cat(parts, 0).contiguous();
    out.write(static_cast<const char*>(all.data_ptr()), all.nbytes());
    answer["rows"].push_back(all.size(0));
    answer["first"].push_back(0);
  }
  return answer;
}

}  // namespace

int main() {
  const std::string input((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  Json request = Json::parse(input, nullptr, /*allow_exceptions=*/false);
  if (request.is_discarded()) Fail("stdin is not JSON");
  pad::ModelOptions options;
  options.dtype = pad::OrDie(pad::ParseDtype(request.value("dtype", "float32")));
  options.device = pad::OrDie(pad::ParseDevice(request.value("device", "cpu")));
  options.quantization = pad::OrDie(pad::ParseQuantization(request.value("quantization", "none")));
  auto model = pad::OrDie(pad::LlamaModel::Load(request["model"].get<std::string>(), options));
  pad::KvCacheOptions cache_options;
  cache_options.max_slots = 16;
  cache_options.max_seq_len = 512;
  cache_options.block_size = request.value("block_size", int64_t{16});
  cache_options.prefix_cache = request.value("prefix_cache", true);
  auto cache = pad::OrDie(pad::KvCache::Create(model->config(), cache_options, options));
  c10::InferenceMode inference;
  const std::string command = request.value("command", "");
  Json answer;
  if (command == "logits") {
    answer = Logits(*model, *cache, request);
  } else {
    Fail("unknown command " + command);
  }
  std::cout << answer.dump() << "\n";
  return 0;
}
