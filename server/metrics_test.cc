#include "server/metrics.h"

#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace pad::server {
namespace {

TEST(MetricsRegistry, RendersExactText) {
  MetricsRegistry registry;
  absl::StatusOr<Family<Counter>*> requests = registry.AddCounter(
      "pad_requests_total", "Requests by mode and final status.\nA \\ and a \"quote\" stay.",
      {"mode", "status"});
  ASSERT_TRUE(requests.ok()) << requests.status();
  (*requests)->WithLabels({"pad", "ok"}).Increment(3);
  (*requests)->WithLabels({"greedy", "say \"hi\"\\now\nbye"}).Increment();
  (*requests)->WithLabels({"pad", "cancelled"});  // created, never incremented: renders 0
  absl::StatusOr<Family<Gauge>*> running =
      registry.AddGauge("pad_requests_running", "Requests in the batch.");
  ASSERT_TRUE(running.ok()) << running.status();
  (*running)->Get().Set(5);
  (*running)->Get().Add(-1.5);
  absl::StatusOr<Family<Gauge>*> unused = registry.AddGauge("pad_unused", "Labelled, no children.", {"a"});
  ASSERT_TRUE(unused.ok()) << unused.status();
  absl::StatusOr<Family<Histogram>*> duration =
      registry.AddHistogram("pad_request_duration_seconds", "Submit to last token.", {0.1, 1, 10}, {"mode"});
  ASSERT_TRUE(duration.ok()) << duration.status();
  Histogram& pad = (*duration)->WithLabels({"pad"});
  for (double seconds : {0.05, 0.1, 0.5, 20.0}) pad.Observe(seconds);
  absl::StatusOr<Family<Histogram>*> empty = registry.AddHistogram("pad_empty", "Only +Inf.", {});
  ASSERT_TRUE(empty.ok()) << empty.status();

  EXPECT_EQ(registry.Render(),
            "# HELP pad_requests_total Requests by mode and final status.\\nA \\\\ and a \"quote\" stay.\n"
            "# TYPE pad_requests_total counter\n"
            "pad_requests_total{mode=\"greedy\",status=\"say \\\"hi\\\"\\\\now\\nbye\"} 1\n"
            "pad_requests_total{mode=\"pad\",status=\"cancelled\"} 0\n"
            "pad_requests_total{mode=\"pad\",status=\"ok\"} 3\n"
            "# HELP pad_requests_running Requests in the batch.\n"
            "# TYPE pad_requests_running gauge\n"
            "pad_requests_running 3.5\n"
            "# HELP pad_request_duration_seconds Submit to last token.\n"
            "# TYPE pad_request_duration_seconds histogram\n"
            "pad_request_duration_seconds_bucket{mode=\"pad\",le=\"0.1\"} 2\n"
            "pad_request_duration_seconds_bucket{mode=\"pad\",le=\"1\"} 3\n"
            "pad_request_duration_seconds_bucket{mode=\"pad\",le=\"10\"} 3\n"
            "pad_request_duration_seconds_bucket{mode=\"pad\",le=\"+Inf\"} 4\n"
            "pad_request_duration_seconds_sum{mode=\"pad\"} 20.65\n"
            "pad_request_duration_seconds_count{mode=\"pad\"} 4\n"
            "# HELP pad_empty Only +Inf.\n"
            "# TYPE pad_empty histogram\n"
            "pad_empty_bucket{le=\"+Inf\"} 0\n"
            "pad_empty_sum 0\n"
            "pad_empty_count 0\n");
}

TEST(MetricsRegistry, FormatsValuesAsPrometheusParsesThem) {
  MetricsRegistry registry;
  absl::StatusOr<Family<Gauge>*> gauge = registry.AddGauge("pad_value", "Values.", {"case"});
  ASSERT_TRUE(gauge.ok()) << gauge.status();
  const std::vector<std::pair<const char*, double>> cases = {
      {"a_zero", 0.0},
      {"b_integer", -42},
      {"c_two_pow_53", 9007199254740992.0},
      {"d_beyond_exact", 9007199254740994.0},
      {"e_large", 1e20},
      {"f_tenth", 0.1},
      {"g_third", 1.0 / 3},
      {"h_small", 1.5e-7},
      {"i_nan", NAN},
      {"j_inf", INFINITY},
      {"k_minus_inf", -INFINITY},
  };
  for (const auto& [name, value] : cases) (*gauge)->WithLabels({name}).Set(value);
  EXPECT_EQ(registry.Render(),
            "# HELP pad_value Values.\n"
            "# TYPE pad_value gauge\n"
            "pad_value{case=\"a_zero\"} 0\n"
            "pad_value{case=\"b_integer\"} -42\n"
            "pad_value{case=\"c_two_pow_53\"} 9007199254740992\n"
            "pad_value{case=\"d_beyond_exact\"} 9007199254740994\n"
            "pad_value{case=\"e_large\"} 1e+20\n"
            "pad_value{case=\"f_tenth\"} 0.1\n"
            "pad_value{case=\"g_third\"} 0.3333333333333333\n"
            "pad_value{case=\"h_small\"} 1.5e-07\n"
            "pad_value{case=\"i_nan\"} NaN\n"
            "pad_value{case=\"j_inf\"} +Inf\n"
            "pad_value{case=\"k_minus_inf\"} -Inf\n");
}

TEST(Counter, IgnoresNegativeAndNanIncrements) {
  MetricsRegistry registry;
  absl::StatusOr<Family<Counter>*> family = registry.AddCounter("pad_things_total", "Things.");
  ASSERT_TRUE(family.ok()) << family.status();
  Counter& counter = (*family)->Get();
  counter.Increment(2.5);
  counter.Increment(-1);
  counter.Increment(NAN);
  counter.Increment();
  EXPECT_EQ(counter.Value(), 3.5);
}

TEST(Family, WithLabelsReturnsTheSameChild) {
  MetricsRegistry registry;
  absl::StatusOr<Family<Gauge>*> family = registry.AddGauge("pad_g", "G.", {"a", "b"});
  ASSERT_TRUE(family.ok()) << family.status();
  const std::string a = "x";
  EXPECT_EQ(&(*family)->WithLabels({a, "y"}), &(*family)->WithLabels({"x", "y"}));
  EXPECT_NE(&(*family)->WithLabels({"x", "y"}), &(*family)->WithLabels({"y", "x"}));
}

TEST(FamilyDeathTest, WrongNumberOfLabelValuesAborts) {
  MetricsRegistry registry;
  absl::StatusOr<Family<Counter>*> family = registry.AddCounter("pad_x_total", "X.", {"a", "b"});
  ASSERT_TRUE(family.ok()) << family.status();
  EXPECT_DEATH((*family)->WithLabels({"only"}),
               "metric \"pad_x_total\": 1 label values given for 2 label names");
  EXPECT_DEATH((*family)->Get(), "metric \"pad_x_total\": 0 label values given for 2 label names");
}

TEST(MetricsRegistry, RejectsWhatPrometheusWouldNot) {
  MetricsRegistry registry;
  ASSERT_TRUE(registry.AddHistogram("pad_latency_seconds", "Latency.", {1}).ok());
  EXPECT_EQ(
      registry.AddGauge("pad-latency", "L.").status(),
      absl::InvalidArgumentError("gauge \"pad-latency\": the name must match [a-zA-Z_:][a-zA-Z0-9_:]*"));
  EXPECT_EQ(registry.AddGauge("9lives", "L.").status(),
            absl::InvalidArgumentError("gauge \"9lives\": the name must match [a-zA-Z_:][a-zA-Z0-9_:]*"));
  EXPECT_EQ(registry.AddCounter("pad_requests", "R.").status(),
            absl::InvalidArgumentError("counter \"pad_requests\": a counter's name must end in _total"));
  EXPECT_EQ(
      registry.AddGauge("pad_requests_total", "R.").status(),
      absl::InvalidArgumentError("gauge \"pad_requests_total\": only a counter's name may end in _total"));
  EXPECT_EQ(
      registry.AddGauge("pad_requests_count", "R.").status(),
      absl::InvalidArgumentError(
          "gauge \"pad_requests_count\": the suffixes _count, _sum and _bucket are reserved for histograms"));
  EXPECT_EQ(registry.AddGauge("pad_g", "").status(),
            absl::InvalidArgumentError("gauge \"pad_g\": the help must not be empty"));
  EXPECT_EQ(
      registry.AddGauge("pad_g", "G.", {"a:b"}).status(),
      absl::InvalidArgumentError("gauge \"pad_g\": label name \"a:b\" must match [a-zA-Z_][a-zA-Z0-9_]*"));
  EXPECT_EQ(registry.AddGauge("pad_g", "G.", {"__name__"}).status(),
            absl::InvalidArgumentError("gauge \"pad_g\": label name \"__name__\" is reserved"));
  EXPECT_EQ(registry.AddHistogram("pad_h", "H.", {1}, {"le"}).status(),
            absl::InvalidArgumentError("histogram \"pad_h\": label name \"le\" is reserved"));
  EXPECT_EQ(registry.AddGauge("pad_g", "G.", {"a", "b", "a"}).status(),
            absl::InvalidArgumentError("gauge \"pad_g\": label name \"a\" is repeated"));
  EXPECT_EQ(
      registry.AddHistogram("pad_h", "H.", {1, 1}).status(),
      absl::InvalidArgumentError("histogram \"pad_h\": upper bound 1 (index 1) must be finite and greater "
                                 "than the one before; +Inf is implicit"));
  EXPECT_EQ(registry.AddHistogram("pad_h", "H.", {1, INFINITY}).status(),
            absl::InvalidArgumentError("histogram \"pad_h\": upper bound +Inf (index 1) must be finite and "
                                       "greater than the one before; +Inf is implicit"));
  EXPECT_EQ(registry.AddHistogram("pad_latency_seconds", "Again.", {1}).status(),
            absl::AlreadyExistsError(
                "histogram \"pad_latency_seconds\": \"pad_latency_seconds\" is already registered"));
  // A failed registration reserves nothing.
  EXPECT_TRUE(registry.AddGauge("pad_g", "G.").ok());
}

TEST(MetricsRegistry, HistogramSamplesCollideWithOtherFamilies) {
  MetricsRegistry registry;
  ASSERT_TRUE(registry.AddGauge("pad_x", "X.").ok());
  EXPECT_EQ(registry.AddHistogram("pad_x", "H.", {1}).status(),
            absl::AlreadyExistsError("histogram \"pad_x\": \"pad_x\" is already registered"));
  ASSERT_TRUE(registry.AddHistogram("pad_v_count", "V.", {1}).ok());
  EXPECT_EQ(registry.AddHistogram("pad_v", "H.", {1}).status(),
            absl::AlreadyExistsError("histogram \"pad_v\": \"pad_v_count\" is already registered"));
  ASSERT_TRUE(registry.AddHistogram("pad_w", "W.", {1}).ok());
  // A histogram named pad_w_sum would emit pad_w_sum_sum, not pad_w_sum; its own family name is what collides
  // with pad_w's _sum sample.
  EXPECT_EQ(registry.AddHistogram("pad_w_sum", "S.", {1}).status(),
            absl::AlreadyExistsError("histogram \"pad_w_sum\": \"pad_w_sum\" is already registered"));
}

TEST(MetricsRegistry, ConcurrentUpdatesSumCorrectly) {
  MetricsRegistry registry;
  absl::StatusOr<Family<Counter>*> counter = registry.AddCounter("pad_c_total", "C.", {"worker"});
  absl::StatusOr<Family<Gauge>*> gauge = registry.AddGauge("pad_g", "G.");
  absl::StatusOr<Family<Histogram>*> histogram = registry.AddHistogram("pad_h", "H.", {0.5});
  ASSERT_TRUE(counter.ok() && gauge.ok() && histogram.ok());
  constexpr int kThreads = 8;
  constexpr int kIterations = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Counter& shared = (*counter)->WithLabels({"shared"});
      for (int i = 0; i < kIterations; ++i) {
        shared.Increment();
        // Children created and found concurrently, and a scrape in the middle of it all.
        (*counter)->WithLabels({t % 2 == 0 ? "even" : "odd"}).Increment(0.5);
        (*gauge)->Get().Add(i % 2 == 0 ? 1 : -1);
        (*histogram)->Get().Observe(i % 4 == 0 ? 1.0 : 0.25);
        if (i % 5000 == 0) registry.Render();
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ((*counter)->WithLabels({"shared"}).Value(), kThreads * kIterations);
  EXPECT_EQ((*counter)->WithLabels({"even"}).Value(), kThreads / 2 * kIterations * 0.5);
  EXPECT_EQ((*counter)->WithLabels({"odd"}).Value(), kThreads / 2 * kIterations * 0.5);
  EXPECT_EQ((*gauge)->Get().Value(), 0);
  const std::string text = registry.Render();
  // 160000 observations, a quarter of them 1.0: 120000 <= 0.5, sum 40000 * 1 + 120000 * 0.25.
  EXPECT_NE(text.find("pad_h_bucket{le=\"0.5\"} 120000\npad_h_bucket{le=\"+Inf\"} 160000\n"
                      "pad_h_sum 70000\npad_h_count 160000\n"),
            std::string::npos)
      << text;
}

// Runs `promtool check metrics` on `text`; returns its exit status and what it printed.
std::pair<int, std::string> PromtoolCheck(const std::string& text) {
  const std::string path = ::testing::TempDir() + "/metrics_test_exposition.txt";
  std::ofstream(path) << text;
  FILE* pipe = popen(("/usr/bin/promtool check metrics < '" + path + "' 2>&1").c_str(), "r");
  if (pipe == nullptr) return {-1, "popen failed"};
  std::string output;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) output.append(buffer, n);
  const int status = pclose(pipe);
  std::remove(path.c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

bool HavePromtool() { return std::ifstream("/usr/bin/promtool").good(); }

// Prometheus's own parser and linter, on a registry shaped like the server's.
TEST(MetricsRegistry, PromtoolFindsNothingToReport) {
  if (!HavePromtool()) GTEST_SKIP() << "/usr/bin/promtool not installed (Debian package prometheus)";
  MetricsRegistry registry;
  Family<Counter>* requests = *registry.AddCounter(
      "pad_requests_total", "Requests by decoding mode and final status.", {"mode", "status"});
  requests->WithLabels({"pad", "ok"}).Increment(12);
  requests->WithLabels({"greedy", "INVALID_ARGUMENT"}).Increment();
  requests->WithLabels({"pad", "weird \"status\"\\\nvalue"}).Increment();
  Family<Counter>* tokens = *registry.AddCounter("pad_generated_tokens_total", "Tokens generated.", {"mode"});
  tokens->WithLabels({"pad"}).Increment(1234);
  (*registry.AddCounter("pad_pad_tokens_total", "Tokens chosen in PAD mode.\nSecond \\ line."))
      ->Get()
      .Increment(7);
  Family<Histogram>* ttft =
      *registry.AddHistogram("pad_time_to_first_token_seconds", "Submit to first token.",
                             {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}, {"mode"});
  for (double seconds : {0.003, 0.07, 0.2, 3.0, 60.0}) ttft->WithLabels({"pad"}).Observe(seconds);
  ttft->WithLabels({"greedy"});
  Histogram& reward =
      (*registry.AddHistogram("pad_chosen_token_reward", "Reward of chosen tokens.", {-1, 0, 1}))->Get();
  reward.Observe(-0.5);
  reward.Observe(NAN);
  (*registry.AddGauge("pad_requests_running", "Requests in the decoding batch."))->Get().Set(3);
  (*registry.AddGauge("pad_kv_cache_tokens", "Tokens held in the KV caches."))->Get().Set(1e20);
  Family<Gauge>* odd = *registry.AddGauge("pad_odd_values", "Values Prometheus must parse.", {"kind"});
  odd->WithLabels({"nan"}).Set(NAN);
  odd->WithLabels({"inf"}).Set(INFINITY);
  odd->WithLabels({"minus_inf"}).Set(-INFINITY);
  odd->WithLabels({"third"}).Set(1.0 / 3);
  odd->WithLabels({"tiny"}).Set(-1.5e-300);
  (*registry.AddGauge("pad_ready", "1 when the models are loaded."))->Get().Set(1);
  const std::string text = registry.Render();

  const auto [status, output] = PromtoolCheck(text);
  EXPECT_EQ(status, 0) << output << "\n" << text;
  EXPECT_EQ(output, "") << text;
}

// Without this, the test above would pass with a promtool that accepts anything.
TEST(MetricsRegistry, PromtoolReportsWhatWeRefuseToEmit) {
  if (!HavePromtool()) GTEST_SKIP() << "/usr/bin/promtool not installed (Debian package prometheus)";
  const auto [status, output] = PromtoolCheck(
      "# HELP pad_requests Requests.\n# TYPE pad_requests counter\n"
      "pad_requests 1\n");
  EXPECT_NE(status, 0);
  EXPECT_NE(output.find("counter metrics should have \"_total\" suffix"), std::string::npos) << output;
}

}  // namespace
}  // namespace pad::server
