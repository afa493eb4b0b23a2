#include "server/http_endpoint.h"

#include <civetweb.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"

namespace pad::server {
namespace {

constexpr char kMetricsContentType[] = "text/plain; version=0.0.4; charset=utf-8";
constexpr char kTextContentType[] = "text/plain; charset=utf-8";

int Respond(mg_connection* conn, int status, const char* content_type, absl::string_view body,
            bool with_body) {
  const std::string length = absl::StrCat(body.size());
  mg_response_header_start(conn, status);
  mg_response_header_add(conn, "Content-Type", content_type, -1);
  mg_response_header_add(conn, "Content-Length", length.c_str(), -1);
  mg_response_header_add(conn, "Cache-Control", "no-store", -1);
  if (status == 405) mg_response_header_add(conn, "Allow", "GET, HEAD", -1);
  mg_response_header_send(conn);
  if (with_body && !body.empty()) mg_write(conn, body.data(), body.size());
  return status;
}

}  // namespace

HttpEndpoint::HttpEndpoint(const MetricsRegistry* registry, std::function<bool()> ready)
    : registry_(registry), ready_(std::move(ready)) {}

HttpEndpoint::~HttpEndpoint() {
  if (context_ != nullptr) mg_stop(context_);
}

absl::StatusOr<std::unique_ptr<HttpEndpoint>> HttpEndpoint::Start(const HttpEndpointOptions& options,
                                                                  const MetricsRegistry* registry,
                                                                  std::function<bool()> ready) {
  if (options.listen_address.empty()) return absl::InvalidArgumentError("listen_address: must not be empty");
  if (options.num_threads < 1) {
    return absl::InvalidArgumentError(absl::StrCat("num_threads: ", options.num_threads, " is not >= 1"));
  }
  if (registry == nullptr) return absl::InvalidArgumentError("registry: must not be null");
  if (!ready) return absl::InvalidArgumentError("ready: must not be empty");

  // civetweb wants this once before anything else, and does not make it thread-safe; a local static does.
  static const unsigned kInitialized = mg_init_library(0);
  (void)kInitialized;

  std::unique_ptr<HttpEndpoint> endpoint(new HttpEndpoint(registry, std::move(ready)));
  const std::string num_threads = absl::StrCat(options.num_threads);
  const char* config[] = {"listening_ports",
                          options.listen_address.c_str(),
                          "num_threads",
                          num_threads.c_str(),
                          "request_timeout_ms",
                          "10000",  // a stuck client must not hold a worker forever
                          nullptr};
  mg_callbacks callbacks;
  std::memset(&callbacks, 0, sizeof(callbacks));
  callbacks.log_message = &HttpEndpoint::LogMessage;
  mg_init_data init;
  std::memset(&init, 0, sizeof(init));
  init.callbacks = &callbacks;
  init.user_data = endpoint.get();
  init.configuration_options = config;
  char error_text[256] = "";
  unsigned error_code = 0;
  mg_error_data error;
  std::memset(&error, 0, sizeof(error));
  error.code = &error_code;
  error.text = error_text;
  error.text_buffer_size = sizeof(error_text);
  endpoint->context_ = mg_start2(&init, &error);
  if (endpoint->context_ == nullptr) {
    absl::MutexLock lock(&endpoint->mu_);
    // civetweb's summary ("Failed to setup server ports") is also its last log line; the lines before it
    // say why (the errno).
    std::vector<std::string>& log = endpoint->start_log_;
    if (error_text[0] != '\0' && std::find(log.begin(), log.end(), error_text) == log.end()) {
      log.emplace_back(error_text);
    }
    return absl::UnavailableError(
        absl::StrCat("cannot serve HTTP on ", options.listen_address, ": ", absl::StrJoin(log, "; ")));
  }
  {
    absl::MutexLock lock(&endpoint->mu_);
    endpoint->started_ = true;
  }
  mg_server_port ports[4];
  std::memset(ports, 0, sizeof(ports));
  if (mg_get_server_ports(endpoint->context_, 4, ports) < 1) {
    return absl::UnavailableError(absl::StrCat("cannot serve HTTP on ", options.listen_address,
                                               ": civetweb reports no listening port"));
  }
  endpoint->port_ = ports[0].port;
  for (const char* uri : {"/metrics", "/healthz", "/readyz"}) {
    mg_set_request_handler(endpoint->context_, uri, &HttpEndpoint::HandleRequest, endpoint.get());
  }
  return endpoint;
}

int HttpEndpoint::LogMessage(const mg_connection* conn, const char* message) {
  auto* endpoint = static_cast<HttpEndpoint*>(mg_get_user_data(mg_get_context(conn)));
  if (endpoint == nullptr) return 0;
  absl::MutexLock lock(&endpoint->mu_);
  if (!endpoint->started_) endpoint->start_log_.emplace_back(message);
  // Once running, what civetweb reports is about single connections (a client gone mid-reply); Prometheus
  // notices failed scrapes itself, so these are dropped rather than written to our stderr.
  return 1;
}

int HttpEndpoint::HandleRequest(mg_connection* conn, void* self) {
  const auto* endpoint = static_cast<const HttpEndpoint*>(self);
  const mg_request_info* request = mg_get_request_info(conn);
  const absl::string_view method = request->request_method;
  const absl::string_view uri = request->local_uri;
  // civetweb matches prefixes (/metrics also gets /metrics/x); only the exact paths are ours.
  if (uri != "/metrics" && uri != "/healthz" && uri != "/readyz") {
    return Respond(conn, 404, kTextContentType, "not found", method != "HEAD");
  }
  if (method != "GET" && method != "HEAD") {
    return Respond(conn, 405, kTextContentType, "only GET and HEAD", true);
  }
  const bool with_body = method == "GET";
  if (uri == "/metrics") {
    return Respond(conn, 200, kMetricsContentType, endpoint->registry_->Render(), with_body);
  }
  if (uri == "/healthz") return Respond(conn, 200, kTextContentType, "ok", with_body);
  if (endpoint->ready_()) return Respond(conn, 200, kTextContentType, "ready", with_body);
  return Respond(conn, 503, kTextContentType, "not ready", with_body);
}

}  // namespace pad::server
