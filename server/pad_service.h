// The pad.v1.PadService over gRPC's callback API. Thin: requests become libpad AlignmentRequests, the
// engine's events become stream messages.
#ifndef PAD_SERVER_PAD_SERVICE_H_
#define PAD_SERVER_PAD_SERVICE_H_

#include <string>

#include "pad/engine.h"
#include "pad/v1/pad.grpc.pb.h"
#include "server/log_writer.h"
#include "server/serving_metrics.h"
#include "server/work_queue.h"

namespace pad::server {

struct ServiceOptions {
  // When not empty, required as "authorization: Bearer <token>" on every call (compared in constant time).
  std::string bearer_token;
  // gRPC's receive limit, set by the server builder; reported in ListModels' limits.
  int max_request_bytes = 4 << 20;
};

// One reactor per stream, one write in flight; no reaction runs the model or blocks on the engine. A
// stream's request is parsed, rendered and tokenized (Engine::Submit) on `preparation`'s threads, not on
// gRPC's callback threads; when its queue is full the call gets RESOURCE_EXHAUSTED. `engine`, `metrics`,
// `log` (one JSON line per finished request) and `preparation` must outlive the service and the engine's
// last event, and `preparation` must run its tasks until the gRPC server has shut down: every call needs
// its Finish.
//
// GenerateAligned takes its request as bytes and parses it itself: gRPC's own parse failure answers
// UNIMPLEMENTED with no message and is never counted, where a client needs INVALID_ARGUMENT naming the field.
class PadServiceImpl final : public v1::PadService::WithRawCallbackMethod_GenerateAligned<
                                 v1::PadService::WithCallbackMethod_ListModels<v1::PadService::Service>> {
 public:
  PadServiceImpl(Engine* engine, ServingMetrics* metrics, LogWriter* log, WorkQueue* preparation,
                 ServiceOptions options)
      : engine_(engine),
        metrics_(metrics),
        log_(log),
        preparation_(preparation),
        options_(std::move(options)) {}

  // Reads a GenerateAlignedRequest, streams GenerateAlignedResponse messages.
  grpc::ServerWriteReactor<grpc::ByteBuffer>* GenerateAligned(grpc::CallbackServerContext* context,
                                                              const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context,
                                       const v1::ListModelsRequest* request,
                                       v1::ListModelsResponse* response) override;

 private:
  bool Authorized(const grpc::CallbackServerContext& context) const;

  Engine* engine_;
  ServingMetrics* metrics_;
  LogWriter* log_;
  WorkQueue* preparation_;
  const ServiceOptions options_;
};

}  // namespace pad::server

#endif  // PAD_SERVER_PAD_SERVICE_H_
