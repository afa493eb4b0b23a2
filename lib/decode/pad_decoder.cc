#include "pad/pad_decoder.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <random>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "pad/device_memory.h"
#include "pad/field_error.h"
#include "pad/sampling.h"
#include "pad/status_macros.h"

namespace pad {

struct PadDecoder::Sequence {
  uint64_t id = 0;
  PreparedRequest prepared;
  int policy_slot = -1;          // -1 while preempted
  KvCache* prm_cache = nullptr;  // where the PRM rows live (the policy's cache when the backbone is shared)
  std::vector<int> prm_slots;    // one per prepared.prm_rows
  bool prefilled = false;
  bool preempted = false;  // its blocks given back; it waits to be admitted again and recomputed
  int32_t last_token = 0;
  int generated = 0;
  std::vector<int32_t> generated_ids;
  int folded = 0;  // generated tokens appended to the prompts' ids, to recompute them after a preemption
  absl::flat_hash_map<int32_t, int> generated_counts;  // token id -> times generated (kept with penalties)
  std::mt19937_64 rng;
  std::unique_ptr<IncrementalDecoder> text;
  std::string held;  // decoded text withheld because it may begin a stop string
  bool finished = false;
};

namespace {

absl::Status Invalid(absl::string_view field, absl::string_view why) { return FieldError(field, why); }

bool IsBlank(const std::string& text) { return text.find_first_not_of(" \t\r\n") == std::string::npos; }

// Length of the longest suffix of `text` that is a proper prefix of some stop string.
size_t HeldBackLength(const std::string& text, const std::vector<std::string>& stops) {
  size_t held = 0;
  for (const std::string& stop : stops) {
    for (size_t n = std::min(text.size(), stop.size() - 1); n > held; --n) {
      if (text.compare(text.size() - n, n, stop, 0, n) == 0) {
        held = n;
        break;
      }
    }
  }
  return held;
}

}  // namespace

PadDecoder::~PadDecoder() = default;

absl::StatusOr<std::unique_ptr<PadDecoder>> PadDecoder::Create(const LlamaModel* policy,
                                                               const Tokenizer* tokenizer,
                                                               const ChatTemplate* chat_template,
                                                               std::vector<const RewardModel*> reward_models,
                                                               const DecoderOptions& options) {
  std::unique_ptr<PadDecoder> decoder(new PadDecoder());
  decoder->policy_ = policy;
  decoder->tokenizer_ = tokenizer;
  decoder->chat_template_ = chat_template;
  decoder->reward_models_ = std::move(reward_models);
  decoder->options_ = options;
  if (policy->config().vocab_size > (int64_t{1} << 24)) {  // a step brings candidate ids back as float32
    return absl::InvalidArgumentError(
        absl::StrCat("policy: a vocabulary of ", policy->config().vocab_size, " tokens is over 2^24"));
  }
  // One cache per distinct backbone, the policy's first.
  std::vector<const LlamaModel*> backbones = {policy};
  for (const RewardModel* prm : decoder->reward_models_) {
    if (prm->backbone().config().vocab_size != policy->config().vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "reward model ", prm->name(), ": vocabulary of ", prm->backbone().config().vocab_size,
          " tokens, the policy's has ", policy->config().vocab_size, "; PAD needs the same tokenizer"));
    }
    if (std::find(backbones.begin(), backbones.end(), &prm->backbone()) == backbones.end()) {
      backbones.push_back(&prm->backbone());
    }
  }
  // Blocks of 256 tokens on a GPU, the least FlashAttention's paged kernel takes; 16 on the CPU (vLLM's
  // default), as fast as larger ones there and small enough to share a short system prompt or guideline.
  int64_t block_size = options.kv_block_size;
  if (block_size == 0) block_size = policy->options().device.is_cuda() ? 256 : 16;
  decoder->options_.kv_block_size = block_size;
  const int64_t blocks_per_sequence = (options.max_seq_len + block_size - 1) / block_size;
  int64_t block_bytes = 0;  // one block in every cache
  for (const LlamaModel* backbone : backbones) {
    block_bytes += KvCache::BlockBytes(backbone->config(), block_size, backbone->options());
  }
  // The pool: what memory_fraction leaves, or kv_cache_bytes, or by default every slot at max_seq_len.
  int64_t blocks = options.kv_slots * blocks_per_sequence;
  if (options.memory_fraction > 0) {
    PAD_ASSIGN_OR_RETURN(const DeviceMemory memory, QueryDeviceMemory(policy->options().device));
    const KvPlan plan =
        PlanKvBlocks(memory, options.memory_fraction, options.memory_reserve_bytes, block_bytes, blocks);
    blocks = plan.blocks;
    decoder->kv_plan_ = plan.ToString();
  } else if (options.kv_cache_bytes > 0) {
    blocks = options.kv_cache_bytes / block_bytes;
    decoder->kv_plan_ = absl::StrCat(options.kv_cache_bytes, " bytes for the KV caches: ", blocks,
                                     " blocks of ", block_bytes, " bytes");
  }
  if (blocks < blocks_per_sequence) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the KV cache holds ", blocks, " blocks of ", block_size, " tokens, less than one sequence of ",
        options.max_seq_len, " tokens (--max_seq_len) needs",
        decoder->kv_plan_.empty() ? "" : absl::StrCat(": ", decoder->kv_plan_)));
  }
  // Decode rows never fill the budget while a prompt waits for prefill (it holds a slot), so prefill always
  // progresses.
  const int64_t all_slots = options.kv_slots * static_cast<int64_t>(backbones.size());
  if (options.max_batch_tokens > 0 && options.max_batch_tokens < all_slots) {
    return absl::InvalidArgumentError(absl::StrCat("max_batch_tokens: ", options.max_batch_tokens,
                                                   " is less than the KV slots of every cache, ", all_slots));
  }
  KvCacheOptions cache_options;
  cache_options.max_slots = options.kv_slots;
  cache_options.max_seq_len = options.max_seq_len;
  cache_options.block_size = block_size;
  cache_options.num_blocks = blocks;
  cache_options.prefix_cache = options.prefix_cache;
  cache_options.padding_block = options.cuda_graphs;
  for (const LlamaModel* backbone : backbones) {
    PAD_ASSIGN_OR_RETURN(auto cache, KvCache::Create(backbone->config(), cache_options, backbone->options()));
    if (options.cuda_graphs) {
      std::vector<const LoraAdapter*> adapters;  // of the PRMs on this backbone
      for (const RewardModel* prm : decoder->reward_models_) {
        if (&prm->backbone() == backbone && prm->adapter() != nullptr &&
            std::find(adapters.begin(), adapters.end(), prm->adapter()) == adapters.end()) {
          adapters.push_back(prm->adapter());
        }
      }
      PAD_ASSIGN_OR_RETURN(auto graphs, DecodeGraphs::Create(backbone, cache.get(), std::move(adapters)));
      decoder->graphs_.push_back(std::move(graphs));
    }
    decoder->caches_.emplace_back(backbone, std::move(cache));
  }
  return decoder;
}

KvCache* PadDecoder::CacheFor(const LlamaModel& backbone) const {
  for (const auto& [model, cache] : caches_) {
    if (model == &backbone) return cache.get();
  }
  return nullptr;
}

absl::StatusOr<PreparedRequest> PadDecoder::Prepare(const AlignmentRequest& given) const {
  const DecoderOptions& o = options_;
  AlignmentRequest request = given;
  // A default never exceeds the limit: a server started with a low limit still serves requests that
  // leave max_new_tokens unset.
  if (request.max_new_tokens == 0) {
    request.max_new_tokens = std::min(o.default_max_new_tokens, o.max_new_tokens_limit);
  }
  const bool has_messages = !request.messages.empty(), has_prompt = !request.prompt.empty();
  const bool has_ids = !request.prompt_ids.empty();
  if (has_messages + has_prompt + has_ids != 1) {
    // Blame the first input given (prompt when none is), or else the second.
    const char* field = has_ids && (has_prompt || has_messages) ? "prompt_ids"
                        : has_prompt && has_messages            ? "messages"
                                                                : "prompt";
    return Invalid(field, "exactly one of prompt, messages and prompt_ids must be given");
  }
  const bool pad = UsesRewardModel(request.mode);
  const std::string mode_name = absl::AsciiStrToUpper(DecodingModeName(request.mode));
  const bool needs_principles = request.mode != DecodingMode::kVanilla;
  if (needs_principles && request.principles.empty()) {
    return Invalid("principles", absl::StrCat(mode_name, " mode needs at least one principle"));
  }
  if (static_cast<int>(request.principles.size()) > o.max_principles) {
    return Invalid("principles", absl::StrCat(request.principles.size(),
                                              " principles, more than the limit of ", o.max_principles));
  }
  for (size_t i = 0; i < request.principles.size(); ++i) {
    if (IsBlank(request.principles[i])) return Invalid(absl::StrCat("principles[", i, "]"), "is empty");
  }
  if (!request.weights.empty()) {
    if (request.composition != Composition::kWeighted) {
      return Invalid("weights[0]", "is only used with composition WEIGHTED");  // the first weight given
    }
    if (request.weights.size() != request.principles.size()) {
      return Invalid("weights", absl::StrCat(request.weights.size(), " weights for ",
                                             request.principles.size(), " principles"));
    }
    for (size_t i = 0; i < request.weights.size(); ++i) {
      if (!std::isfinite(request.weights[i]))
        return Invalid(absl::StrCat("weights[", i, "]"), "must be finite");
    }
  }
  const int64_t vocab = policy_->config().vocab_size;
  const int64_t k_limit = std::min<int64_t>(vocab, o.max_top_k);
  if (request.top_k < 1 || request.top_k > k_limit) {
    return Invalid("top_k", absl::StrCat(request.top_k, " is not in [1, ", k_limit, "]"));
  }
  if (!std::isfinite(request.beta)) return Invalid("beta", "must be finite");
  if (!std::isfinite(request.temperature) || request.temperature < 0) {
    return Invalid("temperature", "must be a finite number >= 0");
  }
  if (!(std::abs(request.presence_penalty) <= 2)) return Invalid("presence_penalty", "is not in [-2, 2]");
  if (!(std::abs(request.frequency_penalty) <= 2)) return Invalid("frequency_penalty", "is not in [-2, 2]");
  if (request.max_new_tokens < 1 || request.max_new_tokens > o.max_new_tokens_limit) {
    return Invalid("max_new_tokens",
                   absl::StrCat(request.max_new_tokens, " is not in [1, ", o.max_new_tokens_limit, "]"));
  }
  if (static_cast<int>(request.stop.size()) > o.max_stop_strings) {
    return Invalid("stop", absl::StrCat(request.stop.size(), " stop strings, more than the limit of ",
                                        o.max_stop_strings));
  }
  for (size_t i = 0; i < request.stop.size(); ++i) {
    if (request.stop[i].empty()) return Invalid(absl::StrCat("stop[", i, "]"), "is empty");
  }

  PreparedRequest prepared;
  prepared.request = request;
  if (pad) {
    if (reward_models_.empty())
      return Invalid("reward_model",
                     absl::StrCat(mode_name, " mode needs a reward model and none is loaded"));
    for (const RewardModel* prm : reward_models_) {
      if (request.reward_model.empty() || prm->name() == request.reward_model) {
        prepared.reward_model = prm;
        break;
      }
    }
    if (prepared.reward_model == nullptr) {
      std::vector<std::string> names;
      for (const RewardModel* prm : reward_models_) names.push_back(prm->name());
      return Invalid("reward_model", absl::StrCat("\"", request.reward_model, "\" is not loaded (loaded: ",
                                                  absl::StrJoin(names, ", "), ")"));
    }
  }

  // A request that needs more rows than a cache holds would wait forever; refuse it now. A PRM that shares
  // the policy's backbone shares its cache too.
  if (pad) {
    const bool weighted = request.composition == Composition::kWeighted;
    const int64_t prm_rows = weighted ? static_cast<int64_t>(request.principles.size()) : 1;
    const bool shared = CacheFor(prepared.reward_model->backbone()) == caches_[0].second.get();
    const int64_t needed = shared ? 1 + prm_rows : prm_rows;
    if (needed > o.kv_slots) {
      const std::string what =
          weighted ? absl::StrCat("WEIGHTED composition of ", prm_rows, " principles needs ", needed)
                   : absl::StrCat(mode_name, " needs ", needed);
      return Invalid(weighted ? "principles" : "mode",
                     absl::StrCat(what, " KV cache slots per request (", shared ? "the policy's and " : "",
                                  weighted ? "one per principle" : "the PRM's", "), more than the ",
                                  o.kv_slots, " configured (--kv_slots)"));
    }
  }

  // A prompt of `n` tokens against the limits; `field` is what a too-long prompt blames.
  auto check_length = [&](const std::string& field, int64_t n) -> absl::Status {
    if (n > o.max_prompt_tokens) {
      return Invalid(field, absl::StrCat(n, " tokens, more than the limit of ", o.max_prompt_tokens));
    }
    if (n + request.max_new_tokens > o.max_seq_len) {
      return Invalid("max_new_tokens", absl::StrCat(n, " prompt tokens plus ", request.max_new_tokens,
                                                    " new tokens exceed the context of ", o.max_seq_len));
    }
    return absl::OkStatus();
  };
  if (has_ids) {
    if (request.mode != DecodingMode::kVanilla) {
      return Invalid("prompt_ids",
                     "only VANILLA mode takes token ids: the guideline text wraps a text prompt");
    }
    const int64_t vocab_size = policy_->config().vocab_size;
    for (size_t i = 0; i < request.prompt_ids.size(); ++i) {
      if (request.prompt_ids[i] < 0 || request.prompt_ids[i] >= vocab_size) {
        return Invalid(absl::StrCat("prompt_ids[", i, "]"),
                       absl::StrCat(request.prompt_ids[i], " is not in [0, ", vocab_size, ")"));
      }
    }
    PAD_RETURN_IF_ERROR(check_length("prompt_ids", static_cast<int64_t>(request.prompt_ids.size())));
    prepared.policy_ids = request.prompt_ids;
    return prepared;
  }

  // An unknown role is named before the search for a user message can miss it.
  PAD_RETURN_IF_ERROR(CheckMessageRoles(request.messages));
  // The instruction is the raw prompt, or the last user message that the guideline wraps.
  int instruction_index = -1;
  for (size_t i = 0; i < request.messages.size(); ++i) {
    if (request.messages[i].role == "user") instruction_index = static_cast<int>(i);
  }
  if (has_messages && instruction_index < 0) return Invalid("messages", "need a user message to answer");
  const std::string& instruction = has_prompt ? request.prompt : request.messages[instruction_index].content;
  const std::string field = has_prompt ? "prompt" : "messages";
  auto encode = [&](const std::string& content) -> absl::StatusOr<std::vector<int32_t>> {
    std::string text = content;
    if (has_messages) {
      std::vector<ChatMessage> messages = request.messages;
      messages[instruction_index].content = content;
      PAD_ASSIGN_OR_RETURN(text, chat_template_->Apply(messages, /*add_generation_prompt=*/true));
    }
    // A chat template writes its own special tokens (Llama-3's BOS); the tokenizer's post-processor adds
    // them only to a raw prompt, as transformers' apply_chat_template(tokenize=True) does.
    auto ids = tokenizer_->Encode(text, /*add_special_tokens=*/!has_messages);
    if (!ids.ok()) return Invalid(field, ids.status().message());
    return ids;
  };
  // content: the instruction, or the guideline text that wraps it.
  auto tokenize = [&](const std::string& content) -> absl::StatusOr<std::vector<int32_t>> {
    PAD_ASSIGN_OR_RETURN(std::vector<int32_t> ids, encode(content));
    // The guideline's tokens count against the prompt: blame the principles when they are what overflows.
    if (static_cast<int>(ids.size()) > o.max_prompt_tokens && content != instruction) {
      PAD_ASSIGN_OR_RETURN(std::vector<int32_t> bare, encode(instruction));
      if (static_cast<int>(bare.size()) <= o.max_prompt_tokens) {
        return Invalid(
            "principles",
            absl::StrCat("the guideline text makes the prompt ", ids.size(), " tokens (", bare.size(),
                         " without it), more than the limit of ", o.max_prompt_tokens));
      }
    }
    PAD_RETURN_IF_ERROR(check_length(field, static_cast<int64_t>(ids.size())));
    return ids;
  };
  const bool policy_guided =
      request.mode == DecodingMode::kPreferencePrompt || (pad && request.policy_sees_guideline);
  PAD_ASSIGN_OR_RETURN(
      prepared.policy_ids,
      tokenize(policy_guided ? GuidelineText(request.principles, instruction) : instruction));
  if (pad) {
    if (request.composition == Composition::kPrompt) {
      PreparedRequest::PrmRow row;
      if (policy_guided) {
        row.ids = prepared.policy_ids;  // the official code feeds both models the same ids
      } else {
        PAD_ASSIGN_OR_RETURN(row.ids, tokenize(GuidelineText(request.principles, instruction)));
      }
      prepared.prm_rows.push_back(std::move(row));
    } else {
      const size_t n = request.principles.size();
      for (size_t i = 0; i < n; ++i) {
        PreparedRequest::PrmRow row;
        PAD_ASSIGN_OR_RETURN(row.ids, tokenize(GuidelineText({request.principles[i]}, instruction)));
        row.weight = request.weights.empty() ? 1.0 / static_cast<double>(n) : request.weights[i];
        prepared.prm_rows.push_back(std::move(row));
      }
    }
  }
  // Every request must be able to finish alone in the pool (so that preempting the others always lets the
  // oldest run): its rows at their longest, prompt plus max_new_tokens, in each cache.
  std::vector<int64_t> longest(caches_.size(), 0);
  auto add = [&](size_t b, size_t prompt) {
    longest[b] += caches_[b].second->BlocksFor(static_cast<int64_t>(prompt) + request.max_new_tokens);
  };
  add(0, prepared.policy_ids.size());
  for (const PreparedRequest::PrmRow& row : prepared.prm_rows)
    add(BackboneOf(*prepared.reward_model), row.ids.size());
  for (size_t b = 0; b < caches_.size(); ++b) {
    const KvCache& cache = *caches_[b].second;
    if (longest[b] > cache.num_blocks()) {
      return Invalid(
          "max_new_tokens",
          absl::StrCat("the prompt", prepared.prm_rows.empty() ? "" : "s of its ",
                       prepared.prm_rows.empty() ? "" : absl::StrCat(1 + prepared.prm_rows.size(), " rows"),
                       " plus ", request.max_new_tokens, " new tokens need ", longest[b],
                       " KV cache blocks of ", cache.block_size(), " tokens, more than the ",
                       cache.num_blocks(), " the cache holds"));
    }
  }
  return prepared;
}

namespace {

// What computes a row's keys and values, so that only equal ones share a cached prefix: the backbone alone,
// or with an adapter.
uint64_t PrefixKey(const LoraAdapter* adapter) { return reinterpret_cast<uintptr_t>(adapter); }

}  // namespace

std::vector<PadDecoder::Needs> PadDecoder::NeedsOf(const PreparedRequest& prepared) const {
  std::vector<Needs> needs(caches_.size());
  auto add = [&](size_t b, const std::vector<int32_t>& ids, const LoraAdapter* adapter) {
    const KvCache& cache = *caches_[b].second;
    ++needs[b].slots;
    needs[b].blocks += cache.BlocksToAdmit(PrefixKey(adapter), ids);
  };
  add(0, prepared.policy_ids, nullptr);
  for (const PreparedRequest::PrmRow& row : prepared.prm_rows) {
    add(BackboneOf(*prepared.reward_model), row.ids, prepared.reward_model->adapter());
  }
  return needs;
}

size_t PadDecoder::BackboneOf(const RewardModel& prm) const {
  size_t b = 0;
  while (caches_[b].first != &prm.backbone()) ++b;
  return b;
}

bool PadDecoder::Fits(const PreparedRequest& prepared) const {
  const std::vector<Needs> needs = NeedsOf(prepared);
  for (size_t b = 0; b < caches_.size(); ++b) {
    const KvCache& cache = *caches_[b].second;
    if (cache.max_slots() - cache.slots_in_use() < needs[b].slots) return false;
    if (cache.blocks_available() < needs[b].blocks) return false;
  }
  return true;
}

bool PadDecoder::CanAdd(const PreparedRequest& prepared) const {
  // Preempted sequences go first: a new one would take the blocks they wait for.
  for (const auto& [id, sequence] : sequences_) {
    if (sequence->preempted) return false;
  }
  return Fits(prepared);
}

void PadDecoder::Admit(Sequence& s) {
  // Each row: a slot, the longest cached prefix of its prompt, and blocks for the rest of it.
  auto take = [](KvCache* cache, const std::vector<int32_t>& ids, const LoraAdapter* adapter) {
    const int slot = *cache->Allocate(PrefixKey(adapter));
    cache->MatchPrefix(slot, ids);
    const bool reserved = cache->Reserve(slot, static_cast<int64_t>(ids.size()));
    if (!reserved) std::abort();  // Fits counted these blocks: a bug
    return slot;
  };
  const PreparedRequest& p = s.prepared;
  s.policy_slot = take(caches_[0].second.get(), p.policy_ids, nullptr);
  if (p.reward_model != nullptr) {
    s.prm_cache = caches_[BackboneOf(*p.reward_model)].second.get();
    for (const PreparedRequest::PrmRow& row : p.prm_rows) {
      s.prm_slots.push_back(take(s.prm_cache, row.ids, p.reward_model->adapter()));
    }
  }
  s.preempted = false;
}

absl::StatusOr<uint64_t> PadDecoder::Add(PreparedRequest prepared) {
  if (!CanAdd(prepared)) {
    return absl::ResourceExhaustedError(
        absl::StrCat("no free KV cache slots or blocks for ", 1 + prepared.prm_rows.size(), " rows"));
  }
  auto sequence = std::make_unique<Sequence>();
  sequence->id = next_id_++;
  sequence->rng.seed(prepared.request.seed);
  sequence->text = std::make_unique<IncrementalDecoder>(tokenizer_, /*skip_special_tokens=*/true);
  sequence->prepared = std::move(prepared);
  Admit(*sequence);
  const uint64_t id = sequence->id;
  sequences_.emplace(id, std::move(sequence));
  return id;
}

void PadDecoder::Release(Sequence& sequence) {
  if (sequence.policy_slot >= 0) caches_[0].second->Free(sequence.policy_slot);
  sequence.policy_slot = -1;
  for (int slot : sequence.prm_slots) sequence.prm_cache->Free(slot);
  sequence.prm_slots.clear();
}

void PadDecoder::Preempt(Sequence& s) {
  // Recomputation: the generated tokens join the prompts, so that the next prefill rebuilds the cache and
  // scores the next token, as the decode step would have.
  PreparedRequest& p = s.prepared;
  const auto more = absl::MakeConstSpan(s.generated_ids).subspan(s.folded);
  p.policy_ids.insert(p.policy_ids.end(), more.begin(), more.end());
  for (PreparedRequest::PrmRow& row : p.prm_rows) row.ids.insert(row.ids.end(), more.begin(), more.end());
  s.folded = s.generated;
  s.prefilled = false;
  s.preempted = true;
  Release(s);
  ++preemptions_;
}

bool PadDecoder::ReserveNextToken(Sequence& s) {
  std::vector<int64_t> needed(caches_.size(), 0);
  needed[0] += caches_[0].second->BlocksNeeded(s.policy_slot, caches_[0].second->length(s.policy_slot) + 1);
  const size_t prm_backbone = s.prm_slots.empty() ? 0 : BackboneOf(*s.prepared.reward_model);
  for (const int slot : s.prm_slots)
    needed[prm_backbone] += s.prm_cache->BlocksNeeded(slot, s.prm_cache->length(slot) + 1);
  for (size_t b = 0; b < caches_.size(); ++b) {
    if (needed[b] > caches_[b].second->blocks_available()) return false;
  }
  caches_[0].second->Reserve(s.policy_slot, caches_[0].second->length(s.policy_slot) + 1);
  for (const int slot : s.prm_slots) s.prm_cache->Reserve(slot, s.prm_cache->length(slot) + 1);
  return true;
}

void PadDecoder::Remove(uint64_t id) {
  auto it = sequences_.find(id);
  if (it == sequences_.end()) return;
  Release(*it->second);
  sequences_.erase(it);
}

KvStats PadDecoder::kv_stats() const {
  KvStats stats;
  for (const auto& [model, cache] : caches_) {
    stats.slots_in_use += cache->slots_in_use();
    stats.slots_total += cache->max_slots();
    stats.blocks_used += cache->blocks_used();
    stats.blocks_total += cache->num_blocks();
    stats.blocks_cached += cache->blocks_cached();
    stats.tokens_in_use += cache->tokens_in_use();
    stats.bytes += cache->bytes();
    stats.prefix_hit_tokens += cache->prefix_hit_tokens();
  }
  stats.block_size = options_.kv_block_size;
  stats.preemptions = preemptions_;
  stats.prefill_tokens = prefill_tokens_;
  stats.plan = kv_plan_;
  return stats;
}

int64_t PadDecoder::fixed_shape_steps() const {
  int64_t total = 0;
  for (const auto& graphs : graphs_) total += graphs->steps();
  return total;
}

int64_t PadDecoder::graphs_recorded() const {
  int64_t total = 0;
  for (const auto& graphs : graphs_) total += graphs->graphs();
  return total;
}

int64_t PadDecoder::graph_replays() const {
  int64_t total = 0;
  for (const auto& graphs : graphs_) total += graphs->replays();
  return total;
}

absl::StatusOr<std::vector<TokenEvent>> PadDecoder::Step() {
  // Preempted sequences come back first, oldest first, as slots and blocks allow.
  for (auto& [id, s] : sequences_) {
    if (!s->preempted) continue;
    if (!Fits(s->prepared)) break;
    Admit(*s);
  }
  // Every decoding sequence gets room for its next token, oldest first; when the pool runs out, the youngest
  // sequence holding blocks is preempted, until the older ones fit (vLLM's recomputation). Prepare made sure
  // that any one request fits the pool alone, so the oldest always runs.
  for (auto& [id, s] : sequences_) {
    if (s->preempted || !s->prefilled) continue;
    while (!ReserveNextToken(*s)) {
      auto victim = std::find_if(sequences_.rbegin(), sequences_.rend(),
                                 [](const auto& entry) { return !entry.second->preempted; });
      Preempt(*victim->second);
      if (victim->second.get() == s.get()) break;
    }
  }
  std::vector<Sequence*> prefill, decode;
  for (auto& [id, sequence] : sequences_) {
    if (sequence->preempted) continue;
    (sequence->prefilled ? decode : prefill).push_back(sequence.get());
  }
  // Decode rows first, one token each; prefill takes what is left of max_batch_tokens, oldest first: whole
  // prompts (the pass that scores their first token), then a chunk of the next one, which waits for later
  // steps to finish. A chunk leaves every row its last token, for the pass that scores it.
  int64_t decode_rows = 0, waiting_rows = 0;
  for (const Sequence* s : decode) decode_rows += 1 + static_cast<int64_t>(s->prm_slots.size());
  for (const Sequence* s : prefill) waiting_rows += 1 + static_cast<int64_t>(s->prm_slots.size());
  int64_t budget = options_.max_batch_tokens > 0 ? options_.max_batch_tokens - decode_rows
                                                 : std::numeric_limits<int64_t>::max();
  if (options_.prefill_stall_ratio > 0 && !decode.empty() && step_costs_.ready()) {
    // The stall is shared out by rows: prompts outnumbering the decoding rows (a burst onto a lightly
    // loaded server) may take proportionally longer, so that they join the batch soon.
    const double share = std::max(1.0, static_cast<double>(waiting_rows) / static_cast<double>(decode_rows));
    const double affordable = options_.prefill_stall_ratio * share * step_costs_.DecodeSeconds(decode_rows) /
                              step_costs_.PromptTokenSeconds();
    budget = std::min(budget, std::max(kMinPrefillChunk, static_cast<int64_t>(std::min(affordable, 1e15))));
  }
  std::vector<Sequence*> complete;
  std::vector<std::vector<ForwardRow>> chunks(caches_.size());  // per backbone
  for (Sequence* s : prefill) {
    const std::vector<PrefillRow> rows = PrefillRows(*s);
    int64_t remaining = 0;
    for (const PrefillRow& row : rows) remaining += row.remaining();
    // Only last tokens left: the prompt completes even past the budget, so that decode rows cannot starve it.
    const bool last_tokens_only = remaining == static_cast<int64_t>(rows.size());
    if (remaining <= budget || (last_tokens_only && complete.empty() && budget > 0)) {
      complete.push_back(s);
      budget -= remaining;
      continue;
    }
    for (const PrefillRow& row : rows) {
      const int64_t take = std::min<int64_t>(budget, row.remaining() - 1);
      if (take <= 0) continue;
      chunks[row.backbone].push_back(ForwardRow{row.slot, row.ids.subspan(row.cached, take), row.adapter});
      budget -= take;
    }
    break;
  }
  // One forward per backbone for the whole step: decode rows, the prompts that complete (scored with them)
  // and the chunk; what it cost feeds step_costs_, for prefill_stall_ratio.
  std::vector<TokenEvent> events;
  std::vector<Sequence*> batch = decode;
  batch.insert(batch.end(), complete.begin(), complete.end());
  const bool any_chunk = std::any_of(chunks.begin(), chunks.end(), [](const auto& c) { return !c.empty(); });
  absl::Status status = absl::OkStatus();
  if (!batch.empty() || any_chunk) {
    using Clock = std::chrono::steady_clock;
    const Clock::time_point start = Clock::now();
    const int64_t tokens_before = prefill_tokens_;
    status = RunPass(batch, chunks, &events);
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    const int64_t fed = prefill_tokens_ - tokens_before;
    // A pass that scores nothing returns before a GPU finishes it; only one that copies results back (or
    // any on the CPU) has taken its time.
    if (status.ok() && (!batch.empty() || !policy_->options().device.is_cuda()))
      step_costs_.Add(decode.empty() ? 0 : decode_rows, fed, seconds);
  }
  if (!status.ok()) {
    for (auto& [id, sequence] : sequences_) Release(*sequence);
    sequences_.clear();
    return status;
  }
  for (auto it = sequences_.begin(); it != sequences_.end();) {
    if (it->second->finished) {
      Release(*it->second);
      it = sequences_.erase(it);
    } else {
      ++it;
    }
  }
  return events;
}

void PadDecoder::Finish(Sequence& sequence, TokenEvent* event, FinishReason reason) {
  sequence.finished = true;
  event->finished = true;
  event->finish_reason = reason;
}

std::vector<PadDecoder::PrefillRow> PadDecoder::PrefillRows(const Sequence& s) const {
  std::vector<PrefillRow> rows;
  rows.push_back(
      {0, s.policy_slot, s.prepared.policy_ids, nullptr, caches_[0].second->length(s.policy_slot)});
  for (size_t j = 0; j < s.prm_slots.size(); ++j) {
    size_t b = 0;
    while (caches_[b].second.get() != s.prm_cache) ++b;
    rows.push_back({b, s.prm_slots[j], s.prepared.prm_rows[j].ids, s.prepared.reward_model->adapter(),
                    s.prm_cache->length(s.prm_slots[j])});
  }
  return rows;
}

absl::Status PadDecoder::RunPass(std::vector<Sequence*>& batch,
                                 const std::vector<std::vector<ForwardRow>>& chunks,
                                 std::vector<TokenEvent>* events) {
  const int64_t n = static_cast<int64_t>(batch.size());
  // A decoding row feeds its last token; a prompt what the cache lacks of it (all of it unless chunks or the
  // prefix cache went before).
  auto input = [&](Sequence* s, const std::vector<int32_t>& prompt, KvCache* cache, int slot) {
    return s->prefilled ? absl::MakeConstSpan(&s->last_token, 1)
                        : absl::MakeConstSpan(prompt).subspan(cache->length(slot));
  };
  const bool decode_only =
      std::all_of(batch.begin(), batch.end(), [](const Sequence* s) { return s->prefilled; }) &&
      std::all_of(chunks.begin(), chunks.end(), [](const auto& c) { return c.empty(); });

  // Rows per backbone: the policy's rows first (row i is batch[i]), then every PRM row that shares a
  // backbone with them, so one forward reads those weights once for both models.
  struct PrmRowRef {
    const RewardModel* prm;
    int64_t owner;  // index into batch
    double weight;
    size_t backbone;  // index into caches_
    int64_t row;      // row of that backbone's forward
  };
  std::vector<std::vector<ForwardRow>> rows(caches_.size());
  std::vector<PrmRowRef> prm_refs;
  int64_t prompt_tokens = 0;  // fed by rows of prompts
  auto add_row = [&](size_t b, const Sequence* s, ForwardRow row) {
    if (!s->prefilled) prompt_tokens += static_cast<int64_t>(row.tokens.size());
    rows[b].push_back(row);
  };
  for (int64_t i = 0; i < n; ++i) {
    add_row(0, batch[i],
            ForwardRow{batch[i]->policy_slot,
                       input(batch[i], batch[i]->prepared.policy_ids, caches_[0].second.get(),
                             batch[i]->policy_slot),
                       nullptr});
  }
  for (int64_t i = 0; i < n; ++i) {
    const PreparedRequest& p = batch[i]->prepared;
    for (size_t j = 0; j < p.prm_rows.size(); ++j) {
      size_t b = 0;
      while (caches_[b].first != &p.reward_model->backbone()) ++b;
      prm_refs.push_back({p.reward_model, i, p.prm_rows[j].weight, b, static_cast<int64_t>(rows[b].size())});
      add_row(b, batch[i],
              ForwardRow{batch[i]->prm_slots[j],
                         input(batch[i], p.prm_rows[j].ids, caches_[b].second.get(), batch[i]->prm_slots[j]),
                         p.reward_model->adapter()});
    }
  }
  // Chunks of prompts that finish later ride along: their rows come last and their hidden states go unused.
  for (size_t b = 0; b < chunks.size(); ++b) {
    for (const ForwardRow& row : chunks[b]) prompt_tokens += static_cast<int64_t>(row.tokens.size());
    rows[b].insert(rows[b].end(), chunks[b].begin(), chunks[b].end());
  }
  prefill_tokens_ += prompt_tokens;
  std::vector<at::Tensor> hidden(caches_.size());  // per backbone: [rows, hidden]
  for (size_t b = 0; b < caches_.size(); ++b) {
    if (rows[b].empty()) continue;
    if (decode_only && !graphs_.empty()) {
      PAD_ASSIGN_OR_RETURN(hidden[b], graphs_[b]->Forward(rows[b]));
    } else {
      PAD_ASSIGN_OR_RETURN(hidden[b], caches_[b].first->Forward(rows[b], caches_[b].second.get()));
    }
  }
  if (n == 0) return absl::OkStatus();  // chunks only

  // Per request and per PRM row, what the scoring needs, uploaded in one copy; the results come back in one.
  // GENARM requests score the whole vocabulary: `vocab_rows` lists them, and `vocab_slot` gives each PRM row
  // its owner's place in that list (-1: a PAD request's row, scored over the policy's top k).
  std::vector<int64_t> ks(n), vocab_rows;
  int64_t k_max = 0;
  std::vector<float> betas(n), prm_weights;
  std::vector<int64_t> owners, forward_rows, vocab_slot;  // per PRM row
  std::vector<int64_t> slot_of(n, -1);
  for (int64_t i = 0; i < n; ++i) {
    const AlignmentRequest& request = batch[i]->prepared.request;
    ks[i] = request.top_k;
    k_max = std::max(k_max, ks[i]);
    betas[i] = UsesRewardModel(request.mode) ? static_cast<float>(request.beta) : 0.0f;
    if (request.mode == DecodingMode::kGenArm) {
      slot_of[i] = static_cast<int64_t>(vocab_rows.size());
      vocab_rows.push_back(i);
    }
  }
  for (const PrmRowRef& ref : prm_refs) {
    owners.push_back(ref.owner);
    forward_rows.push_back(ref.row);
    vocab_slot.push_back(slot_of[ref.owner]);
    prm_weights.push_back(static_cast<float>(ref.weight));
  }
  // [5, n, k_max] float32 on the host: scores, candidate ids, rewards, policy logits, the policy's top id
  at::Tensor results;
  try {
    PAD_ASSIGN_OR_RETURN(at::Tensor z_b, policy_->Logits(hidden[0].narrow(0, 0, n)));  // [n, vocab] float32
    const at::Device device = z_b.device();
    auto upload = [&](auto& host, at::ScalarType type) {  // one asynchronous copy from pinned memory on a GPU
      at::Tensor t = at::from_blob(host.data(), {static_cast<int64_t>(host.size())}, type);
      return device.is_cuda() ? t.pin_memory().to(device, /*non_blocking=*/true) : t.clone();
    };
    const int64_t p = static_cast<int64_t>(prm_refs.size());
    const int64_t g = static_cast<int64_t>(vocab_rows.size());
    // [n] ks, [p] owners, [p] forward rows, [p] vocab slots, [g] vocab rows
    std::vector<int64_t> indices = ks;
    for (const auto* part : {&owners, &forward_rows, &vocab_slot, &vocab_rows})
      indices.insert(indices.end(), part->begin(), part->end());
    std::vector<float> floats = betas;  // [n] betas, [p] PRM row weights
    floats.insert(floats.end(), prm_weights.begin(), prm_weights.end());
    const at::Tensor indices_t = upload(indices, at::kLong), floats_t = upload(floats, at::kFloat);
    const at::Tensor ks_t = indices_t.narrow(0, 0, n);                  // [n]
    const at::Tensor owners_t = indices_t.narrow(0, n, p);              // [p]
    const at::Tensor forward_rows_t = indices_t.narrow(0, n + p, p);    // [p]
    const at::Tensor vocab_slot_t = indices_t.narrow(0, n + 2 * p, p);  // [p]
    const at::Tensor vocab_rows_t = indices_t.narrow(0, n + 3 * p, g);  // [g]
    const at::Tensor beta_t = floats_t.narrow(0, 0, n).unsqueeze(1);    // [n, 1]
    const at::Tensor weights_t = floats_t.narrow(0, n, p);              // [p]

    auto [top_values, top_ids] = at::topk(z_b, k_max, /*dim=*/-1);  // [n, k_max] each, best first
    // [n, k_max]: a copy, since GENARM's candidates replace top_ids in place below
    const at::Tensor policy_top = top_ids.narrow(1, 0, 1).clone().expand({n, k_max});
    const at::Tensor in_k =
        at::arange(k_max, at::TensorOptions().dtype(at::kLong).device(device)).unsqueeze(0) <
        ks_t.unsqueeze(1);  // [n, k_max]
    const float neg_inf = -std::numeric_limits<float>::infinity();
    const at::Tensor policy_lsm = at::log_softmax(top_values.masked_fill(~in_k, neg_inf), -1);  // [n, k_max]
    at::Tensor reward = at::zeros_like(top_values);                                             // [n, k_max]
    // GENARM: the policy's log-probabilities and the reward over the whole vocabulary.
    const at::Tensor z_vocab = z_b.index_select(0, vocab_rows_t);      // [g, vocab]
    const at::Tensor policy_vocab_lsm = at::log_softmax(z_vocab, -1);  // [g, vocab]
    at::Tensor vocab_reward = at::zeros_like(z_vocab);                 // [g, vocab]

    // r(a) = log_softmax_K(z_r)[a] - log_softmax_K(z_b)[a], summed over a request's PRM rows with weights; K
    // is the policy's top k (PAD) or the whole vocabulary (GENARM). Rows go in runs of one PRM and one K.
    for (int64_t start = 0; start < p;) {
      const bool whole = vocab_slot[start] >= 0;
      int64_t end = start;
      while (end < p && prm_refs[end].prm == prm_refs[start].prm && (vocab_slot[end] >= 0) == whole) ++end;
      const at::Tensor weight = weights_t.narrow(0, start, end - start).unsqueeze(1);  // [q, 1]
      const at::Tensor prm_hidden = hidden[prm_refs[start].backbone].index_select(
          0, forward_rows_t.narrow(0, start, end - start));  // [q, hidden]
      if (whole) {
        const at::Tensor slot_t = vocab_slot_t.narrow(0, start, end - start);           // [q]
        PAD_ASSIGN_OR_RETURN(at::Tensor z_r, prm_refs[start].prm->Logits(prm_hidden));  // [q, vocab]
        vocab_reward.index_add_(
            0, slot_t, (at::log_softmax(z_r, -1) - policy_vocab_lsm.index_select(0, slot_t)) * weight);
      } else {
        const at::Tensor owner_t = owners_t.narrow(0, start, end - start);  // [q]
        PAD_ASSIGN_OR_RETURN(at::Tensor z_r,
                             prm_refs[start].prm->CandidateLogits(
                                 prm_hidden, top_ids.index_select(0, owner_t)));  // [q, k_max]
        const at::Tensor owner_in_k = in_k.index_select(0, owner_t);
        const at::Tensor prm_lsm = at::log_softmax(z_r.masked_fill(~owner_in_k, neg_inf), -1);
        reward.index_add_(
            0, owner_t,
            (prm_lsm - policy_lsm.index_select(0, owner_t)).masked_fill(~owner_in_k, 0.0) * weight);
      }
      start = end;
    }
    at::Tensor scores = top_values + beta_t * reward;  // [n, k_max]
    if (g > 0) {
      // A GENARM request's candidates are the best k of the whole vocabulary by score, in PAD's places.
      const at::Tensor vocab_scores =
          z_vocab + beta_t.index_select(0, vocab_rows_t) * vocab_reward;         // [g, vocab]
      auto [best_scores, best_ids] = at::topk(vocab_scores, k_max, /*dim=*/-1);  // [g, k_max] each
      scores.index_copy_(0, vocab_rows_t, best_scores);
      top_ids.index_copy_(0, vocab_rows_t, best_ids);
      reward.index_copy_(0, vocab_rows_t, vocab_reward.gather(1, best_ids));
      top_values.index_copy_(0, vocab_rows_t, z_vocab.gather(1, best_ids));
    }
    scores.masked_fill_(~in_k, neg_inf);
    // Token ids are below 2^24, so float32 holds them exactly.
    results = at::stack({scores, top_ids.to(at::kFloat), reward, top_values, policy_top.to(at::kFloat)})
                  .to(at::kCPU)
                  .contiguous();
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("pad step: ", e.what_without_backtrace()));
  }

  const float* scores = results.data_ptr<float>();  // [n, k_max] each
  const float* candidates = scores + n * k_max;
  const float* rewards = candidates + n * k_max;
  const float* policy_logits = rewards + n * k_max;
  const float* policy_tops = policy_logits + n * k_max;
  for (int64_t i = 0; i < n; ++i) {
    Sequence& s = *batch[i];
    const AlignmentRequest& request = s.prepared.request;
    const float* score_row = scores + i * k_max;
    const bool has_penalties = request.presence_penalty != 0 || request.frequency_penalty != 0;
    std::vector<float> penalized;  // [ks[i]]: the scores less the request's penalties
    if (has_penalties) {
      penalized.assign(score_row, score_row + ks[i]);
      for (int64_t j = 0; j < ks[i]; ++j) {
        const auto seen = s.generated_counts.find(static_cast<int32_t>(candidates[i * k_max + j]));
        if (seen == s.generated_counts.end()) continue;
        penalized[j] -=
            static_cast<float>(request.presence_penalty + request.frequency_penalty * seen->second);
      }
      score_row = penalized.data();
    }
    const double uniform = std::uniform_real_distribution<double>(0.0, 1.0)(s.rng);
    const int64_t choice = SampleIndex(score_row, ks[i], static_cast<float>(request.temperature), uniform);
    TokenEvent event;
    event.sequence = s.id;
    event.token = static_cast<int32_t>(candidates[i * k_max + choice]);
    event.reward = rewards[i * k_max + choice];
    event.changed_top_choice = event.token != static_cast<int32_t>(policy_tops[i * k_max]);
    if (request.diagnostics) {
      TokenDiagnostics d;
      for (int64_t j = 0; j < ks[i]; ++j) {
        d.candidates.push_back(static_cast<int32_t>(candidates[i * k_max + j]));
        d.candidate_texts.push_back(tokenizer_->Decode({d.candidates.back()}, /*skip_special_tokens=*/false));
        d.policy_logits.push_back(policy_logits[i * k_max + j]);
        d.rewards.push_back(rewards[i * k_max + j]);
        d.scores.push_back(score_row[j]);
      }
      event.diagnostics = std::move(d);
    }
    s.prefilled = true;
    s.last_token = event.token;
    ++s.generated;
    s.generated_ids.push_back(event.token);
    if (has_penalties) ++s.generated_counts[event.token];

    const auto& eos = policy_->config().eos_token_ids;
    const bool at_eos = !request.ignore_eos && std::find(eos.begin(), eos.end(), event.token) != eos.end();
    s.held += s.text->Add(event.token);
    size_t stop_at = std::string::npos;
    for (const std::string& stop : request.stop) stop_at = std::min(stop_at, s.held.find(stop));
    if (stop_at != std::string::npos) {
      event.text = s.held.substr(0, stop_at);
      Finish(s, &event, FinishReason::kStop);
    } else if (at_eos || s.generated >= request.max_new_tokens) {
      event.text = s.held + s.text->Finish();
      Finish(s, &event, at_eos ? FinishReason::kStop : FinishReason::kLength);
    } else {
      const size_t keep = HeldBackLength(s.held, request.stop);
      event.text = s.held.substr(0, s.held.size() - keep);
      s.held.erase(0, s.held.size() - keep);
    }
    if (s.finished) s.held.clear();
    events->push_back(std::move(event));
  }
  return absl::OkStatus();
}

}  // namespace pad
