// The pad_* metrics a deployment is watched by, over the registry that /metrics renders.
#ifndef PAD_SERVER_SERVING_METRICS_H_
#define PAD_SERVER_SERVING_METRICS_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "pad/engine.h"
#include "server/metrics.h"

namespace pad::server {

// Registers the families at construction (a registration error is a bug: it aborts). Any thread may
// record; `registry` must outlive this.
class ServingMetrics {
 public:
  explicit ServingMetrics(MetricsRegistry* registry);

  // A request refused before it ran (bad input, full queue, not ready, unauthenticated). `protocol` is the
  // front door: "grpc" or "http".
  void RecordRejected(absl::string_view protocol, absl::string_view mode, const absl::Status& status);
  // A token streamed: the time since the previous one (or since the call began, for the first).
  void RecordToken(absl::string_view mode, absl::Duration since_previous, bool first, float reward,
                   bool changed_top_choice);
  // The end of an admitted request: status "ok", "cancelled" or "error".
  void RecordFinished(absl::string_view protocol, absl::string_view mode, absl::string_view status,
                      const Usage& usage, absl::Duration total);
  // Gauges from the engine's latest iteration.
  void UpdateEngine(const EngineStats& stats);
  // Request log lines dropped because the log's reader fell behind (LogWriter counts into it).
  Counter* log_lines_dropped() const { return log_lines_dropped_; }

 private:
  Family<Counter>* requests_;
  Family<Histogram>* time_to_first_token_;
  Family<Histogram>* inter_token_latency_;
  Family<Histogram>* request_duration_;
  Histogram* queue_time_;
  Family<Counter>* prompt_tokens_;
  Family<Counter>* generated_tokens_;
  Histogram* chosen_reward_;
  Counter* pad_tokens_;
  Counter* changed_top_choice_;
  Gauge* running_;
  Gauge* waiting_;
  Gauge* batch_size_;
  Gauge* kv_slots_used_;
  Gauge* kv_slots_total_;
  Gauge* kv_blocks_used_;
  Gauge* kv_blocks_total_;
  Gauge* kv_blocks_cached_;
  Gauge* kv_bytes_;
  Gauge* kv_tokens_;
  Gauge* kv_usage_;
  // Counters that follow the engine's running totals.
  Counter* preemptions_;
  Counter* prefix_hit_tokens_;
  Counter* prefill_tokens_;
  Counter* graph_replays_;
  Gauge* graphs_;
  Gauge* ready_;
  Counter* log_lines_dropped_;
};

}  // namespace pad::server

#endif  // PAD_SERVER_SERVING_METRICS_H_
