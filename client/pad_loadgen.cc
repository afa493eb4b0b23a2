// pad_loadgen: N concurrent streams against a pad_server for a fixed number of requests, by mode and
// concurrency; prints throughput, time to first token and inter-token latency percentiles as a table.
//
//   pad_loadgen --server=localhost:50051 --concurrency=1,4,16 --modes=vanilla,pad --requests=16
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <iostream>
#include <mutex>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "client/wire_mode.h"
#include "pad/v1/pad.grpc.pb.h"

ABSL_FLAG(std::string, server, "localhost:50051", "pad_server address");
ABSL_FLAG(std::string, concurrency, "1,4,16", "comma-separated numbers of concurrent streams");
ABSL_FLAG(std::string, modes, "vanilla,pad", "comma-separated: vanilla, pad, preference_prompt, genarm");
ABSL_FLAG(int, requests, 16, "requests per (mode, concurrency) cell");
ABSL_FLAG(int, max_new_tokens, 64, "tokens per request (end-of-sequence ignored)");
ABSL_FLAG(std::string, prompt, "Explain how a bicycle stays upright, step by step.", "the user message");
ABSL_FLAG(std::string, principles, "helpful and humorous", "the principle for pad and preference_prompt");

namespace {

using Clock = std::chrono::steady_clock;

struct Sample {
  std::vector<double> ttft_s, inter_token_s;
  int64_t tokens = 0;
  int failed = 0;
};

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0.0;
  std::sort(values.begin(), values.end());
  const size_t index = std::min(values.size() - 1, static_cast<size_t>(p * (values.size() - 1) + 0.5));
  return values[index];
}

pad::v1::GenerateAlignedRequest MakeRequest(const std::string& mode, int index) {
  pad::v1::GenerateAlignedRequest request;
  auto* message = request.add_messages();
  message->set_role("user");
  message->set_content(absl::StrFormat("%s (%d)", absl::GetFlag(FLAGS_prompt), index));
  request.mutable_preference()->add_principles()->set_text(absl::GetFlag(FLAGS_principles));
  auto* decoding = request.mutable_decoding();
  decoding->set_mode(pad::client::WireModeOrDie("modes", mode));
  decoding->set_max_new_tokens(absl::GetFlag(FLAGS_max_new_tokens));
  decoding->set_ignore_eos(true);
  request.set_return_token_ids(true);  // to time tokens, not text pieces
  return request;
}

// One stream: the time of its first token and between later ones.
void RunOne(pad::v1::PadService::Stub& stub, const pad::v1::GenerateAlignedRequest& request, Sample* out,
            std::mutex* mu) {
  grpc::ClientContext context;
  const auto start = Clock::now();
  auto reader = stub.GenerateAligned(&context, request);
  pad::v1::GenerateAlignedResponse response;
  std::vector<double> gaps;
  double ttft = -1;
  auto last = start;
  int64_t tokens = 0;
  while (reader->Read(&response)) {
    const auto now = Clock::now();
    if (response.tokens_size() == 0) continue;
    if (ttft < 0) {
      ttft = std::chrono::duration<double>(now - start).count();
    } else {
      // Tokens that arrive merged in one message share the gap.
      const double gap = std::chrono::duration<double>(now - last).count() / response.tokens_size();
      for (int i = 0; i < response.tokens_size(); ++i) gaps.push_back(gap);
    }
    last = now;
    tokens += response.tokens_size();
  }
  const grpc::Status status = reader->Finish();
  std::lock_guard<std::mutex> lock(*mu);
  if (!status.ok()) {
    ++out->failed;
    return;
  }
  out->ttft_s.push_back(ttft);
  out->inter_token_s.insert(out->inter_token_s.end(), gaps.begin(), gaps.end());
  out->tokens += tokens;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  auto channel = grpc::CreateChannel(absl::GetFlag(FLAGS_server), grpc::InsecureChannelCredentials());
  auto stub = pad::v1::PadService::NewStub(channel);
  const int requests = absl::GetFlag(FLAGS_requests);
  std::cout << absl::StrFormat("server %s, %d requests per cell, %d new tokens each, greedy\n\n",
                               absl::GetFlag(FLAGS_server), requests, absl::GetFlag(FLAGS_max_new_tokens));
  std::cout
      << "| mode | streams | tokens/s | TTFT p50 s | TTFT p90 s | ITL p50 ms | ITL p90 ms | ITL p99 ms | "
         "failed | gain vs 1 stream |\n|---|---|---|---|---|---|---|---|---|---|\n";
  for (absl::string_view mode_view : absl::StrSplit(absl::GetFlag(FLAGS_modes), ',')) {
    const std::string mode(mode_view);
    double single_stream_rate = 0;
    for (absl::string_view n_view : absl::StrSplit(absl::GetFlag(FLAGS_concurrency), ',')) {
      const int streams = std::stoi(std::string(n_view));
      Sample sample;
      std::mutex mu;
      std::atomic<int> next{0};
      const auto start = Clock::now();
      std::vector<std::thread> workers;
      for (int w = 0; w < streams; ++w) {
        workers.emplace_back([&] {
          for (int i = next++; i < requests; i = next++) RunOne(*stub, MakeRequest(mode, i), &sample, &mu);
        });
      }
      for (std::thread& worker : workers) worker.join();
      const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
      const double rate = sample.tokens / seconds;
      if (streams == 1) single_stream_rate = rate;
      std::cout << absl::StrFormat(
                       "| %s | %d | %.1f | %.2f | %.2f | %.0f | %.0f | %.0f | %d | %s |\n", mode, streams,
                       rate, Percentile(sample.ttft_s, 0.5), Percentile(sample.ttft_s, 0.9),
                       1e3 * Percentile(sample.inter_token_s, 0.5),
                       1e3 * Percentile(sample.inter_token_s, 0.9),
                       1e3 * Percentile(sample.inter_token_s, 0.99), sample.failed,
                       single_stream_rate > 0 ? absl::StrFormat("%.2fx", rate / single_stream_rate) : "")
                << std::flush;
    }
  }
  return 0;
}
