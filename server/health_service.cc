#include "server/health_service.h"

#include <optional>
#include <utility>

namespace pad::server {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

// One Watch call. Its state is guarded by the service's mutex, which SetServing holds while it notifies,
// so a watcher is never notified after it has left the set (OnDone, before it is deleted). One write in
// flight; a change that arrives during a write is sent after it (the latest status). No write after Finish.
class HealthService::Watcher final : public grpc::ServerWriteReactor<HealthCheckResponse> {
 public:
  Watcher(HealthService* health, std::string service) : health_(health), service_(std::move(service)) {
    absl::MutexLock lock(&health_->mu_);
    health_->watchers_.insert(this);
    SendLocked();
  }

  // Sends the status of its service now.
  void SendLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(health_->mu_) {
    const Status status = health_->StatusOf(service_);
    if (finished_ || status == sent_) return;  // a watcher hears of changes to its own service only
    if (writing_) {
      has_pending_ = true;
      return;
    }
    writing_ = true;
    sent_ = status;
    response_.set_status(status);
    StartWrite(&response_);
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&health_->mu_);
    writing_ = false;
    if (!ok) return FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the watch ended"));
    if (has_pending_) {
      has_pending_ = false;
      SendLocked();  // the latest status
    }
  }

  void OnCancel() override {
    absl::MutexLock lock(&health_->mu_);
    FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the watch was cancelled"));
  }

  void OnDone() override {
    {
      absl::MutexLock lock(&health_->mu_);
      health_->watchers_.erase(this);
    }
    delete this;
  }

 private:
  friend class HealthService;  // SetServing tells the thread-safety analysis whose mutex it holds

  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(health_->mu_) {
    if (finished_) return;
    finished_ = true;
    Finish(status);
  }

  HealthService* const health_;
  const std::string service_;
  HealthCheckResponse response_;  // the write in flight
  bool writing_ = false;
  bool finished_ = false;
  bool has_pending_ = false;    // a change arrived during the write in flight
  std::optional<Status> sent_;  // the last status written
};

HealthService::HealthService(std::vector<std::string> services)
    : services_(std::make_move_iterator(services.begin()), std::make_move_iterator(services.end())) {}

void HealthService::SetServing(bool serving) {
  absl::MutexLock lock(&mu_);
  if (serving_ == serving) return;
  serving_ = serving;
  for (Watcher* watcher : watchers_) {
    watcher->health_->mu_.AssertHeld();  // this->mu_, which the thread-safety analysis cannot tell
    watcher->SendLocked();
  }
}

HealthService::Status HealthService::StatusOf(const std::string& service) const {
  if (services_.count(service) == 0) return HealthCheckResponse::SERVICE_UNKNOWN;
  return serving_ ? HealthCheckResponse::SERVING : HealthCheckResponse::NOT_SERVING;
}

grpc::ServerUnaryReactor* HealthService::Check(grpc::CallbackServerContext* context,
                                               const HealthCheckRequest* request,
                                               HealthCheckResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  Status status;
  {
    absl::MutexLock lock(&mu_);
    status = StatusOf(request->service());
  }
  if (status == HealthCheckResponse::SERVICE_UNKNOWN) {
    reactor->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown service"));
    return reactor;
  }
  response->set_status(status);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerWriteReactor<HealthCheckResponse>* HealthService::Watch(grpc::CallbackServerContext* /*context*/,
                                                                    const HealthCheckRequest* request) {
  return new Watcher(this, request->service());
}

}  // namespace pad::server
