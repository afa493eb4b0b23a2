// Between the wire (pad.v1 protos, gRPC status) and libpad's types. The only place that maps codes.
#ifndef PAD_SERVER_API_CONVERSION_H_
#define PAD_SERVER_API_CONVERSION_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "pad/alignment_request.h"
#include "pad/engine.h"
#include "pad/v1/pad.pb.h"

namespace pad::server {

// The request from its wire bytes. Where protobuf refuses them, INVALID_ARGUMENT names why: the first
// string field that is not UTF-8 ("messages[1].content: is not valid UTF-8"), else the request as a whole.
absl::StatusOr<v1::GenerateAlignedRequest> ParseRequest(absl::string_view bytes);

// The request as libpad takes it; INVALID_ARGUMENT naming the proto field for what only the wire can
// get wrong (weights on some principles but not all). libpad checks the rest.
absl::StatusOr<AlignmentRequest> FromProto(const v1::GenerateAlignedRequest& request);

// A libpad status as the client sees it. A field error's field becomes its proto path ("top_k: ..." reads
// "decoding.top_k: ...") and travels as a google.rpc.BadRequest too; RESOURCE_EXHAUSTED carries a
// google.rpc.RetryInfo.
grpc::Status ToGrpcStatus(const absl::Status& status);

// The final message's reason and usage.
v1::FinishReason ToProto(FinishReason reason);
void ToProto(const Usage& usage, v1::Usage* out);

}  // namespace pad::server

#endif  // PAD_SERVER_API_CONVERSION_H_
