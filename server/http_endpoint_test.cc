#include "server/http_endpoint.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "server/metrics.h"

namespace pad::server {
namespace {

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
};

// One HTTP/1.1 request over a fresh loopback connection, read until the server closes it. On a transport
// or parse failure `status` stays 0 and `body` says what went wrong.
HttpResponse Fetch(int port, absl::string_view method, absl::string_view path) {
  HttpResponse response;
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return {0, {}, "socket failed"};
  timeval timeout = {5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    return {0, {}, "connect failed"};
  }
  const std::string request =
      absl::StrCat(method, " ", path, " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
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

// One endpoint for the suite.
class HttpEndpointTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    registry_ = new MetricsRegistry;
    requests_ = *registry_->AddCounter("pad_requests_total", "Requests.", {"status"});
    requests_->WithLabels({"ok"}).Increment(2);
    ready_ = new std::atomic<bool>(false);
    HttpEndpointOptions options;
    options.listen_address = "127.0.0.1:0";
    absl::StatusOr<std::unique_ptr<HttpEndpoint>> endpoint =
        HttpEndpoint::Start(options, registry_, [] { return ready_->load(); });
    ASSERT_TRUE(endpoint.ok()) << endpoint.status();
    endpoint_ = endpoint->release();
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
  static HttpEndpoint* endpoint_;
};

MetricsRegistry* HttpEndpointTest::registry_ = nullptr;
Family<Counter>* HttpEndpointTest::requests_ = nullptr;
std::atomic<bool>* HttpEndpointTest::ready_ = nullptr;
HttpEndpoint* HttpEndpointTest::endpoint_ = nullptr;

TEST_F(HttpEndpointTest, MetricsServesTheRegistry) {
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

TEST_F(HttpEndpointTest, HeadSendsHeadersOnly) {
  HttpResponse response = Fetch(endpoint_->port(), "HEAD", "/metrics");
  EXPECT_EQ(response.status, 200) << response.body;
  EXPECT_EQ(response.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(response.headers["content-length"], absl::StrCat(registry_->Render().size()));
  EXPECT_EQ(response.body, "");
}

TEST_F(HttpEndpointTest, HealthzIsOkWhileRunning) {
  HttpResponse response = Fetch(endpoint_->port(), "GET", "/healthz");
  EXPECT_EQ(response.status, 200) << response.body;
  EXPECT_EQ(response.headers["content-type"], "text/plain; charset=utf-8");
  EXPECT_EQ(response.body, "ok");
}

TEST_F(HttpEndpointTest, ReadyzFollowsTheCallback) {
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

TEST_F(HttpEndpointTest, OtherPathsAndMethodsAreRefused) {
  HttpResponse response = Fetch(endpoint_->port(), "GET", "/metrics/extra");
  EXPECT_EQ(response.status, 404) << response.body;
  EXPECT_EQ(response.body, "not found");
  EXPECT_EQ(Fetch(endpoint_->port(), "GET", "/").status, 404);
  EXPECT_EQ(Fetch(endpoint_->port(), "GET", "/other").status, 404);

  response = Fetch(endpoint_->port(), "POST", "/metrics");
  EXPECT_EQ(response.status, 405) << response.body;
  EXPECT_EQ(response.headers["allow"], "GET, HEAD");
  EXPECT_EQ(response.body, "only GET and HEAD");
}

TEST_F(HttpEndpointTest, PortInUseIsUnavailableNamingTheAddress) {
  HttpEndpointOptions options;
  options.listen_address = absl::StrCat("127.0.0.1:", endpoint_->port());
  absl::StatusOr<std::unique_ptr<HttpEndpoint>> second =
      HttpEndpoint::Start(options, registry_, [] { return true; });
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  const std::string address = absl::StrCat("127.0.0.1:", endpoint_->port());
  EXPECT_EQ(second.status().message(),
            absl::StrCat("cannot serve HTTP on ", address, ": Address already in use"));
  // The first endpoint is unharmed.
  EXPECT_EQ(Fetch(endpoint_->port(), "GET", "/healthz").status, 200);
}

TEST(HttpEndpoint, DestructorStopsListening) {
  MetricsRegistry registry;
  HttpEndpointOptions options;
  options.listen_address = "127.0.0.1:0";
  absl::StatusOr<std::unique_ptr<HttpEndpoint>> endpoint =
      HttpEndpoint::Start(options, &registry, [] { return true; });
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();
  const int port = (*endpoint)->port();
  ASSERT_EQ(Fetch(port, "GET", "/healthz").status, 200);
  endpoint->reset();
  HttpResponse response = Fetch(port, "GET", "/healthz");
  EXPECT_EQ(response.status, 0);
  EXPECT_EQ(response.body, "connect failed");
}

TEST(HttpEndpoint, RejectsBadOptions) {
  MetricsRegistry registry;
  HttpEndpointOptions options;
  options.listen_address = "127.0.0.1:0";
  options.num_threads = 0;
  EXPECT_EQ(HttpEndpoint::Start(options, &registry, [] { return true; }).status(),
            absl::InvalidArgumentError("num_threads: 0 is not >= 1"));
  options.num_threads = 1;
  EXPECT_EQ(HttpEndpoint::Start(options, &registry, nullptr).status(),
            absl::InvalidArgumentError("ready: must not be empty"));
  EXPECT_EQ(HttpEndpoint::Start(options, nullptr, [] { return true; }).status(),
            absl::InvalidArgumentError("registry: must not be null"));
  options.listen_address = "";
  EXPECT_EQ(HttpEndpoint::Start(options, &registry, [] { return true; }).status(),
            absl::InvalidArgumentError("listen_address: must not be empty"));
}

}  // namespace
}  // namespace pad::server
