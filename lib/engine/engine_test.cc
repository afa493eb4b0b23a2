#include "pad/engine.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/test_stream.h"

namespace pad {
namespace {

constexpr char kModel[] = "models/SmolLM2-135M-Instruct";  // tests run from the project root

EngineOptions SmallEngine() {
  EngineOptions options;
  options.policy_dir = kModel;
  options.reward_models.push_back(RewardModelSpec{"default", kModel, "", ""});
  options.decoder.kv_slots = 4;
  options.decoder.max_seq_len = 512;
  options.max_waiting = 2;
  return options;
}

AlignmentRequest Ask(int max_new_tokens, DecodingMode mode = DecodingMode::kVanilla) {
  AlignmentRequest request;
  request.messages = {{"user", "Name three colours."}};
  request.mode = mode;
  request.principles = {"concise"};
  request.max_new_tokens = max_new_tokens;
  request.ignore_eos = true;
  return request;
}

TEST(Engine, UnavailableUntilLoadedAndReportsLoadError) {
  EngineOptions options = SmallEngine();
  options.policy_dir = "/nonexistent";
  auto engine = Engine::Start(options);
  TestStream collector;
  auto id = engine->Submit(Ask(4), collector.Sink());
  EXPECT_EQ(id.status().code(), absl::StatusCode::kUnavailable);
  const absl::Status load = engine->WaitUntilReady();
  EXPECT_EQ(load.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(load.message(), "/nonexistent/config.json: cannot open");
  EXPECT_FALSE(engine->Stats().ready);
  // After a failed load a request is told so, not that loading is still under way.
  auto late = engine->Submit(Ask(4), collector.Sink());
  EXPECT_EQ(late.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(late.status().message(), "the models failed to load: /nonexistent/config.json: cannot open");
}

TEST(Engine, StreamsTokensThenUsage) {
  auto engine = Engine::Start(SmallEngine());
  ASSERT_TRUE(engine->WaitUntilReady().ok());
  TestStream collector;
  ASSERT_TRUE(engine->Submit(Ask(6, DecodingMode::kPad), collector.Sink()).ok());
  const std::vector<EngineEvent> events = collector.Wait();
  ASSERT_EQ(events.size(), 7u);  // six tokens, then the end
  std::string text;
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(events[i].kind, EngineEvent::Kind::kToken);
    text += events[i].token.text;
  }
  EXPECT_FALSE(text.empty());
  EXPECT_EQ(events.back().kind, EngineEvent::Kind::kFinished);
  EXPECT_EQ(events.back().finish_reason, FinishReason::kLength);
  EXPECT_EQ(events.back().usage.generated_tokens, 6);
  EXPECT_GT(events.back().usage.prompt_tokens, 10);
  EXPECT_EQ(engine->Stats().kv.slots_in_use, 0);
}

TEST(Engine, InvalidRequestIsRefusedAtSubmit) {
  auto engine = Engine::Start(SmallEngine());
  ASSERT_TRUE(engine->WaitUntilReady().ok());
  AlignmentRequest request = Ask(4);
  request.top_k = 0;
  TestStream collector;
  auto id = engine->Submit(request, collector.Sink());
  EXPECT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(id.status().message(), "top_k: 0 is not in [1, 1024]");
}

TEST(Engine, CancelFreesTheSlotsWithinAStep) {
  auto engine = Engine::Start(SmallEngine());
  ASSERT_TRUE(engine->WaitUntilReady().ok());
  TestStream collector;
  auto id = engine->Submit(Ask(400, DecodingMode::kPad), collector.Sink());
  ASSERT_TRUE(id.ok());
  collector.WaitForEvents(2);
  engine->Cancel(*id);
  const std::vector<EngineEvent> events = collector.Wait();
  EXPECT_LT(events.size(), 400u);
  EXPECT_EQ(events.back().kind, EngineEvent::Kind::kFinished);
  EXPECT_EQ(events.back().finish_reason, FinishReason::kCancelled);
  for (size_t i = 0; i + 1 < events.size(); ++i) EXPECT_EQ(events[i].kind, EngineEvent::Kind::kToken);
  const EngineStats stats = engine->Stats();
  EXPECT_EQ(stats.running, 0);
  EXPECT_EQ(stats.kv.slots_in_use, 0);
  EXPECT_EQ(stats.kv.tokens_in_use, 0);
}

TEST(Engine, FullQueueIsResourceExhaustedThenRecovers) {
  EngineOptions options = SmallEngine();
  options.decoder.kv_slots = 1;  // one vanilla request runs at a time
  options.max_waiting = 1;
  auto engine = Engine::Start(options);
  ASSERT_TRUE(engine->WaitUntilReady().ok());
  TestStream a, b, c;
  std::vector<absl::StatusOr<uint64_t>> ids = {engine->Submit(Ask(60), a.Sink()),
                                               engine->Submit(Ask(60), b.Sink()),
                                               engine->Submit(Ask(60), c.Sink())};
  int refused = 0;
  for (const auto& id : ids) {
    if (!id.ok()) {
      EXPECT_EQ(id.status().code(), absl::StatusCode::kResourceExhausted);
      EXPECT_EQ(id.status().message(), "the queue is full (1 requests waiting); retry later");
      ++refused;
    }
  }
  EXPECT_GE(refused, 1);
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i].ok()) engine->Cancel(*ids[i]);
  }
  if (ids[0].ok()) a.Wait();
  if (ids[1].ok()) b.Wait();
  if (ids[2].ok()) c.Wait();
  TestStream after;
  ASSERT_TRUE(engine->Submit(Ask(3), after.Sink()).ok());
  EXPECT_EQ(after.Wait().back().finish_reason, FinishReason::kLength);
}

TEST(Engine, ShutdownFinishesInFlightAndRefusesNew) {
  auto engine = Engine::Start(SmallEngine());
  ASSERT_TRUE(engine->WaitUntilReady().ok());
  TestStream collector;
  ASSERT_TRUE(engine->Submit(Ask(12), collector.Sink()).ok());
  collector.WaitForEvents(1);
  engine->Shutdown(absl::Seconds(120));
  const std::vector<EngineEvent> events = collector.Wait();
  EXPECT_EQ(events.size(), 13u);  // twelve tokens, then the end
  EXPECT_EQ(events.back().finish_reason, FinishReason::kLength);
  TestStream late;
  EXPECT_EQ(engine->Submit(Ask(3), late.Sink()).status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace pad
