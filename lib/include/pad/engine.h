// The serving engine: one thread that owns the models and KV caches and runs continuous batching. No
// LibTorch in this header beyond c10's device and dtype types: the server builds without ATen's headers.
#ifndef PAD_ENGINE_H_
#define PAD_ENGINE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "pad/alignment_request.h"
#include "pad/batch_decoder.h"
#include "pad/model_options.h"

namespace pad {

struct EngineStats;

struct EngineOptions {
  std::string policy_dir;                      // Hugging Face model directory
  std::vector<RewardModelSpec> reward_models;  // the first is the default
  ModelOptions model;
  DecoderOptions decoder;
  int max_waiting = 64;  // requests queued beyond the running batch; more is RESOURCE_EXHAUSTED
  // Called on the engine thread after loading and after every iteration, e.g. to set gauges. Must not
  // block or call back into the engine.
  std::function<void(const EngineStats&)> on_stats;
};

// Time and token counts of one request, reported with its last event.
struct Usage {
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  absl::Duration queue_time;   // submit to admission (prefill start)
  absl::Duration decode_time;  // admission to the last token
};

// One item of a request's stream: zero or more kToken events, then exactly one kFinished or kError.
struct EngineEvent {
  enum class Kind { kToken, kFinished, kError };
  Kind kind = Kind::kToken;
  TokenEvent token;                                    // kToken: the generated token
  FinishReason finish_reason = FinishReason::kLength;  // kFinished: stop, length or cancelled
  absl::Status error;                                  // kError: why the request failed
  Usage usage;                                         // kFinished and kError

  bool last() const { return kind != Kind::kToken; }  // nothing follows
};

// What a stream's consumer sees. Called on the engine thread: it must not block (hand the event to
// another thread, as the gRPC reactor does).
using EventSink = std::function<void(EngineEvent)>;

// A snapshot for metrics and health, updated every iteration.
struct EngineStats {
  bool ready = false;
  bool draining = false;
  int64_t running = 0;
  int64_t waiting = 0;
  int64_t last_batch_size = 0;
  KvStats kv;
  int64_t cuda_graphs = 0;         // recorded
  int64_t cuda_graph_replays = 0;  // decode steps that replayed one, since start
};

// Submit, Cancel, Stats and Shutdown may be called from any thread. Models load on the engine thread
// after Start; until they are ready Submit answers UNAVAILABLE. Requests that fit the batch are admitted
// each iteration (prefill), then every running request advances one token in one batched step. A
// cancelled request leaves the batch within one step and frees its KV slots and blocks; its sink gets a last
// event with FinishReason::kCancelled. Shutdown stops admitting (UNAVAILABLE), lets running and waiting
// requests finish up to `grace`, cancels the rest and joins the thread.
class Engine {
 public:
  // Loads options.policy_dir and options.reward_models on the engine thread.
  static std::unique_ptr<Engine> Start(EngineOptions options);
  // Schedules the decoder that `make_decoder` returns, called on the engine thread in place of loading
  // models (its error is the load error). options.decoder still gives the limits; the model fields are
  // not read. The scheduler's tests run a fake decoder this way.
  using DecoderFactory = std::function<absl::StatusOr<std::unique_ptr<BatchDecoder>>()>;
  static std::unique_ptr<Engine> StartWithDecoder(EngineOptions options, DecoderFactory make_decoder);
  ~Engine();  // Shutdown(absl::ZeroDuration()) if not yet shut down

  // Blocks until the models are loaded or failed to; returns the load error.
  absl::Status WaitUntilReady();
  // Checks the request (INVALID_ARGUMENT naming the field) and queues it; RESOURCE_EXHAUSTED when the
  // waiting queue is full, UNAVAILABLE while loading or draining. On success `sink` receives the events.
  absl::StatusOr<uint64_t> Submit(const AlignmentRequest& request, EventSink sink);
  void Cancel(uint64_t id);
  void Shutdown(absl::Duration grace);
  EngineStats Stats() const;
  // What it was started with: the models and the limits requests must respect.
  const EngineOptions& options() const;

 private:
  class Impl;
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace pad

#endif  // PAD_ENGINE_H_
