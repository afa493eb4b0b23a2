#include "server/serving_metrics.h"

#include <cstdlib>
#include <iostream>

#include "absl/strings/ascii.h"
#include "pad/or_die.h"

namespace pad::server {
namespace {

// Latency buckets from 1 ms to 2 min: CPU decoding of a small model and GPU decoding of 8B both fit.
const std::vector<double> kSeconds = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                      0.5,   1,      2.5,   5,    10,    30,   60,  120};

}  // namespace

ServingMetrics::ServingMetrics(MetricsRegistry* r) {
  const std::vector<std::string> mode = {"mode"};
  requests_ =
      OrDie(r->AddCounter("pad_requests_total", "Requests by front door, decoding mode and final status.",
                          {"protocol", "mode", "status"}));
  time_to_first_token_ = OrDie(r->AddHistogram("pad_time_to_first_token_seconds",
                                               "From the call's start to its first token.", kSeconds, mode));
  inter_token_latency_ = OrDie(r->AddHistogram("pad_inter_token_latency_seconds",
                                               "Between consecutive tokens of one stream.", kSeconds, mode));
  request_duration_ = OrDie(r->AddHistogram("pad_request_duration_seconds",
                                            "From the call's start to its last token.", kSeconds, mode));
  queue_time_ =
      &OrDie(r->AddHistogram("pad_queue_time_seconds", "Waiting for a place in the batch.", kSeconds))->Get();
  prompt_tokens_ =
      OrDie(r->AddCounter("pad_prompt_tokens_total", "Prompt tokens of admitted requests.", mode));
  generated_tokens_ = OrDie(r->AddCounter("pad_generated_tokens_total", "Tokens generated.", mode));
  chosen_reward_ = &OrDie(r->AddHistogram("pad_chosen_token_reward",
                                          "Token-level personalized reward of each token PAD chose.",
                                          {-8, -4, -2, -1, -0.5, -0.1, 0, 0.1, 0.5, 1, 2, 4, 8}))
                        ->Get();
  pad_tokens_ = &OrDie(r->AddCounter("pad_pad_tokens_total", "Tokens chosen in PAD mode."))->Get();
  changed_top_choice_ = &OrDie(r->AddCounter("pad_top_choice_changed_total",
                                             "PAD tokens that differ from the policy's most likely token."))
                             ->Get();
  running_ = &OrDie(r->AddGauge("pad_requests_running", "Requests in the decoding batch."))->Get();
  waiting_ = &OrDie(r->AddGauge("pad_requests_waiting", "Requests queued for the batch."))->Get();
  batch_size_ = &OrDie(r->AddGauge("pad_batch_size", "Requests in the latest decoding step."))->Get();
  kv_slots_used_ =
      &OrDie(r->AddGauge("pad_kv_cache_slots_used", "Sequences resident in the KV caches."))->Get();
  kv_slots_total_ =
      &OrDie(r->AddGauge("pad_kv_cache_slots", "Most sequences resident in all KV caches (--kv_slots)."))
           ->Get();
  kv_blocks_used_ =
      &OrDie(r->AddGauge("pad_kv_cache_blocks_used", "KV cache blocks held by running sequences."))->Get();
  kv_blocks_total_ = &OrDie(r->AddGauge("pad_kv_cache_blocks", "KV cache blocks in all caches."))->Get();
  kv_blocks_cached_ =
      &OrDie(r->AddGauge("pad_kv_cache_blocks_cached",
                         "KV cache blocks holding a cached prefix, held by a sequence or not."))
           ->Get();
  kv_tokens_ = &OrDie(r->AddGauge("pad_kv_cache_tokens", "Tokens held in the KV caches."))->Get();
  // What a load-aware router reads as KV-cache utilization (the Gateway API Inference Extension's
  // KVCacheUtilization, vLLM's kv_cache_usage_perc): one gauge, since a router scrapes pods, not PromQL.
  kv_usage_ = &OrDie(r->AddGauge("pad_kv_cache_usage_ratio",
                                 "Fraction of the KV cache blocks held by running sequences, from 0 to 1."))
                   ->Get();
  preemptions_ =
      &OrDie(r->AddCounter("pad_preemptions_total",
                           "Sequences whose KV blocks were taken back when the pool ran out, to be "
                           "recomputed."))
           ->Get();
  prefix_hit_tokens_ = &OrDie(r->AddCounter("pad_prefix_cache_hit_tokens_total",
                                            "Prompt tokens read from the prefix cache instead of computed."))
                            ->Get();
  graphs_ =
      &OrDie(r->AddGauge("pad_cuda_graphs", "CUDA graphs recorded for decode steps (--cuda_graphs)."))->Get();
  graph_replays_ =
      &OrDie(r->AddCounter("pad_cuda_graph_replays_total", "Decode steps that replayed a CUDA graph."))
           ->Get();
  prefill_tokens_ =
      &OrDie(r->AddCounter("pad_prefill_tokens_total", "Prompt tokens computed (prefill and recomputation)."))
           ->Get();
  kv_bytes_ = &OrDie(r->AddGauge("pad_kv_cache_bytes", "Device memory allocated to the KV caches."))->Get();
  ready_ = &OrDie(r->AddGauge("pad_ready", "1 when the models are loaded and requests are admitted."))->Get();
  log_lines_dropped_ = &OrDie(r->AddCounter("pad_log_lines_dropped_total",
                                            "Request log lines dropped because stderr's reader fell behind."))
                            ->Get();
}

void ServingMetrics::RecordRejected(absl::string_view protocol, absl::string_view mode,
                                    const absl::Status& status) {
  requests_->WithLabels({protocol, mode, absl::AsciiStrToLower(absl::StatusCodeToString(status.code()))})
      .Increment();
}

void ServingMetrics::RecordToken(absl::string_view mode, absl::Duration since_previous, bool first,
                                 float reward, bool changed_top_choice) {
  const double seconds = absl::ToDoubleSeconds(since_previous);
  (first ? time_to_first_token_ : inter_token_latency_)->WithLabels({mode}).Observe(seconds);
  generated_tokens_->WithLabels({mode}).Increment();
  if (mode == "pad") {
    pad_tokens_->Increment();
    chosen_reward_->Observe(reward);
    if (changed_top_choice) changed_top_choice_->Increment();
  }
}

void ServingMetrics::RecordFinished(absl::string_view protocol, absl::string_view mode,
                                    absl::string_view status, const Usage& usage, absl::Duration total) {
  requests_->WithLabels({protocol, mode, status}).Increment();
  request_duration_->WithLabels({mode}).Observe(absl::ToDoubleSeconds(total));
  queue_time_->Observe(absl::ToDoubleSeconds(usage.queue_time));
  prompt_tokens_->WithLabels({mode}).Increment(static_cast<double>(usage.prompt_tokens));
}

void ServingMetrics::UpdateEngine(const EngineStats& stats) {
  running_->Set(static_cast<double>(stats.running));
  waiting_->Set(static_cast<double>(stats.waiting));
  batch_size_->Set(static_cast<double>(stats.last_batch_size));
  const KvStats& kv = stats.kv;
  kv_slots_used_->Set(static_cast<double>(kv.slots_in_use));
  kv_slots_total_->Set(static_cast<double>(kv.slots_total));
  kv_blocks_used_->Set(static_cast<double>(kv.blocks_used));
  kv_blocks_total_->Set(static_cast<double>(kv.blocks_total));
  kv_blocks_cached_->Set(static_cast<double>(kv.blocks_cached));
  kv_tokens_->Set(static_cast<double>(kv.tokens_in_use));
  kv_usage_->Set(
      kv.blocks_total > 0 ? static_cast<double>(kv.blocks_used) / static_cast<double>(kv.blocks_total) : 0.0);
  kv_bytes_->Set(static_cast<double>(kv.bytes));
  preemptions_->Increment(static_cast<double>(kv.preemptions) - preemptions_->Value());
  prefix_hit_tokens_->Increment(static_cast<double>(kv.prefix_hit_tokens) - prefix_hit_tokens_->Value());
  prefill_tokens_->Increment(static_cast<double>(kv.prefill_tokens) - prefill_tokens_->Value());
  graphs_->Set(static_cast<double>(stats.cuda_graphs));
  graph_replays_->Increment(static_cast<double>(stats.cuda_graph_replays) - graph_replays_->Value());
  ready_->Set(stats.ready ? 1.0 : 0.0);
}

}  // namespace pad::server
