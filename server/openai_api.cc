#include "server/openai_api.h"

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "nlohmann/json.hpp"
#include "pad/field_error.h"
#include "server/request_account.h"

namespace pad::server {
namespace {

using json = nlohmann::json;

// How long a worker waits for tokens before it checks that its client is still connected (it also checks
// whenever tokens came but nothing was written), so a disconnect cancels the request within about a step.
constexpr absl::Duration kPollInterval = absl::Milliseconds(20);
constexpr char kJson[] = "application/json";

// Text for JSON output; strings here are valid UTF-8, but a bad byte must not throw.
std::string Dump(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

// Completion ids, and the seeds of requests that give none, from any worker thread.
uint64_t Random64() {
  static std::mutex mu;
  static std::mt19937_64 random(std::random_device{}());
  std::lock_guard<std::mutex> lock(mu);
  return random();
}

std::string NewCompletionId() {
  return absl::StrCat("chatcmpl-", absl::Hex(Random64(), absl::kZeroPad16),
                      absl::Hex(Random64(), absl::kZeroPad16));
}

const char* FinishReasonText(FinishReason reason) {
  return reason == FinishReason::kStop ? "stop" : "length";
}

json UsageJson(const Usage& usage) {
  return {{"prompt_tokens", usage.prompt_tokens},
          {"completion_tokens", usage.generated_tokens},
          {"total_tokens", usage.prompt_tokens + usage.generated_tokens},
          {"pad",
           {{"queue_seconds", absl::ToDoubleSeconds(usage.queue_time)},
            {"decode_seconds", absl::ToDoubleSeconds(usage.decode_time)}}}};
}

// A token as pad.diagnostics reports it: what PAD chose and, with diagnostics, among what.
json TokenJson(const TokenEvent& token) {
  json out = {{"id", token.token},
              {"text", token.text},
              {"reward", token.reward},
              {"changed_top_choice", token.changed_top_choice}};
  if (token.diagnostics) {
    out["candidates"] = token.diagnostics->candidates;
    out["candidate_texts"] = token.diagnostics->candidate_texts;
    out["policy_logits"] = token.diagnostics->policy_logits;
    out["rewards"] = token.diagnostics->rewards;
    out["scores"] = token.diagnostics->scores;
  }
  return out;
}

// One request's engine events, handed from the engine thread to the HTTP worker that writes them.
class EventQueue {
 public:
  explicit EventQueue(RequestAccount account) : account_(std::move(account)) {}

  void Push(EngineEvent event) {
    absl::MutexLock lock(&mu_);
    account_.Observe(event);
    ended_ = ended_ || event.last();
    events_.push_back(std::move(event));
  }

  // The events that arrived, waiting up to `timeout` for one.
  std::deque<EngineEvent> Take(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(
                             +[](std::deque<EngineEvent>* events) { return !events->empty(); }, &events_),
                         timeout);
    return std::exchange(events_, {});
  }

  bool ended() const {
    absl::MutexLock lock(&mu_);
    return ended_;
  }

 private:
  mutable absl::Mutex mu_;
  RequestAccount account_ ABSL_GUARDED_BY(mu_);
  std::deque<EngineEvent> events_ ABSL_GUARDED_BY(mu_);
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
};

// Turns a request's events into what its client reads: server-sent chunks, or one JSON completion.
class CompletionWriter {
 public:
  CompletionWriter(const ChatCompletionRequest& request, std::string model)
      : id_(NewCompletionId()),
        model_(std::move(model)),
        created_(absl::ToUnixSeconds(absl::Now())),
        stream_(request.stream),
        include_usage_(request.include_usage),
        diagnostics_(request.request.diagnostics) {}

  // Appends the bytes `event` adds to `out`. Returns false when the response cannot be completed (a
  // whole answer that failed after its 200 went out: the connection is dropped so the client sees a
  // failure, not a truncated success).
  bool Render(const EngineEvent& event, std::string* out) {
    if (stream_ && !sent_role_) {
      sent_role_ = true;
      AppendChunk({{"role", "assistant"}, {"content", ""}}, nullptr, json(), out);
    }
    switch (event.kind) {
      case EngineEvent::Kind::kToken:
        if (!stream_) {
          text_ += event.token.text;
          if (diagnostics_) tokens_.push_back(TokenJson(event.token));
        } else if (!event.token.text.empty() || diagnostics_) {
          AppendChunk({{"content", event.token.text}}, nullptr,
                      diagnostics_ ? json{{"tokens", json::array({TokenJson(event.token)})}} : json(), out);
        }
        return true;
      case EngineEvent::Kind::kFinished:
        if (event.finish_reason == FinishReason::kCancelled) {
          return Fail(absl::UnavailableError("the server is shutting down; the request was cancelled"), out);
        }
        if (!stream_) {
          json message = {{"role", "assistant"}, {"content", text_}};
          json completion = {
              {"id", id_},
              {"object", "chat.completion"},
              {"created", created_},
              {"model", model_},
              {"system_fingerprint", nullptr},
              {"choices", json::array({{{"index", 0},
                                        {"message", message},
                                        {"logprobs", nullptr},
                                        {"finish_reason", FinishReasonText(event.finish_reason)}}})},
              {"usage", UsageJson(event.usage)}};
          if (diagnostics_) completion["pad"] = {{"tokens", tokens_}};
          absl::StrAppend(out, Dump(completion));
          return true;
        }
        AppendChunk(json::object(), FinishReasonText(event.finish_reason), json(), out);
        if (include_usage_) {
          json usage = Chunk(json::array());
          usage["usage"] = UsageJson(event.usage);
          absl::StrAppend(out, "data: ", Dump(usage), "\n\n");
        }
        absl::StrAppend(out, "data: [DONE]\n\n");
        return true;
      case EngineEvent::Kind::kError:
        return Fail(event.error, out);
    }
    return false;
  }

 private:
  json Chunk(json choices) const {
    json chunk = {{"id", id_},       {"object", "chat.completion.chunk"}, {"created", created_},
                  {"model", model_}, {"system_fingerprint", nullptr},     {"choices", std::move(choices)}};
    if (include_usage_) chunk["usage"] = nullptr;  // as OpenAI: null on every chunk but the last
    return chunk;
  }

  void AppendChunk(json delta, const char* finish_reason, json pad, std::string* out) const {
    json choice = {{"index", 0},
                   {"delta", std::move(delta)},
                   {"logprobs", nullptr},
                   {"finish_reason", finish_reason ? json(finish_reason) : json(nullptr)}};
    json chunk = Chunk(json::array({std::move(choice)}));
    if (!pad.is_null()) chunk["pad"] = std::move(pad);
    absl::StrAppend(out, "data: ", Dump(chunk), "\n\n");
  }

  // A stream reports the error in an event, as OpenAI's do, and ends; a whole answer cannot.
  bool Fail(const absl::Status& status, std::string* out) const {
    if (!stream_) return false;
    absl::StrAppend(out, "data: ", ToOpenAiError(status).body, "\n\n", "data: [DONE]\n\n");
    return true;
  }

  const std::string id_;
  const std::string model_;
  const int64_t created_;
  const bool stream_;
  const bool include_usage_;
  const bool diagnostics_;
  bool sent_role_ = false;
  std::string text_;             // a whole answer's text so far
  json tokens_ = json::array();  // a whole answer's diagnostics so far
};

void SendError(const absl::Status& status, httplib::Response& response) {
  OpenAiError error = ToOpenAiError(status);
  response.status = error.http_status;
  if (error.retry_after_seconds > 0)
    response.set_header("Retry-After", std::to_string(error.retry_after_seconds));
  response.set_content(error.body, kJson);
}

class OpenAiHandlers {
 public:
  OpenAiHandlers(Engine* engine, ServingMetrics* metrics, LogWriter* log, OpenAiApiOptions options)
      : engine_(engine), metrics_(metrics), log_(log), options_(std::move(options)) {}

  void ChatCompletions(const httplib::Request& http_request, httplib::Response& response) const {
    const auto reject = [&](const absl::Status& status, absl::string_view mode) {
      metrics_->RecordRejected("http", mode, status);
      SendError(status, response);
    };
    if (!Authorized(http_request)) return reject(Unauthenticated(), "unknown");
    absl::StatusOr<ChatCompletionRequest> parsed =
        ParseChatCompletionRequest(http_request.body, options_.model_name);
    if (!parsed.ok()) return reject(parsed.status(), "unknown");
    if (!parsed->seeded) parsed->request.seed = Random64();
    const std::string mode = DecodingModeName(parsed->request.mode);

    auto queue = std::make_shared<EventQueue>(RequestAccount(metrics_, log_, "http", mode));
    absl::StatusOr<uint64_t> id =
        engine_->Submit(parsed->request, [queue](EngineEvent event) { queue->Push(std::move(event)); });
    if (!id.ok()) {
      return reject(ToOpenAiStatus(id.status(), *parsed), mode);
    }

    auto writer = std::make_shared<CompletionWriter>(*parsed, options_.model_name);
    if (parsed->stream) {
      response.set_header("Cache-Control", "no-cache");
      response.set_header("X-Accel-Buffering", "no");  // proxies must not hold the tokens back
    }
    Engine* engine = engine_;
    const uint64_t request_id = *id;
    response.set_chunked_content_provider(
        parsed->stream ? "text/event-stream" : kJson,
        [queue, writer, engine, request_id](size_t /*offset*/, httplib::DataSink& sink) {
          const std::deque<EngineEvent> events = queue->Take(kPollInterval);
          std::string out;
          bool ended = false;
          for (const EngineEvent& event : events) {
            if (!writer->Render(event, &out)) return false;
            ended = ended || event.last();
          }
          // A client that left is found by the write that fails or, with nothing to write (no token within
          // the poll, or a whole answer still being built), by asking its socket: tokens may come faster
          // than the poll, so asking only when none came would let a whole answer run to its end.
          if (out.empty() ? !ended && !sink.is_writable() : !sink.write(out.data(), out.size())) {
            engine->Cancel(request_id);  // the client is gone
            return false;
          }
          if (ended) sink.done();
          return true;
        },
        // However the response ends (done, client gone, server stopping), the engine lets go of it.
        [queue, engine, request_id](bool /*success*/) {
          if (!queue->ended()) engine->Cancel(request_id);
        });
  }

  // GET /v1/models: the served model, its PRMs by name and the limits requests must respect. No file paths:
  // any client may ask, and the server's layout is nobody's business but the operator's.
  void Models(const httplib::Request& http_request, httplib::Response& response) const {
    if (!Authorized(http_request)) return SendError(Unauthenticated(), response);
    response.set_content(Dump({{"object", "list"}, {"data", json::array({ModelObject()})}}), kJson);
  }

  // GET /v1/models/{id}: the SDKs' models.retrieve.
  void Model(const httplib::Request& http_request, httplib::Response& response) const {
    if (!Authorized(http_request)) return SendError(Unauthenticated(), response);
    const std::string id = http_request.matches.size() > 1 ? std::string(http_request.matches[1]) : "";
    if (id != options_.model_name) {
      return SendError(
          FieldError("model",
                     absl::StrCat(QuotedForError(id), " is not served here; GET /v1/models lists \"",
                                  options_.model_name, "\""),
                     absl::StatusCode::kNotFound),
          response);
    }
    response.set_content(Dump(ModelObject()), kJson);
  }

 private:
  json ModelObject() const {
    const EngineOptions& options = engine_->options();
    json reward_models = json::array();
    for (const RewardModelSpec& spec : options.reward_models) {
      reward_models.push_back({{"name", spec.name},
                               {"has_adapter", !spec.adapter_dir.empty()},
                               {"shares_policy_backbone", spec.backbone_dir == options.policy_dir}});
    }
    const DecoderOptions& limits = options.decoder;
    return {{"id", options_.model_name},
            {"object", "model"},
            {"created", started_},
            {"owned_by", "pad-serving"},
            {"pad",
             {{"reward_models", reward_models},
              {"limits",
               {{"max_prompt_tokens", limits.max_prompt_tokens},
                {"max_new_tokens", limits.max_new_tokens_limit},
                {"max_top_k", limits.max_top_k},
                {"max_principles", limits.max_principles},
                {"max_stop_strings", limits.max_stop_strings},
                {"max_sequence_tokens", limits.max_seq_len}}}}}};
  }

  static absl::Status Unauthenticated() {
    return absl::UnauthenticatedError("a valid bearer token is required (Authorization: Bearer ...)");
  }

  bool Authorized(const httplib::Request& request) const {
    return BearerTokenMatches(request.get_header_value("Authorization"), options_.bearer_token);
  }

  Engine* const engine_;
  ServingMetrics* const metrics_;
  LogWriter* const log_;
  const OpenAiApiOptions options_;
  const int64_t started_ = absl::ToUnixSeconds(absl::Now());
};

}  // namespace

HttpRoutes OpenAiRoutes(Engine* engine, ServingMetrics* metrics, LogWriter* log, OpenAiApiOptions options) {
  auto handlers = std::make_shared<OpenAiHandlers>(engine, metrics, log, std::move(options));
  return [handlers](httplib::Server& server) {
    server.Post("/v1/chat/completions",
                [handlers](const httplib::Request& request, httplib::Response& response) {
                  handlers->ChatCompletions(request, response);
                });
    server.Get("/v1/models", [handlers](const httplib::Request& request, httplib::Response& response) {
      handlers->Models(request, response);
    });
    server.Get(R"(/v1/models/(.+))",
               [handlers](const httplib::Request& request, httplib::Response& response) {
                 handlers->Model(request, response);
               });
    // Anything else under /v1 answers in OpenAI's error format, which its clients can read.
    const httplib::Server::Handler not_found = [](const httplib::Request& request,
                                                  httplib::Response& response) {
      response.status = 404;
      response.set_content(
          OpenAiErrorBody(absl::StrCat(request.method, " ", request.path, " is not served here"),
                          "invalid_request_error", "", "not_found"),
          kJson);
    };
    server.Get(R"(/v1/.*)", not_found);
    server.Post(R"(/v1/.*)", not_found);
  };
}

}  // namespace pad::server
