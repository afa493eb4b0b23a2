// For the engine's tests: one stream's events, as an EventSink collects them on the engine thread.
#ifndef PAD_ENGINE_TEST_STREAM_H_
#define PAD_ENGINE_TEST_STREAM_H_

#include <gtest/gtest.h>

#include <vector>

#include "absl/synchronization/mutex.h"
#include "pad/engine.h"

namespace pad {

class TestStream {
 public:
  EventSink Sink() {
    return [this](EngineEvent event) {
      absl::MutexLock lock(&mu_);
      events_.push_back(std::move(event));
    };
  }
  // Waits until `n` events have arrived.
  void WaitForEvents(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return events_.size() >= n; };
    mu_.Await(absl::Condition(&enough));
  }
  // Waits for the end and returns every event, checking the stream's shape: tokens, then exactly one
  // finished or error event.
  std::vector<EngineEvent> Wait() {
    absl::MutexLock lock(&mu_);
    auto ended = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return EndedLocked(); };
    mu_.Await(absl::Condition(&ended));
    for (size_t i = 0; i + 1 < events_.size(); ++i) EXPECT_EQ(events_[i].kind, EngineEvent::Kind::kToken);
    return events_;
  }
  EngineEvent End() { return Wait().back(); }
  size_t tokens() const {
    absl::MutexLock lock(&mu_);
    size_t n = 0;
    for (const EngineEvent& e : events_) n += e.kind == EngineEvent::Kind::kToken;
    return n;
  }
  bool ended() const {
    absl::MutexLock lock(&mu_);
    return EndedLocked();
  }

 private:
  bool EndedLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !events_.empty() && events_.back().last();
  }

  mutable absl::Mutex mu_;
  std::vector<EngineEvent> events_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pad

#endif  // PAD_ENGINE_TEST_STREAM_H_
