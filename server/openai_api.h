// The OpenAI-compatible HTTP API: POST /v1/chat/completions (streamed as server-sent events or whole) and
// GET /v1/models, so that chat frontends and the official OpenAI SDKs talk to the engine. PAD's own
// parameters ride in a "pad" object on the request (the SDKs pass it through `extra_body`); each maps onto
// a pad.v1 field and is checked by the same libpad code. docs/api.md describes the protocol.
#ifndef PAD_SERVER_OPENAI_API_H_
#define PAD_SERVER_OPENAI_API_H_

#include <string>

#include "pad/engine.h"
#include "server/http_server.h"
#include "server/log_writer.h"
#include "server/openai_request.h"
#include "server/serving_metrics.h"

namespace pad::server {

struct OpenAiApiOptions {
  std::string model_name;    // the `model` clients name, listed by GET /v1/models
  std::string bearer_token;  // when not empty, required as "Authorization: Bearer <token>"
};

// The routes, for HttpServer. `engine`, `metrics` and `log` must outlive the HTTP server. A client that
// disconnects cancels its request within one decoding step (the worker polls the connection while it
// waits for tokens).
HttpRoutes OpenAiRoutes(Engine* engine, ServingMetrics* metrics, LogWriter* log, OpenAiApiOptions options);

}  // namespace pad::server

#endif  // PAD_SERVER_OPENAI_API_H_
