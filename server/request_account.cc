#include "server/request_account.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace pad::server {

bool BearerTokenMatches(absl::string_view authorization, absl::string_view token) {
  if (token.empty()) return true;
  const std::string expected = absl::StrCat("Bearer ", token);
  // Reads all of `authorization` whatever its content, so the time taken tells nothing but the length.
  unsigned char diff = authorization.size() != expected.size();
  for (size_t i = 0; i < authorization.size(); ++i) {
    diff |= static_cast<unsigned char>(authorization[i] ^ (i < expected.size() ? expected[i] : 0));
  }
  return diff == 0;
}

RequestAccount::RequestAccount(ServingMetrics* metrics, LogWriter* log, std::string protocol,
                               std::string mode)
    : metrics_(metrics), log_(log), protocol_(std::move(protocol)), mode_(std::move(mode)) {}

void RequestAccount::Observe(const EngineEvent& event) {
  const absl::Time now = absl::Now();
  switch (event.kind) {
    case EngineEvent::Kind::kToken: {
      const bool first = last_token_ == absl::InfinitePast();
      metrics_->RecordToken(mode_, first ? now - started_ : now - last_token_, first, event.token.reward,
                            event.token.changed_top_choice);
      if (first) first_token_ = now;
      last_token_ = now;
      return;
    }
    case EngineEvent::Kind::kFinished: {
      const FinishReason reason = event.finish_reason;
      metrics_->RecordFinished(protocol_, mode_, reason == FinishReason::kCancelled ? "cancelled" : "ok",
                               event.usage, now - started_);
      Log(reason == FinishReason::kStop     ? "stop"
          : reason == FinishReason::kLength ? "length"
                                            : "cancelled",
          event.usage, now);
      return;
    }
    case EngineEvent::Kind::kError:
      metrics_->RecordFinished(protocol_, mode_, "error", Usage{}, now - started_);
      Log("error", event.usage, now);
      return;
  }
}

void RequestAccount::Log(const char* finish, const Usage& usage, absl::Time now) const {
  log_->Write(absl::StrFormat(
      R"({"time":"%s","event":"request","protocol":"%s","mode":"%s","finish":"%s","prompt_tokens":%d,)"
      R"("generated_tokens":%d,"queue_s":%.4f,"ttft_s":%.4f,"total_s":%.4f})",
      absl::FormatTime(absl::RFC3339_full, now, absl::UTCTimeZone()), protocol_, mode_, finish,
      usage.prompt_tokens, usage.generated_tokens, absl::ToDoubleSeconds(usage.queue_time),
      first_token_ == absl::InfinitePast() ? -1.0 : absl::ToDoubleSeconds(first_token_ - started_),
      absl::ToDoubleSeconds(now - started_)));
}

}  // namespace pad::server
