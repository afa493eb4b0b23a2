#include "server/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "server/field_names.h"

namespace pad::server {
namespace {

constexpr char kMetricsContentType[] = "text/plain; version=0.0.4; charset=utf-8";
constexpr char kTextContentType[] = "text/plain; charset=utf-8";

// Set on the threads that answer connections the workers have no room for: every request they read is
// answered 503 (see the pre-routing handler).
thread_local bool overloaded_thread = false;

// cpp-httplib's task queue (one task per connection, run to its close), bounded. Its own ThreadPool queues
// without limit, so a flood of connections would wait for minutes behind open streams, probes included.
// Here a connection beyond `max_queued` goes to a shedding thread instead, which reads its request and
// answers 503 at once (cpp-httplib's enqueue cannot refuse a task, and only a task can answer or close its
// socket).
class BoundedTaskQueue final : public httplib::TaskQueue {
 public:
  BoundedTaskQueue(size_t workers, size_t max_queued) : max_queued_(max_queued), idle_(workers) {
    for (size_t i = 0; i < workers; ++i) threads_.emplace_back([this] { Work(&queued_, false); });
    threads_.emplace_back([this] { Work(&shed_, true); });
  }

  void enqueue(std::function<void()> fn) override {
    absl::MutexLock lock(&mu_);
    // The jobs that idle workers are about to take are not waiting: a burst of connections is shed only past
    // the workers and max_queued, however late the idle workers wake (on a loaded machine, a test's 100 idle
    // connections filled the queue before 76 idle workers ran).
    (queued_.size() < max_queued_ + idle_ ? queued_ : shed_).push_back(std::move(fn));
  }

  void shutdown() override {
    {
      absl::MutexLock lock(&mu_);
      shutdown_ = true;
    }
    for (std::thread& thread : threads_) thread.join();
  }

 private:
  using Jobs = std::deque<std::function<void()>>;
  struct Waiter {
    BoundedTaskQueue* queue;
    Jobs* jobs;
  };
  static bool HasWork(Waiter* waiter) ABSL_NO_THREAD_SAFETY_ANALYSIS {  // called by Await, with mu_ held
    return waiter->queue->shutdown_ || !waiter->jobs->empty();
  }

  void Work(Jobs* jobs, bool overloaded) {
    overloaded_thread = overloaded;
    Waiter waiter{this, jobs};
    for (;;) {
      std::function<void()> job;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(&HasWork, &waiter));
        if (jobs->empty()) return;  // shut down, and nothing left to answer
        job = std::move(jobs->front());
        jobs->pop_front();
        if (!overloaded) --idle_;
      }
      job();
      if (!overloaded) {
        absl::MutexLock lock(&mu_);
        ++idle_;
      }
    }
  }

  const size_t max_queued_;
  absl::Mutex mu_;
  Jobs queued_ ABSL_GUARDED_BY(mu_);  // for the workers
  Jobs shed_ ABSL_GUARDED_BY(mu_);    // for the shedding thread
  size_t idle_ ABSL_GUARDED_BY(mu_);  // workers not running a job
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

// How long the thread that answers 503 waits for a request: it serves every connection beyond the queue.
constexpr absl::Duration kOverloadedPatience = absl::Seconds(1);

// One connection's bytes, with the bounds cpp-httplib 0.11's own stream lacks: its reads time out one at a
// time, so a client that sends a byte every few seconds holds a worker for as long as it likes, and it
// buffers a header line or any number of headers whole. Here each request must arrive within a deadline from
// its first byte, and its head within a byte budget; past either, reads fail and the connection is closed.
// One stream serves the connection's requests in turn, so bytes read ahead (a pipelined request) are kept.
class GuardedStream final : public httplib::Stream {
 public:
  // `serving` turns false when the server stops: every wait here ends then, so that a slow client never
  // holds up the shutdown.
  GuardedStream(int fd, const HttpServerOptions& options, std::function<bool()> serving)
      : fd_(fd), options_(options), serving_(std::move(serving)) {}

  // Waits up to the idle timeout for the next request's first byte; then starts that request's deadline
  // and head budget.
  bool NextRequest() {
    const absl::Duration patience = overloaded_thread ? kOverloadedPatience : absl::InfiniteDuration();
    if (begin_ == end_ && !WaitReadable(absl::Now() + std::min(options_.idle_timeout, patience)))
      return false;
    if (begin_ == end_ && Fill() <= 0) return false;  // closed by the client, or an error
    deadline_ = absl::Now() + std::min(options_.request_timeout, patience);
    head_bytes_ = 0;
    head_ended_ = false;
    line_end_ = 0;
    return true;
  }

  bool is_readable() const override { return begin_ != end_ || WaitReadable(ReadUntil()); }

  bool is_writable() const override { return Poll(POLLOUT, options_.write_timeout) > 0 && PeerOpen(); }

  ssize_t read(char* ptr, size_t size) override {
    if (!head_ended_ && head_bytes_ >= options_.max_head_bytes) return -1;  // a head too large
    if (begin_ == end_) {
      if (!WaitReadable(ReadUntil())) return -1;  // slow, or past the request's deadline
      const ssize_t n = Fill();
      if (n <= 0) return n;
    }
    size = std::min(size, end_ - begin_);
    if (!head_ended_) size = std::min(size, options_.max_head_bytes - head_bytes_);
    std::memcpy(ptr, buffer_ + begin_, size);
    begin_ += size;
    if (!head_ended_) {
      head_bytes_ += size;
      for (size_t i = 0; i < size && !head_ended_; ++i) {
        // The head ends at an empty line: "\r\n\r\n", or "\n\n" as cpp-httplib also accepts.
        const char c = ptr[i];
        line_end_ = c == '\n' ? line_end_ + 1 : (c == '\r' ? line_end_ : 0);
        head_ended_ = line_end_ == 2;
      }
    }
    return static_cast<ssize_t>(size);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (!is_writable()) return -1;
    return ::send(fd_, ptr, size, MSG_NOSIGNAL);
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override { Address(true, ip, port); }
  void get_local_ip_and_port(std::string& ip, int& port) const override { Address(false, ip, port); }
  socket_t socket() const override { return fd_; }

 private:
  // When one read stops waiting: after the read timeout, or at the request's deadline if sooner.
  absl::Time ReadUntil() const { return std::min(absl::Now() + options_.read_timeout, deadline_); }

  // Whether bytes (or the client's close) arrived before `until`; false at once when the server stops.
  bool WaitReadable(absl::Time until) const {
    for (;;) {
      if (!serving_()) return false;
      const absl::Duration left = until - absl::Now();
      if (left <= absl::ZeroDuration()) return false;
      const int ready = Poll(POLLIN, std::min(left, absl::Milliseconds(50)));
      if (ready != 0) return ready > 0;
    }
  }

  // poll(2) for `events`: > 0 ready, 0 timed out, < 0 an error or a hang-up without data.
  int Poll(short events, absl::Duration timeout) const {
    pollfd p{fd_, events, 0};
    int ready;
    do {
      ready = ::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout)));
    } while (ready < 0 && errno == EINTR);
    if (ready > 0 && (p.revents & (events | POLLHUP)) == 0) return -1;
    return ready;
  }

  // Whether the client still holds its end open (a closed one reads as end of file).
  bool PeerOpen() const {
    if (begin_ != end_) return true;
    char byte;
    const ssize_t n = ::recv(fd_, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
  }

  ssize_t Fill() {
    ssize_t n;
    do {
      n = ::recv(fd_, buffer_, sizeof(buffer_), 0);
    } while (n < 0 && errno == EINTR);
    begin_ = 0;
    end_ = n > 0 ? static_cast<size_t>(n) : 0;
    return n;
  }

  void Address(bool remote, std::string& ip, int& port) const {
    sockaddr_storage address{};
    socklen_t length = sizeof(address);
    const int got = remote ? ::getpeername(fd_, reinterpret_cast<sockaddr*>(&address), &length)
                           : ::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length);
    if (got != 0 || address.ss_family != AF_INET) return;
    const auto* in = reinterpret_cast<const sockaddr_in*>(&address);
    char text[INET_ADDRSTRLEN];
    if (::inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text)) != nullptr) ip = text;
    port = ntohs(in->sin_port);
  }

  const int fd_;
  const HttpServerOptions& options_;
  const std::function<bool()> serving_;
  char buffer_[4096];
  size_t begin_ = 0;  // buffer_[begin_, end_) is read but not yet consumed
  size_t end_ = 0;
  absl::Time deadline_ = absl::InfiniteFuture();
  size_t head_bytes_ = 0;
  bool head_ended_ = false;
  int line_end_ = 0;  // line ends in a row at the end of what was read ("\r" not counted)
};

// cpp-httplib's server, its connections served through GuardedStream: the same keep-alive loop as its own
// (at most keep_alive_max_count requests, the last answered with Connection: close), then the socket closed.
class GuardedServer final : public httplib::Server {
 public:
  explicit GuardedServer(const HttpServerOptions& options) : options_(options) {}

 private:
  bool process_and_close_socket(socket_t sock) override {
    GuardedStream stream(sock, options_, [this] { return svr_sock_ != INVALID_SOCKET; });
    const absl::Time close_after = absl::Now() + Jittered(options_.max_connection_age);
    bool served = false;
    for (size_t left = keep_alive_max_count_; left > 0; --left) {
      if (!stream.NextRequest()) break;
      bool connection_closed = false;
      const bool last = left == 1 || absl::Now() >= close_after;
      served = process_request(stream, /*close_connection=*/last, connection_closed, nullptr);
      if (!served || connection_closed) break;
    }
    ::shutdown(sock, SHUT_RDWR);
    ::close(sock);
    return served;
  }

  // `age` times a factor in [0.9, 1.1], as gRPC jitters its own, so that connections opened together do
  // not all close together.
  static absl::Duration Jittered(absl::Duration age) {
    if (age == absl::InfiniteDuration()) return age;
    thread_local std::mt19937 random(std::random_device{}());
    return age * std::uniform_real_distribution<double>(0.9, 1.1)(random);
  }

  const HttpServerOptions options_;
};

// The text of the statuses cpp-httplib sends on its own.
std::string ErrorText(int status) {
  switch (status) {
    case 400:
      return "bad request";
    case 404:
      return "not found";
    case 413:
      return "request body too large";
    case 414:
      return "request target too long";
    default:
      return absl::StrCat("HTTP status ", status);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpServerOptions& options,
                                                              const HttpRoutes& routes) {
  if (options.listen_address.empty()) return absl::InvalidArgumentError("listen_address: must not be empty");
  if (options.num_threads < 1) {
    return absl::InvalidArgumentError(absl::StrCat("num_threads: ", options.num_threads, " is not >= 1"));
  }
  for (const auto& [name, timeout] :
       {std::pair{"read_timeout", options.read_timeout}, std::pair{"write_timeout", options.write_timeout},
        std::pair{"idle_timeout", options.idle_timeout},
        std::pair{"request_timeout", options.request_timeout}}) {
    if (timeout < absl::Milliseconds(1) || timeout == absl::InfiniteDuration()) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": ", absl::FormatDuration(timeout), " is not a finite time of at least 1 ms"));
    }
  }
  if (options.max_body_bytes < 1) return absl::InvalidArgumentError("max_body_bytes: must be at least 1");
  if (options.max_head_bytes < 1024)
    return absl::InvalidArgumentError("max_head_bytes: must be at least 1024");
  if (options.max_queued_connections < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_queued_connections: ", options.max_queued_connections, " is not >= 0"));
  }

  const std::string& address = options.listen_address;
  const size_t colon = address.rfind(':');
  const std::string host = colon == std::string::npos ? "0.0.0.0" : address.substr(0, colon);
  int port = 0;
  if (!absl::SimpleAtoi(colon == std::string::npos ? address : address.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("listen_address: \"", address, "\" is not host:port"));
  }
  in_addr parsed;
  if (::inet_pton(AF_INET, host.c_str(), &parsed) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("listen_address: \"", host, "\" is not an IPv4 address"));
  }

  std::unique_ptr<HttpServer> http(new HttpServer);
  http->server_ = std::make_unique<GuardedServer>(options);
  httplib::Server& server = *http->server_;
  const size_t threads = static_cast<size_t>(options.num_threads);
  const size_t max_queued = static_cast<size_t>(options.max_queued_connections);
  server.new_task_queue = [threads, max_queued] { return new BoundedTaskQueue(threads, max_queued); };
  // Timeouts are GuardedStream's, from `options`; cpp-httplib's own apply only to its own stream.
  server.set_keep_alive_max_count(1000);
  server.set_payload_max_length(options.max_body_bytes);
  // A handler's own error body stands; cpp-httplib's bare statuses (404, 413, 400) get a line of text.
  server.set_error_handler(
      httplib::Server::HandlerWithResponse([](const httplib::Request&, httplib::Response& response) {
        if (!response.body.empty()) {
          return httplib::Server::HandlerResponse::Unhandled;
        }
        response.set_content(absl::StrCat(ErrorText(response.status), "\n"), kTextContentType);
        return httplib::Server::HandlerResponse::Handled;
      }));
  // cpp-httplib checks payload_max_length against Content-Length only: a chunked body would be read whole,
  // whatever its size, before any handler could refuse it. Every client of ours sends a length (the SDKs,
  // browsers, curl -d), so a body without one is refused before it is read (RFC 9110, 411), and the client
  // told to close the connection, whose unread body would otherwise be taken for the next request.
  // CORS, for the allowed origins only: their requests get Access-Control-Allow-Origin, and their
  // preflights (OPTIONS with Access-Control-Request-Method) are answered here, before any route.
  server.set_pre_routing_handler(
      [origins = options.cors_allowed_origins](const httplib::Request& request, httplib::Response& response) {
        if (overloaded_thread) {
          response.status = 503;
          response.set_header("Retry-After", std::to_string(kRetryAfterSeconds));
          response.set_header("Connection", "close");
          response.set_content(
              "the server is busy: every HTTP worker is taken and the queue is full; retry later\n",
              kTextContentType);
          return httplib::Server::HandlerResponse::Handled;
        }
        if (request.has_header("Transfer-Encoding")) {
          response.status = 411;
          response.set_header("Connection", "close");
          response.set_content(
              "a request body must come with a Content-Length (Transfer-Encoding is not accepted)\n",
              kTextContentType);
          return httplib::Server::HandlerResponse::Handled;
        }
        const std::string origin = request.get_header_value("Origin");
        const bool allowed =
            !origin.empty() && std::any_of(origins.begin(), origins.end(),
                                           [&](const std::string& o) { return o == "*" || o == origin; });
        if (allowed) {
          response.set_header("Access-Control-Allow-Origin", origin);
          response.set_header("Vary", "Origin");
        }
        if (request.method != "OPTIONS" || !request.has_header("Access-Control-Request-Method")) {
          return httplib::Server::HandlerResponse::Unhandled;
        }
        response.status = 204;  // without the Allow headers below, the browser refuses the request
        if (allowed) {
          response.set_header("Access-Control-Allow-Methods", "GET, POST");
          response.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type");
          response.set_header("Access-Control-Max-Age", "600");
        }
        return httplib::Server::HandlerResponse::Handled;
      });
  // Handlers report failures as statuses; an exception is a bug, answered 500 instead of ending the process.
  server.set_exception_handler(
      [](const httplib::Request&, httplib::Response& response, std::exception_ptr error) {
        std::string what = "unknown exception";
        try {
          std::rethrow_exception(error);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        response.status = 500;
        response.set_content(absl::StrCat("internal error: ", what, "\n"), kTextContentType);
      });
  // cpp-httplib's default adds SO_REUSEPORT, which lets a second server bind the same port and take half
  // of its connections: a port in use must be an error instead.
  server.set_socket_options([](int socket) {
    const int yes = 1;
    ::setsockopt(socket, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  routes(server);

  errno = 0;
  const bool bound = port == 0 ? (port = server.bind_to_any_port(host)) > 0 : server.bind_to_port(host, port);
  if (!bound) {
    return absl::UnavailableError(absl::StrCat("cannot serve HTTP on ", address, ": ",
                                               errno != 0 ? std::strerror(errno) : "bind failed"));
  }
  http->port_ = port;
  http->thread_ = std::thread([raw = http.get()] { raw->server_->listen_after_bind(); });
  // stop() does nothing until the accept loop runs, so a destructor right after Start would wait forever.
  while (!server.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return http;
}

HttpServer::~HttpServer() {
  server_->stop();  // closes the listening socket; workers finish their requests and are joined
  if (thread_.joinable()) thread_.join();
}

HttpRoutes ProbeRoutes(const MetricsRegistry* registry, std::function<bool()> ready) {
  return [registry, ready = std::move(ready)](httplib::Server& server) {
    server.Get("/metrics", [registry](const httplib::Request&, httplib::Response& response) {
      response.set_header("Cache-Control", "no-store");
      response.set_content(registry->Render(), kMetricsContentType);
    });
    server.Get("/healthz", [](const httplib::Request&, httplib::Response& response) {
      response.set_header("Cache-Control", "no-store");
      response.set_content("ok", kTextContentType);
    });
    server.Get("/readyz", [ready](const httplib::Request&, httplib::Response& response) {
      response.set_header("Cache-Control", "no-store");
      const bool is_ready = ready();
      response.status = is_ready ? 200 : 503;
      response.set_content(is_ready ? "ready" : "not ready", kTextContentType);
    });
    const httplib::Server::Handler only_get = [](const httplib::Request&, httplib::Response& response) {
      response.status = 405;
      response.set_header("Allow", "GET, HEAD");
      response.set_content("only GET and HEAD", kTextContentType);
    };
    for (const char* path : {"/metrics", "/healthz", "/readyz"}) {
      server.Post(path, only_get);
      server.Put(path, only_get);
      server.Patch(path, only_get);
      server.Delete(path, only_get);
    }
  };
}

}  // namespace pad::server
