// The HTTP side of the server: Prometheus scrapes and Kubernetes probes, served by civetweb.
#ifndef PAD_SERVER_HTTP_ENDPOINT_H_
#define PAD_SERVER_HTTP_ENDPOINT_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/metrics.h"

struct mg_context;
struct mg_connection;

namespace pad::server {

struct HttpEndpointOptions {
  // host:port; port 0 picks a free one (see HttpEndpoint::port()). civetweb's syntax, so "9090" alone means
  // every interface.
  std::string listen_address = "0.0.0.0:9090";
  int num_threads = 2;  // civetweb workers: a scrape and a probe at the same time
};

// Serves GET (and HEAD) /metrics: the registry's Render() as text/plain; version=0.0.4; /healthz: 200 "ok"
// while the process runs; /readyz: 200 "ready" while `ready()` is true, else 503 "not ready". Requests run
// on civetweb's worker threads, so `ready` must be thread-safe and quick, and the registry must outlive the
// endpoint. Start may be called from any thread; the destructor stops the server, waiting for requests in
// flight. On failure nothing is left listening.
class HttpEndpoint {
 public:
  // INVALID_ARGUMENT for bad options, UNAVAILABLE naming the address when it cannot listen (port in use).
  static absl::StatusOr<std::unique_ptr<HttpEndpoint>> Start(const HttpEndpointOptions& options,
                                                             const MetricsRegistry* registry,
                                                             std::function<bool()> ready);
  // Waits for requests in flight; up to 2 s more, as civetweb 1.15's accept loop polls with that timeout.
  ~HttpEndpoint();

  HttpEndpoint(const HttpEndpoint&) = delete;
  HttpEndpoint& operator=(const HttpEndpoint&) = delete;

  int port() const { return port_; }  // the port bound, also when the options asked for 0

 private:
  HttpEndpoint(const MetricsRegistry* registry, std::function<bool()> ready);
  static int HandleRequest(mg_connection* conn, void* self);
  static int LogMessage(const mg_connection* conn, const char* message);

  const MetricsRegistry* const registry_;
  const std::function<bool()> ready_;
  mg_context* context_ = nullptr;  // owned; mg_stop in the destructor
  int port_ = 0;

  absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::string> start_log_ ABSL_GUARDED_BY(mu_);  // what civetweb logged while starting
};

}  // namespace pad::server

#endif  // PAD_SERVER_HTTP_ENDPOINT_H_
