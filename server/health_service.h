// grpc.health.v1.Health, served by us rather than gRPC's built-in service: the built-in one reads SERVING
// from the moment the server starts until it is first told otherwise, so a probe could see a server that
// has not loaded its models as ready. This one reads NOT_SERVING until SetServing(true).
#ifndef PAD_SERVER_HEALTH_SERVICE_H_
#define PAD_SERVER_HEALTH_SERVICE_H_

#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace pad::server {

// Every service it knows ("" is the server as a whole) shares one status. Check answers it, or NOT_FOUND
// for another name; Watch streams it and each change (SERVICE_UNKNOWN for another name, as the protocol
// says) until the client cancels or the server shuts down. Must outlive the gRPC server.
class HealthService final : public grpc::health::v1::Health::CallbackService {
 public:
  explicit HealthService(std::vector<std::string> services);

  void SetServing(bool serving);

  grpc::ServerUnaryReactor* Check(grpc::CallbackServerContext* context,
                                  const grpc::health::v1::HealthCheckRequest* request,
                                  grpc::health::v1::HealthCheckResponse* response) override;
  grpc::ServerWriteReactor<grpc::health::v1::HealthCheckResponse>* Watch(
      grpc::CallbackServerContext* context, const grpc::health::v1::HealthCheckRequest* request) override;

 private:
  class Watcher;
  using Status = grpc::health::v1::HealthCheckResponse::ServingStatus;

  Status StatusOf(const std::string& service) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::set<std::string> services_;
  absl::Mutex mu_;
  bool serving_ ABSL_GUARDED_BY(mu_) = false;
  std::set<Watcher*> watchers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pad::server

#endif  // PAD_SERVER_HEALTH_SERVICE_H_
