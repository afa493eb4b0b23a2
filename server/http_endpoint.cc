#include "server/http_endpoint.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace pad::server {
namespace {

constexpr char kMetricsContentType[] = "text/plain; version=0.0.4; charset=utf-8";
constexpr char kTextContentType[] = "text/plain; charset=utf-8";
constexpr size_t kMaxRequestHeader = 8192;

const char* Reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 400:
      return "Bad Request";
    default:
      return "Service Unavailable";
  }
}

void SendAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    const ssize_t sent = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (sent <= 0) return;  // the client left; nothing to tell it
    data.remove_prefix(static_cast<size_t>(sent));
  }
}

void Respond(int fd, int status, const char* content_type, absl::string_view body, bool with_body) {
  std::string reply =
      absl::StrCat("HTTP/1.1 ", status, " ", Reason(status), "\r\nContent-Type: ", content_type,
                   "\r\nContent-Length: ", body.size(), "\r\nCache-Control: no-store\r\n",
                   status == 405 ? "Allow: GET, HEAD\r\n" : "", "Connection: close\r\n\r\n");
  if (with_body) reply.append(body.data(), body.size());
  SendAll(fd, reply);
}

}  // namespace

HttpEndpoint::HttpEndpoint(const MetricsRegistry* registry, std::function<bool()> ready)
    : registry_(registry), ready_(std::move(ready)) {}

HttpEndpoint::~HttpEndpoint() {
  if (listen_fd_ >= 0) ::shutdown(listen_fd_, SHUT_RDWR);  // wakes accept()
  if (thread_.joinable()) thread_.join();
  if (listen_fd_ >= 0) ::close(listen_fd_);
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

  const std::string& address = options.listen_address;
  const size_t colon = address.rfind(':');
  const std::string host = colon == std::string::npos ? "0.0.0.0" : address.substr(0, colon);
  int port = 0;
  if (!absl::SimpleAtoi(colon == std::string::npos ? address : address.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("listen_address: \"", address, "\" is not host:port"));
  }
  sockaddr_in addr;
  std::memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("listen_address: \"", host, "\" is not an IPv4 address"));
  }

  std::unique_ptr<HttpEndpoint> endpoint(new HttpEndpoint(registry, std::move(ready)));
  endpoint->listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int yes = 1;
  ::setsockopt(endpoint->listen_fd_, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  if (::bind(endpoint->listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(endpoint->listen_fd_, 64) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot serve HTTP on ", address, ": ", std::strerror(errno)));
  }
  socklen_t length = sizeof(addr);
  ::getsockname(endpoint->listen_fd_, reinterpret_cast<sockaddr*>(&addr), &length);
  endpoint->port_ = ntohs(addr.sin_port);
  endpoint->thread_ = std::thread([raw = endpoint.get()] { raw->Serve(); });
  return endpoint;
}

void HttpEndpoint::Serve() {
  while (true) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;  // shut down
    }
    // A client that sends nothing must not hold the endpoint for long.
    timeval timeout{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    HandleConnection(fd);
    ::close(fd);
  }
}

void HttpEndpoint::HandleConnection(int fd) const {
  std::string request;
  char buffer[1024];
  while (request.find("\r\n\r\n") == std::string::npos && request.size() < kMaxRequestHeader) {
    const ssize_t got = ::recv(fd, buffer, sizeof(buffer), 0);
    if (got <= 0) break;
    request.append(buffer, static_cast<size_t>(got));
  }
  // "GET /metrics?x=y HTTP/1.1"
  const size_t method_end = request.find(' ');
  const size_t target_end = method_end == std::string::npos ? method_end : request.find(' ', method_end + 1);
  if (target_end == std::string::npos) return Respond(fd, 400, kTextContentType, "bad request", true);
  const std::string method = request.substr(0, method_end);
  std::string path = request.substr(method_end + 1, target_end - method_end - 1);
  path = path.substr(0, path.find('?'));
  if (path != "/metrics" && path != "/healthz" && path != "/readyz") {
    return Respond(fd, 404, kTextContentType, "not found", method != "HEAD");
  }
  if (method != "GET" && method != "HEAD")
    return Respond(fd, 405, kTextContentType, "only GET and HEAD", true);
  const bool with_body = method == "GET";
  if (path == "/metrics") return Respond(fd, 200, kMetricsContentType, registry_->Render(), with_body);
  if (path == "/healthz") return Respond(fd, 200, kTextContentType, "ok", with_body);
  if (ready_()) return Respond(fd, 200, kTextContentType, "ready", with_body);
  Respond(fd, 503, kTextContentType, "not ready", with_body);
}

}  // namespace pad::server
