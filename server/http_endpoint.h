// The HTTP side of the server: Prometheus scrapes and Kubernetes probes.
//
// Not civetweb: its threads have a fixed 100 KB stack (Debian's build), and pthread_create refuses that in a
// process whose static TLS (LibTorch's and CUDA's libraries) takes most of it. One plain accept thread
// with the default stack serves these few small requests.
#ifndef PAD_SERVER_HTTP_ENDPOINT_H_
#define PAD_SERVER_HTTP_ENDPOINT_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "server/metrics.h"

namespace pad::server {

struct HttpEndpointOptions {
  // IPv4 host:port; port 0 picks a free one (see HttpEndpoint::port()); "9090" alone means every interface.
  std::string listen_address = "0.0.0.0:9090";
  int num_threads = 1;  // connections are served one at a time; kept for configuration compatibility
};

// Serves GET (and HEAD) /metrics: the registry's Render() as text/plain; version=0.0.4; /healthz: 200 "ok"
// while the process runs; /readyz: 200 "ready" while `ready()` is true, else 503 "not ready". Requests run
// on the endpoint's thread, one at a time with a 5 s read timeout, so `ready` must be thread-safe and
// quick, and the registry must outlive the endpoint. Start may be called from any thread; the destructor
// stops the server, waiting for requests in flight. On failure nothing is left listening.
class HttpEndpoint {
 public:
  // INVALID_ARGUMENT for bad options, UNAVAILABLE naming the address when it cannot listen (port in use).
  static absl::StatusOr<std::unique_ptr<HttpEndpoint>> Start(const HttpEndpointOptions& options,
                                                             const MetricsRegistry* registry,
                                                             std::function<bool()> ready);
  // Stops listening and waits for the request in flight.
  ~HttpEndpoint();

  HttpEndpoint(const HttpEndpoint&) = delete;
  HttpEndpoint& operator=(const HttpEndpoint&) = delete;

  int port() const { return port_; }  // the port bound, also when the options asked for 0

 private:
  HttpEndpoint(const MetricsRegistry* registry, std::function<bool()> ready);
  void Serve();  // the accept loop, on thread_
  void HandleConnection(int fd) const;

  const MetricsRegistry* const registry_;
  const std::function<bool()> ready_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::thread thread_;
};

}  // namespace pad::server

#endif  // PAD_SERVER_HTTP_ENDPOINT_H_
