#include "server/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "server/metrics.h"

namespace pad::server {
namespace {

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
};

int Connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  timeval timeout = {5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// The bytes of `request` over a fresh loopback connection, the answer read until the server closes it. On a
// transport or parse failure `status` stays 0 and `body` says what went wrong.
HttpResponse Exchange(int port, absl::string_view request) {
  HttpResponse response;
  const int fd = Connect(port);
  if (fd < 0) return {0, {}, "connect failed"};
  if (send(fd, request.data(), request.size(), 0) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return {0, {}, "send failed"};
  }
  std::string raw;
  char buffer[4096];
  ssize_t n;
  while ((n = recv(fd, buffer, sizeof(buffer), 0)) > 0) raw.append(buffer, n);
  close(fd);
  if (n < 0) return {0, {}, "recv failed or timed out"};

  const size_t header_end = raw.find("\r\n\r\n");
  if (header_end == std::string::npos) return {0, {}, "no end of headers in: " + raw};
  std::vector<std::string> lines = absl::StrSplit(raw.substr(0, header_end), "\r\n");
  // "HTTP/1.1 200 OK"
  std::vector<absl::string_view> status_line = absl::StrSplit(lines[0], absl::MaxSplits(' ', 2));
  if (status_line.size() < 2 || !absl::StartsWith(status_line[0], "HTTP/1.") ||
      !absl::SimpleAtoi(status_line[1], &response.status)) {
    return {0, {}, "bad status line: " + lines[0]};
  }
  for (size_t i = 1; i < lines.size(); ++i) {
    const size_t colon = lines[i].find(':');
    if (colon == std::string::npos) return {0, {}, "bad header: " + lines[i]};
    response.headers[absl::AsciiStrToLower(lines[i].substr(0, colon))] =
        std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
  }
  response.body = raw.substr(header_end + 4);
  return response;
}

// One HTTP/1.1 request with Connection: close.
HttpResponse Fetch(int port, absl::string_view method, absl::string_view path, absl::string_view body = "") {
  return Exchange(port,
                  absl::StrCat(method, " ", path, " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n",
                               method == "POST" ? absl::StrCat("Content-Length: ", body.size(), "\r\n") : "",
                               "\r\n", body));
}

// One endpoint for the suite.
class HttpServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    registry_ = new MetricsRegistry;
    requests_ = *registry_->AddCounter("pad_requests_total", "Requests.", {"status"});
    requests_->WithLabels({"ok"}).Increment(2);
    ready_ = new std::atomic<bool>(false);
    HttpServerOptions options;
    options.listen_address = "127.0.0.1:0";
    options.num_threads = 6;
    options.max_body_bytes = 1000;
    absl::StatusOr<std::unique_ptr<HttpServer>> server =
        HttpServer::Start(options, ProbeRoutes(registry_, [] { return ready_->load(); }));
    ASSERT_TRUE(server.ok()) << server.status();
    endpoint_ = server->release();
  }

  static void TearDownTestSuite() {
    delete endpoint_;
    delete ready_;
    delete registry_;
  }

  void SetUp() override { ASSERT_GT(endpoint_->port(), 0); }

  static MetricsRegistry* registry_;
  static Family<Counter>* requests_;
  static std::atomic<bool>* ready_;
  static HttpServer* endpoint_;
};

MetricsRegistry* HttpServerTest::registry_ = nullptr;
Family<Counter>* HttpServerTest::requests_ = nullptr;
std::atomic<bool>* HttpServerTest::ready_ = nullptr;
HttpServer* HttpServerTest::endpoint_ = nullptr;

TEST_F(HttpServerTest, MetricsServesTheRegistry) {
  HttpResponse response = Fetch(endpoint_->port(), "GET", "/metrics");
  EXPECT_EQ(response.status, 200) << response.body;
  EXPECT_EQ(response.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(response.headers["content-length"], absl::StrCat(response.body.size()));
  EXPECT_EQ(response.body,
            "# HELP pad_requests_total Requests.\n"
            "# TYPE pad_requests_total counter\n"
            "pad_requests_total{status=\"ok\"} 2\n");

  requests_->WithLabels({"cancelled"}).Increment();
  response = Fetch(endpoint_->port(), "GET", "/metrics");
  EXPECT_EQ(response.status, 200) << response.body;
  EXPECT_EQ(response.body,
            "# HELP pad_requests_total Requests.\n"
            "# TYPE pad_requests_total counter\n"
            "pad_requests_total{status=\"cancelled\"} 1\n"
            "pad_requests_total{status=\"ok\"} 2\n");
}

TEST_F(HttpServerTest, HeadSendsHeadersOnly) {
  HttpResponse response = Fetch(endpoint_->port(), "HEAD", "/metrics");
  EXPECT_EQ(response.status, 200) << response.body;
  EXPECT_EQ(response.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(response.headers["content-length"], absl::StrCat(registry_->Render().size()));
  EXPECT_EQ(response.body, "");
}

TEST_F(HttpServerTest, HealthzIsOkWhileRunning) {
  HttpResponse response = Fetch(endpoint_->port(), "GET", "/healthz");
  EXPECT_EQ(response.status, 200) << response.body;
  EXPECT_EQ(response.headers["content-type"], "text/plain; charset=utf-8");
  EXPECT_EQ(response.body, "ok");
}

TEST_F(HttpServerTest, ReadyzFollowsTheCallback) {
  HttpResponse response = Fetch(endpoint_->port(), "GET", "/readyz");
  EXPECT_EQ(response.status, 503) << response.body;
  EXPECT_EQ(response.headers["content-type"], "text/plain; charset=utf-8");
  EXPECT_EQ(response.body, "not ready");

  *ready_ = true;
  response = Fetch(endpoint_->port(), "GET", "/readyz");
  EXPECT_EQ(response.status, 200) << response.body;
  EXPECT_EQ(response.body, "ready");

  *ready_ = false;  // e.g. draining
  EXPECT_EQ(Fetch(endpoint_->port(), "GET", "/readyz").status, 503);
}

TEST_F(HttpServerTest, OtherPathsAndMethodsAreRefused) {
  HttpResponse response = Fetch(endpoint_->port(), "GET", "/metrics/extra");
  EXPECT_EQ(response.status, 404) << response.body;
  EXPECT_EQ(response.body, "not found\n");
  EXPECT_EQ(Fetch(endpoint_->port(), "GET", "/").status, 404);
  EXPECT_EQ(Fetch(endpoint_->port(), "GET", "/other").status, 404);

  response = Fetch(endpoint_->port(), "POST", "/metrics");
  EXPECT_EQ(response.status, 405) << response.body;
  EXPECT_EQ(response.headers["allow"], "GET, HEAD");
  EXPECT_EQ(response.body, "only GET and HEAD");
}

TEST_F(HttpServerTest, LargeBodiesAreRefused) {
  HttpResponse response = Fetch(endpoint_->port(), "POST", "/metrics", std::string(1001, 'x'));
  EXPECT_EQ(response.status, 413) << response.body;
  EXPECT_EQ(response.body, "request body too large\n");
}

// cpp-httplib would read a chunked body whole before any limit applied: a body without a length is refused
// before it is read, and the client told to close. The request below sends only its headers: the answer
// comes without a byte of the body.
TEST_F(HttpServerTest, BodiesWithoutALengthAreRefusedUnread) {
  HttpResponse response =
      Exchange(endpoint_->port(),
               "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
               "Transfer-Encoding: chunked\r\n\r\n");
  EXPECT_EQ(response.status, 411) << response.body;
  EXPECT_EQ(response.headers["connection"], "close");
  EXPECT_EQ(response.body,
            "a request body must come with a Content-Length (Transfer-Encoding is not accepted)\n");
  EXPECT_EQ(Fetch(endpoint_->port(), "GET", "/healthz").status, 200);
}

// Browsers let a page of another origin read an answer only with CORS headers: given to the allowed
// origins, never to others, and a preflight answered before any route.
TEST(HttpServer, CorsForAllowedOriginsOnly) {
  MetricsRegistry registry;
  HttpServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.cors_allowed_origins = {"https://chat.example"};
  absl::StatusOr<std::unique_ptr<HttpServer>> server =
      HttpServer::Start(options, ProbeRoutes(&registry, [] { return true; }));
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();
  const auto get = [port](absl::string_view origin) {
    return Exchange(port, absl::StrCat("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nOrigin: ",
                                       origin, "\r\n\r\n"));
  };
  HttpResponse allowed = get("https://chat.example");
  EXPECT_EQ(allowed.status, 200);
  EXPECT_EQ(allowed.body, "ok");
  EXPECT_EQ(allowed.headers["access-control-allow-origin"], "https://chat.example");
  EXPECT_EQ(allowed.headers["vary"], "Origin");
  HttpResponse other = get("https://evil.example");
  EXPECT_EQ(other.status, 200);
  EXPECT_EQ(other.headers.count("access-control-allow-origin"), 0u);

  const auto preflight = [port](absl::string_view origin) {
    return Exchange(port,
                    absl::StrCat("OPTIONS /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                 "Origin: ",
                                 origin,
                                 "\r\nAccess-Control-Request-Method: POST\r\n"
                                 "Access-Control-Request-Headers: authorization, content-type\r\n\r\n"));
  };
  HttpResponse ok = preflight("https://chat.example");
  EXPECT_EQ(ok.status, 204);
  EXPECT_EQ(ok.headers["access-control-allow-origin"], "https://chat.example");
  EXPECT_EQ(ok.headers["access-control-allow-methods"], "GET, POST");
  EXPECT_EQ(ok.headers["access-control-allow-headers"], "Authorization, Content-Type");
  HttpResponse refused = preflight("https://evil.example");
  EXPECT_EQ(refused.status, 204);
  EXPECT_EQ(refused.headers.count("access-control-allow-origin"), 0u);
  EXPECT_EQ(refused.headers.count("access-control-allow-methods"), 0u);
}

// The default: no CORS headers for anyone.
TEST_F(HttpServerTest, NoCorsByDefault) {
  HttpResponse response = Exchange(
      endpoint_->port(),
      "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nOrigin: https://chat.example\r\n\r\n");
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.headers.count("access-control-allow-origin"), 0u);
}

// A kubelet probe has 1 s: clients that connect and send nothing hold a worker each until the read
// timeout (5 s), so while workers remain the probe must not wait.
TEST_F(HttpServerTest, SilentClientsDoNotDelayProbes) {
  std::vector<int> silent;
  for (int i = 0; i < 4; ++i) silent.push_back(Connect(endpoint_->port()));
  const absl::Time start = absl::Now();
  HttpResponse response = Fetch(endpoint_->port(), "GET", "/healthz");
  EXPECT_EQ(response.status, 200) << response.body;
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  for (int fd : silent) close(fd);
}

// Every worker taken and the queue full: one more connection is answered 503 with Retry-After at once,
// instead of waiting behind the others (cpp-httplib's own queue has no bound); the queued one is served
// once the worker frees.
TEST(HttpServer, AFullQueueIsAnsweredAtOnce) {
  absl::Notification release;
  std::atomic<int> holding{0};
  HttpServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.num_threads = 1;
  options.max_queued_connections = 1;
  absl::StatusOr<std::unique_ptr<HttpServer>> server =
      HttpServer::Start(options, [&](httplib::Server& routes) {
        routes.Get("/hold", [&](const httplib::Request&, httplib::Response& response) {
          ++holding;
          release.WaitForNotification();
          response.set_content("held", "text/plain");
        });
        routes.Get("/quick", [](const httplib::Request&, httplib::Response& response) {
          response.set_content("quick", "text/plain");
        });
      });
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();
  HttpResponse held;
  std::thread holder([&] { held = Fetch(port, "GET", "/hold"); });
  while (holding.load() == 0) absl::SleepFor(absl::Milliseconds(5));  // the one worker is taken

  // Two more: one waits in the queue, the other finds it full (which is which is the accept order's).
  HttpResponse answers[2];
  absl::Notification first_answered;
  std::atomic<int> answered{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < 2; ++i) {
    clients.emplace_back([&, i] {
      answers[i] = Fetch(port, "GET", "/quick");
      if (answered.fetch_add(1) == 0) first_answered.Notify();
    });
  }
  const bool one_answered = first_answered.WaitForNotificationWithTimeout(absl::Seconds(60));
  const int before_release = answered.load();
  release.Notify();
  for (std::thread& client : clients) client.join();
  holder.join();
  ASSERT_TRUE(one_answered) << "both waited for the held worker";
  EXPECT_EQ(before_release, 1);
  const int busy = answers[0].status == 503 ? 0 : 1;
  EXPECT_EQ(answers[busy].status, 503) << answers[busy].body;
  EXPECT_EQ(answers[busy].headers["retry-after"], "1");
  EXPECT_EQ(answers[busy].headers["connection"], "close");
  EXPECT_TRUE(absl::StartsWith(answers[busy].body, "the server is busy")) << answers[busy].body;
  EXPECT_EQ(answers[1 - busy].status, 200) << answers[1 - busy].body;
  EXPECT_EQ(answers[1 - busy].body, "quick");
  EXPECT_EQ(held.body, "held");
}

// Idle workers take a burst of connections whatever the queue's bound: only connections beyond the workers
// wait, so with no queue at all (max_queued_connections 0) four clients at once on four idle workers are all
// served. (The bound used to count the connections that idle workers had not yet picked up: with no queue,
// every connection was answered 503.)
TEST(HttpServer, IdleWorkersTakeABurstBeyondTheQueue) {
  HttpServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.num_threads = 4;
  options.max_queued_connections = 0;
  absl::StatusOr<std::unique_ptr<HttpServer>> server =
      HttpServer::Start(options, [](httplib::Server& routes) {
        routes.Get("/quick", [](const httplib::Request&, httplib::Response& response) {
          response.set_content("quick", "text/plain");
        });
      });
  ASSERT_TRUE(server.ok()) << server.status();
  for (int round = 0; round < 3; ++round) {
    HttpResponse answers[4];
    std::vector<std::thread> clients;
    for (int i = 0; i < 4; ++i) {
      clients.emplace_back([&, i] { answers[i] = Fetch((*server)->port(), "GET", "/quick"); });
    }
    for (std::thread& client : clients) client.join();
    for (const HttpResponse& answer : answers) EXPECT_EQ(answer.status, 200) << round << ": " << answer.body;
  }
}

// A client that trickles its head a byte at a time, each within the read timeout, is dropped at the request
// deadline (cpp-httplib's own reads time out one at a time: it held a worker for as long as it trickled),
// and so is one that sends headers without end, once it passes the head's byte budget.
TEST(HttpServer, TricklingAndEndlessHeadsAreDropped) {
  MetricsRegistry registry;
  HttpServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.request_timeout = absl::Seconds(1);
  absl::StatusOr<std::unique_ptr<HttpServer>> server =
      HttpServer::Start(options, ProbeRoutes(&registry, [] { return true; }));
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();

  // Sends `chunk` every `interval` until the server closes the connection; how long that took, or nullopt
  // if it was still open after `most`.
  const auto sends_until_closed = [port](absl::string_view first, absl::string_view chunk,
                                         absl::Duration interval, absl::Duration most) {
    const int fd = Connect(port);
    EXPECT_GE(fd, 0);
    const absl::Time start = absl::Now();
    bool closed = send(fd, first.data(), first.size(), MSG_NOSIGNAL) < 0;
    while (!closed && absl::Now() - start < most) {
      closed = send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL) < 0;
      absl::SleepFor(interval);
    }
    close(fd);
    return closed ? absl::Now() - start : absl::InfiniteDuration();
  };
  // Each byte 100 ms after the last: well within the 5 s read timeout, and never a whole head.
  const absl::Duration trickled =
      sends_until_closed("GET /healthz HTTP/1.1\r\nX-a: ", "b", absl::Milliseconds(100), absl::Seconds(60));
  EXPECT_LT(trickled, absl::Seconds(60)) << "a trickling client was never dropped";
  EXPECT_GE(trickled, absl::Seconds(1));
  const std::string header = absl::StrCat("X-Filler: ", std::string(1000, 'a'), "\r\n");
  const absl::Duration endless =
      sends_until_closed("GET /healthz HTTP/1.1\r\n", header, absl::ZeroDuration(), absl::Seconds(60));
  EXPECT_LT(endless, absl::Seconds(60)) << "endless headers were read on and on";
  // A normal request on the same server is unharmed, and a head just under the budget is still served.
  EXPECT_EQ(Fetch(port, "GET", "/healthz").status, 200);
  std::string forty_headers;  // 40 KB, under the 64 KiB budget
  for (int i = 0; i < 40; ++i) forty_headers += header;
  HttpResponse large = Exchange(
      port, absl::StrCat("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n", forty_headers, "\r\n"));
  EXPECT_EQ(large.status, 200) << large.body;
}

// Stopping does not wait for a client halfway through its request head: its worker stops reading at once,
// not at the request deadline (a minute here).
TEST(HttpServer, AHalfSentRequestDoesNotHoldUpTheStop) {
  MetricsRegistry registry;
  HttpServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.read_timeout = options.request_timeout = absl::Seconds(60);
  absl::StatusOr<std::unique_ptr<HttpServer>> server =
      HttpServer::Start(options, ProbeRoutes(&registry, [] { return true; }));
  ASSERT_TRUE(server.ok()) << server.status();
  const int fd = Connect((*server)->port());
  ASSERT_GE(fd, 0);
  const std::string half = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
  ASSERT_EQ(send(fd, half.data(), half.size(), MSG_NOSIGNAL), static_cast<ssize_t>(half.size()));
  absl::SleepFor(absl::Milliseconds(200));  // a worker is reading it
  const absl::Time start = absl::Now();
  server->reset();
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
  close(fd);
}

TEST_F(HttpServerTest, PortInUseIsUnavailableNamingTheAddress) {
  HttpServerOptions options;
  options.listen_address = absl::StrCat("127.0.0.1:", endpoint_->port());
  absl::StatusOr<std::unique_ptr<HttpServer>> second =
      HttpServer::Start(options, ProbeRoutes(registry_, [] { return true; }));
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  const std::string address = absl::StrCat("127.0.0.1:", endpoint_->port());
  EXPECT_EQ(second.status().message(),
            absl::StrCat("cannot serve HTTP on ", address, ": Address already in use"));
  // The first server is unharmed.
  EXPECT_EQ(Fetch(endpoint_->port(), "GET", "/healthz").status, 200);
}

TEST(HttpServer, DestructorStopsListening) {
  MetricsRegistry registry;
  HttpServerOptions options;
  options.listen_address = "127.0.0.1:0";
  absl::StatusOr<std::unique_ptr<HttpServer>> server =
      HttpServer::Start(options, ProbeRoutes(&registry, [] { return true; }));
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();
  ASSERT_EQ(Fetch(port, "GET", "/healthz").status, 200);
  server->reset();
  HttpResponse response = Fetch(port, "GET", "/healthz");
  EXPECT_EQ(response.status, 0);
  EXPECT_EQ(response.body, "connect failed");
}

TEST(HttpServer, RejectsBadOptions) {
  const HttpRoutes none = [](httplib::Server&) {};
  HttpServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.num_threads = 0;
  EXPECT_EQ(HttpServer::Start(options, none).status(),
            absl::InvalidArgumentError("num_threads: 0 is not >= 1"));
  options.num_threads = 1;
  options.max_queued_connections = -1;
  EXPECT_EQ(HttpServer::Start(options, none).status(),
            absl::InvalidArgumentError("max_queued_connections: -1 is not >= 0"));
  options.max_queued_connections = 0;
  options.write_timeout = absl::ZeroDuration();
  EXPECT_EQ(HttpServer::Start(options, none).status(),
            absl::InvalidArgumentError("write_timeout: 0 is not a finite time of at least 1 ms"));
  options.write_timeout = absl::Seconds(1);
  options.listen_address = "";
  EXPECT_EQ(HttpServer::Start(options, none).status(),
            absl::InvalidArgumentError("listen_address: must not be empty"));
  options.listen_address = "localhost:80";
  EXPECT_EQ(HttpServer::Start(options, none).status(),
            absl::InvalidArgumentError("listen_address: \"localhost\" is not an IPv4 address"));
}

}  // namespace
}  // namespace pad::server
