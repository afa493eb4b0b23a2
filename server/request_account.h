// What both front doors (gRPC, HTTP) record about a request: metrics, its log line, and who may call.
#ifndef PAD_SERVER_REQUEST_ACCOUNT_H_
#define PAD_SERVER_REQUEST_ACCOUNT_H_

#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "pad/alignment_request.h"
#include "pad/engine.h"
#include "server/log_writer.h"
#include "server/serving_metrics.h"

namespace pad::server {

// Whether an Authorization header's value is "Bearer <token>", compared in constant time. An empty
// `token` means no token is required.
bool BearerTokenMatches(absl::string_view authorization, absl::string_view token);

// Metrics and the log line of one admitted request, from its engine events. Every event reaches it, also
// after the client has gone, so each request's finish is recorded exactly once, whichever of the client
// and the engine ended it first. Not thread-safe: the caller serializes Observe.
class RequestAccount {
 public:
  // `protocol` is the front door ("grpc", "http"); `metrics` and `log` must outlive it.
  RequestAccount(ServingMetrics* metrics, LogWriter* log, std::string protocol, std::string mode);

  void Observe(const EngineEvent& event);

 private:
  // One JSON line per request, for the log pipeline.
  void Log(const char* finish, const Usage& usage, absl::Time now) const;

  ServingMetrics* metrics_;
  LogWriter* log_;
  std::string protocol_;
  std::string mode_;
  const absl::Time started_ = absl::Now();
  absl::Time last_token_ = absl::InfinitePast();
  absl::Time first_token_ = absl::InfinitePast();
};

}  // namespace pad::server

#endif  // PAD_SERVER_REQUEST_ACCOUNT_H_
