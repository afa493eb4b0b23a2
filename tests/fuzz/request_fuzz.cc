// The wire bytes of a GenerateAligned request: parsed (or refused naming the field, ParseRequest) and
// converted to libpad's request (or refused, FromProto), never a crash.
#include <google/protobuf/stubs/logging.h>

#include <cstdint>

#include "server/api_conversion.h"

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  google::protobuf::SetLogHandler(nullptr);  // a line per invalid string would be most of the run
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto proto = pad::server::ParseRequest(absl::string_view(reinterpret_cast<const char*>(data), size));
  if (!proto.ok()) {
    if (proto.status().code() != absl::StatusCode::kInvalidArgument) __builtin_trap();
    return 0;
  }
  auto request = pad::server::FromProto(*proto);
  if (!request.ok()) (void)pad::server::ToGrpcStatus(request.status());
  return 0;
}
