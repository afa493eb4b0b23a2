#include "pad/engine.h"

#include <ATen/ATen.h>

#include <deque>
#include <map>
#include <set>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "pad/model_set.h"
#include "pad/status_macros.h"

namespace pad {

class Engine::Impl {
 public:
  Impl(EngineOptions options, DecoderFactory make_decoder)
      : options_(std::move(options)), make_decoder_(std::move(make_decoder)) {}

  void StartThread() {
    thread_ = std::thread([this] { Run(); });
  }

  absl::Status WaitUntilReady() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&load_done_));
    return load_status_;
  }

  absl::StatusOr<uint64_t> Submit(const AlignmentRequest& request, EventSink sink) {
    const BatchDecoder* decoder = nullptr;
    {
      absl::MutexLock lock(&mu_);
      if (!load_done_) return absl::UnavailableError("the models are not loaded yet");
      if (!load_status_.ok()) {
        return absl::UnavailableError(absl::StrCat("the models failed to load: ", load_status_.message()));
      }
      if (draining_) return absl::UnavailableError("the server is shutting down");
      decoder = decoder_.get();
    }
    // Tokenizing is the caller's work, outside the lock and off the engine thread.
    PAD_ASSIGN_OR_RETURN(PreparedRequest prepared, decoder->Prepare(request));
    absl::MutexLock lock(&mu_);
    if (draining_) return absl::UnavailableError("the server is shutting down");
    if (static_cast<int>(waiting_.size()) >= options_.max_waiting) {
      return absl::ResourceExhaustedError(
          absl::StrCat("the queue is full (", options_.max_waiting, " requests waiting); retry later"));
    }
    const uint64_t id = next_id_++;
    waiting_.push_back(Waiting{id, std::move(prepared), std::move(sink), absl::Now()});
    return id;
  }

  void Cancel(uint64_t id) {
    absl::MutexLock lock(&mu_);
    cancelled_.insert(id);
  }

  void Shutdown(absl::Duration grace) {
    {
      absl::MutexLock lock(&mu_);
      if (!draining_) {
        draining_ = true;
        drain_deadline_ = absl::Now() + grace;
      }
    }
    if (thread_.joinable()) thread_.join();
  }

  EngineStats Stats() const {
    absl::MutexLock lock(&mu_);
    return StatsLocked();
  }

  EngineStats StatsLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    EngineStats stats = stats_;
    stats.ready = load_done_ && load_status_.ok() && !draining_;
    stats.draining = draining_;
    stats.waiting = static_cast<int64_t>(waiting_.size());
    return stats;
  }

  const EngineOptions& options() const { return options_; }

 private:
  struct Waiting {
    uint64_t id;
    PreparedRequest prepared;
    EventSink sink;
    absl::Time submitted;
  };
  struct Running {
    uint64_t id;
    EventSink sink;
    absl::Time submitted, admitted;
    int64_t prompt_tokens = 0, generated = 0;
  };

  absl::Status Load() {
    c10::InferenceMode inference;
    std::unique_ptr<BatchDecoder> decoder;
    if (make_decoder_) {
      PAD_ASSIGN_OR_RETURN(decoder, make_decoder_());
    } else {
      PAD_ASSIGN_OR_RETURN(models_,
                           ModelSet::Load(options_.policy_dir, options_.reward_models, options_.model));
      PAD_ASSIGN_OR_RETURN(decoder, models_->MakeDecoder(options_.decoder));
    }
    absl::MutexLock lock(&mu_);
    decoder_ = std::move(decoder);
    stats_.kv = decoder_->kv_stats();
    stats_.cuda_graphs = decoder_->graphs_recorded();
    return absl::OkStatus();
  }

  bool HasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return draining_ || !waiting_.empty() || !cancelled_.empty() || !running_.empty();
  }

  // Events of one iteration go out after the stats are updated, so that a stream that has seen its last
  // event also sees its slots freed in Stats.
  using Deliveries = std::vector<std::pair<EventSink, EngineEvent>>;

  static void End(EventSink sink, FinishReason reason, const Usage& usage, Deliveries* out) {
    EngineEvent event;
    event.kind = EngineEvent::Kind::kFinished;
    event.finish_reason = reason;
    event.usage = usage;
    out->emplace_back(std::move(sink), std::move(event));
  }

  static void Fail(EventSink sink, absl::Status error, const Usage& usage, Deliveries* out) {
    EngineEvent event;
    event.kind = EngineEvent::Kind::kError;
    event.error = std::move(error);
    event.usage = usage;
    out->emplace_back(std::move(sink), std::move(event));
  }

  Usage UsageOf(const Running& r) const {
    return Usage{r.prompt_tokens, r.generated, r.admitted - r.submitted, absl::Now() - r.admitted};
  }

  void Run() {
    // Inference mode is per thread: this is the thread that runs the models.
    c10::InferenceMode inference;
    absl::Status status = Load();
    EngineStats stats;
    {
      absl::MutexLock lock(&mu_);
      load_status_ = status;
      load_done_ = true;
      stats = StatsLocked();
    }
    if (options_.on_stats) options_.on_stats(stats);
    if (!status.ok()) return;

    while (true) {
      std::vector<Waiting> dropped;
      std::set<uint64_t> cancelled;
      bool deadline_passed = false;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(this, &Impl::HasWork));
        cancelled.swap(cancelled_);
        deadline_passed = draining_ && absl::Now() >= drain_deadline_;
        for (auto it = waiting_.begin(); it != waiting_.end();) {
          if (cancelled.count(it->id) || deadline_passed) {
            dropped.push_back(std::move(*it));
            it = waiting_.erase(it);
          } else {
            ++it;
          }
        }
      }
      const absl::Time now = absl::Now();
      Deliveries out;
      for (Waiting& w : dropped) {
        End(std::move(w.sink), FinishReason::kCancelled, Usage{0, 0, now - w.submitted, {}}, &out);
      }
      for (auto it = running_.begin(); it != running_.end();) {
        if (cancelled.count(it->second.id) || deadline_passed) {
          decoder_->Remove(it->first);
          End(std::move(it->second.sink), FinishReason::kCancelled, UsageOf(it->second), &out);
          it = running_.erase(it);
        } else {
          ++it;
        }
      }
      {
        // First come, first served: the head of the queue waits for room rather than being overtaken. Each
        // admitted request takes its slots at once, so the next CanAdd sees them gone (and the slots of the
        // cancelled ones, freed above, are already free).
        absl::MutexLock lock(&mu_);
        while (!waiting_.empty() && decoder_->CanAdd(waiting_.front().prepared)) {
          Waiting w = std::move(waiting_.front());
          waiting_.pop_front();
          const int64_t prompt_tokens = static_cast<int64_t>(w.prepared.policy_ids.size());
          absl::StatusOr<uint64_t> sequence = decoder_->Add(std::move(w.prepared));
          if (!sequence.ok()) {  // CanAdd said yes on this thread; only a bug gets here
            Fail(std::move(w.sink), sequence.status(), Usage{0, 0, now - w.submitted, {}}, &out);
            continue;
          }
          running_[*sequence] = Running{w.id, std::move(w.sink), w.submitted, now, prompt_tokens, 0};
        }
      }

      int64_t batch = static_cast<int64_t>(decoder_->active());
      if (batch > 0) {
        absl::StatusOr<std::vector<TokenEvent>> events = decoder_->Step();
        if (!events.ok()) {
          // The decoder dropped every sequence; each stream learns why.
          for (auto& [sequence, r] : running_) Fail(std::move(r.sink), events.status(), UsageOf(r), &out);
          running_.clear();
        } else {
          for (TokenEvent& token : *events) {
            auto it = running_.find(token.sequence);
            if (it == running_.end()) continue;
            Running& r = it->second;
            ++r.generated;
            const bool finished = token.finished;
            const FinishReason reason = token.finish_reason;
            EngineEvent event;
            event.token = std::move(token);
            out.emplace_back(r.sink, std::move(event));
            if (finished) {
              End(std::move(r.sink), reason, UsageOf(r), &out);
              running_.erase(it);
            }
          }
        }
      }
      bool done = false;
      {
        absl::MutexLock lock(&mu_);
        stats_.running = static_cast<int64_t>(running_.size());
        stats_.last_batch_size = running_.empty() ? 0 : batch;  // an idle server reports 0
        stats_.kv = decoder_->kv_stats();
        stats_.cuda_graph_replays = decoder_->graph_replays();
        stats_.cuda_graphs = decoder_->graphs_recorded();
        stats = StatsLocked();
        done = draining_ && running_.empty() && waiting_.empty();
      }
      if (options_.on_stats) options_.on_stats(stats);
      for (auto& [sink, event] : out) sink(std::move(event));
      if (done) break;
    }
  }

  const EngineOptions options_;
  const DecoderFactory make_decoder_;  // null: load options_' models
  std::thread thread_;
  // Loaded on the engine thread before decoder_ is set; declared first so that it outlives the decoder,
  // which borrows the models.
  std::unique_ptr<ModelSet> models_;

  mutable absl::Mutex mu_;
  bool load_done_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status load_status_ ABSL_GUARDED_BY(mu_);
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time drain_deadline_ ABSL_GUARDED_BY(mu_);
  std::deque<Waiting> waiting_ ABSL_GUARDED_BY(mu_);
  std::set<uint64_t> cancelled_ ABSL_GUARDED_BY(mu_);
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  EngineStats stats_ ABSL_GUARDED_BY(mu_);
  // Set once under mu_ when loading ends; afterwards Prepare is called from any thread, the rest of the
  // decoder only on the engine thread.
  std::unique_ptr<BatchDecoder> decoder_;

  // Engine thread only.
  std::map<uint64_t, Running> running_;  // by decoder sequence id
};

std::unique_ptr<Engine> Engine::Start(EngineOptions options) {
  return StartWithDecoder(std::move(options), nullptr);
}

std::unique_ptr<Engine> Engine::StartWithDecoder(EngineOptions options, DecoderFactory make_decoder) {
  auto impl = std::make_unique<Impl>(std::move(options), std::move(make_decoder));
  impl->StartThread();
  return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() { impl_->Shutdown(absl::ZeroDuration()); }

absl::Status Engine::WaitUntilReady() { return impl_->WaitUntilReady(); }
absl::StatusOr<uint64_t> Engine::Submit(const AlignmentRequest& request, EventSink sink) {
  return impl_->Submit(request, std::move(sink));
}
void Engine::Cancel(uint64_t id) { impl_->Cancel(id); }
void Engine::Shutdown(absl::Duration grace) { impl_->Shutdown(grace); }
EngineStats Engine::Stats() const { return impl_->Stats(); }
const EngineOptions& Engine::options() const { return impl_->options(); }

}  // namespace pad
