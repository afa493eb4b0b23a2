// The HTTP side of the server on cpp-httplib (Debian's libcpp-httplib-dev): Prometheus scrapes, Kubernetes
// probes, the OpenAI-compatible API (server/openai_api.h) and the web chat, on one port.
//
// cpp-httplib's workers are std::threads with the default stack. (civetweb's fixed 100 KB stacks were
// refused by pthread_create in a process whose static TLS, LibTorch's and CUDA's, takes most of that.)
#ifndef PAD_SERVER_HTTP_SERVER_H_
#define PAD_SERVER_HTTP_SERVER_H_

#include <httplib.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/metrics.h"

namespace pad::server {

struct HttpServerOptions {
  // IPv4 host:port; port 0 picks a free one (see HttpServer::port()); "9090" alone means every interface.
  std::string listen_address = "0.0.0.0:9090";
  // Workers: a connection holds one while it is open (a streamed answer for its whole length, an idle
  // keep-alive connection for up to idle_timeout), so size it for every request the engine can hold plus
  // the probes and scrapes. Connections beyond it wait for a worker, up to max_queued_connections; beyond
  // that, each is answered 503 with Retry-After and closed, by a worker of its own that does nothing else.
  int num_threads = 16;
  int max_queued_connections = 64;
  absl::Duration read_timeout = absl::Seconds(5);   // each read of a request's headers and body
  absl::Duration write_timeout = absl::Seconds(5);  // each write: a reader that stalls longer is dropped
  absl::Duration idle_timeout = absl::Seconds(5);   // a keep-alive connection between requests
  // A connection older than this (jittered by +-10%) gets Connection: close on its next answer, so that a
  // keep-alive client reconnects and a load balancer can send it elsewhere. Infinite: never.
  absl::Duration max_connection_age = absl::InfiniteDuration();
  // A request's head and body must arrive whole within this of its first byte, and its head (request line
  // and headers) within max_head_bytes: a client that trickles bytes or sends endless headers is dropped.
  absl::Duration request_timeout = absl::Seconds(30);
  size_t max_head_bytes = 64 << 10;
  size_t max_body_bytes = 4 << 20;  // larger bodies get 413
  // Origins whose pages may call the server from a browser (CORS), e.g. "https://chat.example.com"; "*"
  // allows any. Empty: no CORS headers, so browsers keep other origins' pages out.
  std::vector<std::string> cors_allowed_origins;
};

// Registers handlers on the server before it starts listening.
using HttpRoutes = std::function<void(httplib::Server&)>;

// A listening cpp-httplib server on a thread of its own. The destructor stops it and waits for the
// requests in flight, so whatever the handlers use must outlive it. On failure nothing is left listening.
class HttpServer {
 public:
  // INVALID_ARGUMENT naming the option; UNAVAILABLE naming the address when it cannot listen (port in use).
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const HttpServerOptions& options,
                                                           const HttpRoutes& routes);
  ~HttpServer();

  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int port() const { return port_; }  // the port bound, also when the options asked for 0

 private:
  HttpServer() = default;

  std::unique_ptr<httplib::Server> server_;
  int port_ = 0;
  std::thread thread_;
};

// GET (and HEAD) /metrics: the registry's Render() as text/plain; version=0.0.4; /healthz: 200 "ok" while
// the process runs; /readyz: 200 "ready" while `ready()` is true, else 503 "not ready". Other methods on
// these paths get 405. `ready` must be thread-safe and quick; `registry` must outlive the server.
HttpRoutes ProbeRoutes(const MetricsRegistry* registry, std::function<bool()> ready);

}  // namespace pad::server

#endif  // PAD_SERVER_HTTP_SERVER_H_
