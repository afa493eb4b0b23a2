// The engine's scheduling (admission, the waiting queue, cancel, errors, drain, stats) against a fake
// decoder whose steps the test releases one by one: no model, so each case runs in milliseconds and can
// hold the engine at any point. engine_test.cc runs the same engine on the real model.
#include <gtest/gtest.h>

#include <list>
#include <map>
#include <memory>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "engine/test_stream.h"
#include "pad/engine.h"

namespace pad {
namespace {

// A request takes 1 + principles slots (as PAD's WEIGHTED rows do); each Step gives every sequence one
// token ("t"), finishing it at max_new_tokens. Steps wait until the test allows them.
class FakeDecoder final : public BatchDecoder {
 public:
  explicit FakeDecoder(int64_t slots) : slots_(slots) {}

  // Lets `n` more steps run.
  void AllowSteps(int n) {
    absl::MutexLock lock(&mu_);
    allowed_ += n;
  }
  // Every step runs at once from now on.
  void AllowAll() {
    absl::MutexLock lock(&mu_);
    unlimited_ = true;
  }
  // The next step fails with `error`.
  void FailNextStep(absl::Status error) {
    absl::MutexLock lock(&mu_);
    fail_next_ = std::move(error);
  }
  int steps_taken() const {
    absl::MutexLock lock(&mu_);
    return taken_;
  }

  absl::StatusOr<PreparedRequest> Prepare(const AlignmentRequest& request) const override {
    if (request.max_new_tokens < 1) return absl::InvalidArgumentError("max_new_tokens: must be at least 1");
    PreparedRequest prepared;
    prepared.request = request;
    prepared.policy_ids.assign(request.prompt.size(), 1);
    prepared.prm_rows.resize(request.principles.size());
    return prepared;
  }
  bool CanAdd(const PreparedRequest& prepared) const override {
    return slots_in_use() + Slots(prepared) <= slots_;
  }
  absl::StatusOr<uint64_t> Add(PreparedRequest prepared) override {
    if (!CanAdd(prepared)) return absl::ResourceExhaustedError("no free slots");
    const uint64_t id = next_id_++;
    sequences_[id] = Sequence{Slots(prepared), prepared.request.max_new_tokens, 0};
    return id;
  }
  absl::StatusOr<std::vector<TokenEvent>> Step() override {
    {
      absl::MutexLock lock(&mu_);
      auto may_run = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return unlimited_ || allowed_ > 0; };
      mu_.Await(absl::Condition(&may_run));
      if (!unlimited_) --allowed_;
      ++taken_;
      if (!fail_next_.ok()) {
        sequences_.clear();
        return std::exchange(fail_next_, absl::OkStatus());
      }
    }
    std::vector<TokenEvent> events;
    for (auto it = sequences_.begin(); it != sequences_.end();) {
      TokenEvent event;
      event.sequence = it->first;
      event.text = "t";
      event.finished = ++it->second.generated >= it->second.max_new_tokens;
      events.push_back(event);
      it = event.finished ? sequences_.erase(it) : std::next(it);
    }
    return events;
  }
  void Remove(uint64_t sequence) override { sequences_.erase(sequence); }

  size_t active() const override { return sequences_.size(); }
  int64_t slots_in_use() const {
    int64_t used = 0;
    for (const auto& [id, s] : sequences_) used += s.slots;
    return used;
  }
  KvStats kv_stats() const override {
    KvStats stats;
    stats.slots_in_use = slots_in_use();
    stats.slots_total = slots_;
    return stats;
  }

 private:
  struct Sequence {
    int64_t slots;
    int max_new_tokens;
    int generated;
  };
  static int64_t Slots(const PreparedRequest& p) { return 1 + static_cast<int64_t>(p.prm_rows.size()); }

  const int64_t slots_;
  std::map<uint64_t, Sequence> sequences_;  // engine thread only
  uint64_t next_id_ = 1;
  mutable absl::Mutex mu_;
  int allowed_ ABSL_GUARDED_BY(mu_) = 0;
  bool unlimited_ ABSL_GUARDED_BY(mu_) = false;
  int taken_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status fail_next_ ABSL_GUARDED_BY(mu_);
};

class SchedulerTest : public ::testing::Test {
 protected:
  void Start(int64_t slots, int max_waiting) {
    EngineOptions options;
    options.max_waiting = max_waiting;
    // std::function must be copyable: the lambda shares the one decoder it hands over.
    auto fake = std::make_shared<std::unique_ptr<FakeDecoder>>(std::make_unique<FakeDecoder>(slots));
    fake_ = fake->get();
    engine_ = Engine::StartWithDecoder(options, [fake]() -> absl::StatusOr<std::unique_ptr<BatchDecoder>> {
      return std::unique_ptr<BatchDecoder>(std::move(*fake));
    });
    ASSERT_TRUE(engine_->WaitUntilReady().ok());
  }

  static AlignmentRequest Ask(int max_new_tokens, int principles = 0) {
    AlignmentRequest request;
    request.prompt = "hello";
    request.max_new_tokens = max_new_tokens;
    request.principles.assign(principles, "p");
    return request;
  }

  // Polls the engine's stats until `done` holds. `waiting` is live; the rest is updated after each step.
  template <typename F>
  EngineStats WaitForStats(F done) {
    for (int i = 0; i < 2000; ++i) {
      const EngineStats stats = engine_->Stats();
      if (done(stats)) return stats;
      absl::SleepFor(absl::Milliseconds(1));
    }
    ADD_FAILURE() << "stats never reached the expected state";
    return engine_->Stats();
  }

  void TearDown() override {
    if (fake_ != nullptr) fake_->AllowAll();
    engine_.reset();
  }

  // Outlives the engine, which may still deliver events (a cancel at shutdown) after a test's last check.
  TestStream& NewStream() { return streams_.emplace_back(); }

  std::list<TestStream> streams_;
  FakeDecoder* fake_ = nullptr;  // owned by the engine
  std::unique_ptr<Engine> engine_;
};

TEST_F(SchedulerTest, TokensThenOneFinishedEventWithUsage) {
  Start(4, 4);
  fake_->AllowAll();
  TestStream& stream = NewStream();
  ASSERT_TRUE(engine_->Submit(Ask(3), stream.Sink()).ok());
  const EngineEvent end = stream.End();
  EXPECT_EQ(end.kind, EngineEvent::Kind::kFinished);
  EXPECT_EQ(end.finish_reason, FinishReason::kLength);
  EXPECT_EQ(end.usage.generated_tokens, 3);
  EXPECT_EQ(end.usage.prompt_tokens, 5);
  EXPECT_EQ(stream.tokens(), 3u);
}

TEST_F(SchedulerTest, TheHeadOfTheQueueIsNotOvertaken) {
  Start(3, 4);
  TestStream& running = NewStream();
  TestStream& big = NewStream();
  TestStream& small = NewStream();
  ASSERT_TRUE(engine_->Submit(Ask(2), running.Sink()).ok());  // 1 slot
  ASSERT_TRUE(engine_->Submit(Ask(1, 2), big.Sink()).ok());   // 3 slots: waits for `running`
  ASSERT_TRUE(engine_->Submit(Ask(1), small.Sink()).ok());    // 1 slot would fit, but is behind
  fake_->AllowSteps(1);
  EXPECT_EQ(WaitForStats([](const EngineStats& s) { return s.running == 1; }).waiting, 2);
  fake_->AllowAll();
  EXPECT_EQ(running.End().finish_reason, FinishReason::kLength);
  EXPECT_EQ(big.End().finish_reason, FinishReason::kLength);
  EXPECT_EQ(small.End().finish_reason, FinishReason::kLength);
}

TEST_F(SchedulerTest, AFullQueueIsResourceExhausted) {
  Start(1, 2);
  TestStream& a = NewStream();
  TestStream& b = NewStream();
  TestStream& c = NewStream();
  TestStream& d = NewStream();
  ASSERT_TRUE(engine_->Submit(Ask(5), a.Sink()).ok());
  WaitForStats([](const EngineStats& s) { return s.waiting == 0; });  // admitted; its first step waits
  ASSERT_TRUE(engine_->Submit(Ask(5), b.Sink()).ok());
  ASSERT_TRUE(engine_->Submit(Ask(5), c.Sink()).ok());
  const absl::StatusOr<uint64_t> refused = engine_->Submit(Ask(5), d.Sink());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(refused.status().message(), "the queue is full (2 requests waiting); retry later");
  EXPECT_EQ(engine_->Stats().waiting, 2);
  EXPECT_FALSE(d.ended());  // a refused request gets no events
}

TEST_F(SchedulerTest, AnInvalidRequestIsRefusedAtSubmitAndNeverQueued) {
  Start(1, 2);
  TestStream& stream = NewStream();
  EXPECT_EQ(engine_->Submit(Ask(0), stream.Sink()).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine_->Stats().waiting, 0);
}

TEST_F(SchedulerTest, CancelFreesSlotsWithinOneStep) {
  Start(2, 4);
  TestStream& running = NewStream();
  TestStream& waiting = NewStream();
  const uint64_t first = *engine_->Submit(Ask(100), running.Sink());
  fake_->AllowSteps(2);
  WaitForStats([](const EngineStats& s) { return s.running == 1 && s.kv.slots_in_use == 1; });
  const uint64_t second = *engine_->Submit(Ask(100, 2), waiting.Sink());  // 3 slots: never fits 2
  WaitForStats([](const EngineStats& s) { return s.waiting == 1; });
  engine_->Cancel(second);  // a waiting request leaves the queue
  engine_->Cancel(first);   // a running one leaves the batch
  fake_->AllowSteps(1);
  EXPECT_EQ(waiting.End().finish_reason, FinishReason::kCancelled);
  EXPECT_EQ(waiting.tokens(), 0u);
  EXPECT_EQ(running.End().finish_reason, FinishReason::kCancelled);
  const EngineStats stats = WaitForStats([](const EngineStats& s) { return s.kv.slots_in_use == 0; });
  EXPECT_EQ(stats.running, 0);
  EXPECT_EQ(stats.waiting, 0);
  EXPECT_EQ(stats.last_batch_size, 0);  // an idle engine reports no batch
}

TEST_F(SchedulerTest, AFailedStepEndsEveryRunningStreamAndTheEngineServesOn) {
  Start(4, 4);
  TestStream& a = NewStream();
  TestStream& b = NewStream();
  ASSERT_TRUE(engine_->Submit(Ask(10), a.Sink()).ok());
  WaitForStats([](const EngineStats& s) { return s.waiting == 0; });  // `a` is in its first step
  ASSERT_TRUE(engine_->Submit(Ask(10), b.Sink()).ok());
  fake_->AllowSteps(1);
  WaitForStats([](const EngineStats& s) { return s.waiting == 0; });  // `b` joined; both in the next step
  fake_->FailNextStep(absl::InternalError("device lost"));
  fake_->AllowSteps(1);
  for (TestStream* s : {&a, &b}) {
    const EngineEvent end = s->End();
    EXPECT_EQ(end.kind, EngineEvent::Kind::kError);
    EXPECT_EQ(end.error.message(), "device lost");
  }
  fake_->AllowAll();
  TestStream& after = NewStream();
  ASSERT_TRUE(engine_->Submit(Ask(2), after.Sink()).ok());
  EXPECT_EQ(after.End().kind, EngineEvent::Kind::kFinished);
}

TEST_F(SchedulerTest, DrainFinishesWithinGraceAndRefusesNew) {
  Start(1, 4);
  TestStream& running = NewStream();
  TestStream& queued = NewStream();
  ASSERT_TRUE(engine_->Submit(Ask(3), running.Sink()).ok());
  ASSERT_TRUE(engine_->Submit(Ask(3), queued.Sink()).ok());
  fake_->AllowAll();
  engine_->Shutdown(absl::Seconds(60));  // returns once both finished
  EXPECT_EQ(running.End().finish_reason, FinishReason::kLength);
  EXPECT_EQ(queued.End().finish_reason, FinishReason::kLength);
  TestStream& late = NewStream();
  EXPECT_EQ(engine_->Submit(Ask(1), late.Sink()).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(engine_->Stats().draining);
}

TEST_F(SchedulerTest, DrainPastGraceCancelsWhatIsLeft) {
  Start(1, 4);
  TestStream& running = NewStream();
  TestStream& queued = NewStream();
  ASSERT_TRUE(engine_->Submit(Ask(1000), running.Sink()).ok());
  ASSERT_TRUE(engine_->Submit(Ask(3), queued.Sink()).ok());
  // Shutdown waits for the engine thread, which is inside a step until the steps are let go.
  std::thread release([this] {
    absl::SleepFor(absl::Milliseconds(20));
    fake_->AllowAll();
  });
  engine_->Shutdown(absl::ZeroDuration());
  release.join();
  EXPECT_EQ(running.End().finish_reason, FinishReason::kCancelled);
  EXPECT_EQ(queued.End().finish_reason, FinishReason::kCancelled);
  EXPECT_LE(fake_->steps_taken(), 2);
}

TEST_F(SchedulerTest, AFailedLoadIsReportedAndRefusesRequests) {
  EngineOptions options;
  engine_ = Engine::StartWithDecoder(options, []() -> absl::StatusOr<std::unique_ptr<BatchDecoder>> {
    return absl::NotFoundError("weights: cannot open");
  });
  EXPECT_EQ(engine_->WaitUntilReady().message(), "weights: cannot open");
  TestStream& stream = NewStream();
  const absl::Status refused = engine_->Submit(Ask(1), stream.Sink()).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(refused.message(), "the models failed to load: weights: cannot open");
  EXPECT_FALSE(engine_->Stats().ready);
}

}  // namespace
}  // namespace pad
